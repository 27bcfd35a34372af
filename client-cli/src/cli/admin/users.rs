//! `confab admin users|user|suspend|reactivate|delete|revoke-sessions|limits` (docs/protocol.md
//! §26.2-§26.5, §26.8).

use confab_protocol::client::Client;
use confab_protocol::v1;
use serde_json::{Value, json};

use super::super::table::{Table, count, fields, local, rfc3339};
use super::{confirm, target};
use crate::format::plural;
use crate::media::human_size;

/// A limit given on the command line: a value, or back to the server's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting<T> {
    Default,
    Value(T),
}

impl<T> Setting<T> {
    fn into_option(self) -> Option<T> {
        match self {
            Self::Default => None,
            Self::Value(v) => Some(v),
        }
    }
}

/// `--media-quota`: `default`, bytes, or a number with a unit (`500MB`, `2GiB`, `1.5G`).
pub fn quota_arg(s: &str) -> Result<Setting<u64>, String> {
    if s.eq_ignore_ascii_case("default") {
        return Ok(Setting::Default);
    }
    parse_bytes(s).map(Setting::Value)
}

/// A count limit: `default` or a number.
pub fn count_arg(s: &str) -> Result<Setting<u32>, String> {
    if s.eq_ignore_ascii_case("default") {
        return Ok(Setting::Default);
    }
    s.trim().parse::<u32>().map(Setting::Value).map_err(|_| format!("{s:?} is not a number (or `default`)"))
}

/// Bytes from `123`, `500MB`, `2GiB`, `1.5G` (K, M, G, T: powers of 1000; with `i`, of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    let bad = || format!("{s:?} is not a size: use bytes, or e.g. 500MB or 2GiB");
    if number.is_empty() || number.len() > 20 {
        return Err(bad());
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let mut bytes = whole.checked_mul(scale).ok_or_else(bad)?;
    if !frac.is_empty() {
        let digits: u32 = u32::try_from(frac.len()).map_err(|_| bad())?;
        let f: u64 = frac.parse().map_err(|_| bad())?;
        let denom = 10u64.checked_pow(digits).ok_or_else(bad)?;
        let part = u128::from(f) * u128::from(scale) / u128::from(denom);
        bytes = bytes.checked_add(u64::try_from(part).map_err(|_| bad())?).ok_or_else(bad)?;
    }
    Ok(bytes)
}

/// What `admin limits` changes; nothing set shows the limits.
#[derive(Debug, Default)]
pub struct LimitsChange {
    pub media_quota: Option<Setting<u64>>,
    pub max_pending_uploads: Option<Setting<u32>>,
    pub messages_per_minute: Option<Setting<u32>>,
    pub reset_sign_in_limits: bool,
}

impl LimitsChange {
    fn is_empty(&self) -> bool {
        self.media_quota.is_none()
            && self.max_pending_uploads.is_none()
            && self.messages_per_minute.is_none()
            && !self.reset_sign_in_limits
    }

    /// `current` with the changes applied (the request replaces every override, §26.8).
    fn apply(&self, current: v1::UserLimits) -> v1::UserLimits {
        v1::UserLimits {
            media_quota_bytes: self.media_quota.map_or(current.media_quota_bytes, Setting::into_option),
            max_pending_uploads: self.max_pending_uploads.map_or(current.max_pending_uploads, Setting::into_option),
            messages_per_minute: self.messages_per_minute.map_or(current.messages_per_minute, Setting::into_option),
        }
    }
}

pub fn limits_json(l: &v1::UserLimits) -> Value {
    json!({"media_quota_bytes": l.media_quota_bytes, "max_pending_uploads": l.max_pending_uploads,
        "messages_per_minute": l.messages_per_minute})
}

fn limit_lines(l: &v1::UserLimits) -> Vec<(&'static str, String)> {
    let default = || "server default".to_string();
    vec![
        ("media quota", l.media_quota_bytes.map_or_else(default, human_size)),
        ("pending uploads", l.max_pending_uploads.map_or_else(default, |n| n.to_string())),
        (
            "messages/minute",
            l.messages_per_minute.map_or_else(default, |n| if n == 0 { "unlimited".into() } else { n.to_string() }),
        ),
    ]
}

/// `1 message`, `12,345 messages`.
pub fn messages(n: u64) -> String {
    if n == 1 { "1 message".into() } else { format!("{} messages", count(n)) }
}

/// `admin`, `suspended`, `deleted`, or `active`.
fn state(u: &v1::AdminUser) -> String {
    let mut s = Vec::new();
    if u.deleted_at_ms > 0 {
        s.push("deleted");
    }
    if u.suspended_at_ms > 0 {
        s.push("suspended");
    }
    if u.server_admin {
        s.push("admin");
    }
    if s.is_empty() { "active".into() } else { s.join(",") }
}

pub fn user_json(u: &v1::AdminUser) -> Value {
    json!({
        "user_id": u.user_id,
        "username": u.username,
        "display_name": u.display_name,
        "created_at_ms": u.created_at_ms,
        "created_at": rfc3339(u.created_at_ms),
        "last_seen_at_ms": u.last_seen_at_ms,
        "last_seen_at": rfc3339(u.last_seen_at_ms),
        "live_sessions": u.live_sessions,
        "connections": u.connections,
        "messages_sent": u.messages_sent,
        "conversations": u.conversations,
        "server_admin": u.server_admin,
        "suspended": u.suspended_at_ms > 0,
        "suspended_at_ms": u.suspended_at_ms,
        "suspended_at": rfc3339(u.suspended_at_ms),
        "deleted": u.deleted_at_ms > 0,
        "deleted_at_ms": u.deleted_at_ms,
        "deleted_at": rfc3339(u.deleted_at_ms),
        "limits": limits_json(&u.limits.unwrap_or_default()),
    })
}

/// `confab admin users`: the server's pages followed up to `limit` accounts.
pub async fn list(
    client: &Client,
    query: String,
    mut after: u64,
    limit: u32,
    deleted: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut users = Vec::new();
    let mut has_more = true;
    while has_more && users.len() < limit as usize {
        let want = (limit as usize - users.len()).min(100) as u32;
        let req =
            v1::AdminListUsers { query: query.clone(), after_user_id: after, limit: want, include_deleted: deleted };
        let page = call!(client, AdminListUsers, req);
        has_more = page.has_more;
        match page.users.last() {
            Some(last) => after = last.user_id,
            None => has_more = false,
        }
        users.extend(page.users);
    }
    users.truncate(limit as usize);
    if json {
        let list: Vec<Value> = users.iter().map(user_json).collect();
        println!("{}", json!({"users": list, "has_more": has_more}));
        return Ok(());
    }
    let mut t = Table::new(&[
        "ID",
        "USERNAME",
        "DISPLAY NAME",
        "CREATED",
        "LAST SEEN",
        "SESSIONS",
        "CONN",
        "MESSAGES",
        "CONVS",
        "STATE",
    ]);
    for u in &users {
        t.row(vec![
            u.user_id.to_string(),
            u.username.clone(),
            u.display_name.clone(),
            local(u.created_at_ms),
            local(u.last_seen_at_ms),
            u.live_sessions.to_string(),
            u.connections.to_string(),
            count(u.messages_sent),
            u.conversations.to_string(),
            state(u),
        ]);
    }
    if t.is_empty() {
        println!("no accounts");
    } else {
        t.print();
    }
    if has_more && let Some(last) = users.last() {
        println!("(more after id {0}: --after {0})", last.user_id);
    }
    Ok(())
}

async fn get(client: &Client, user_id: u64) -> anyhow::Result<v1::AdminUser> {
    Ok(call!(client, AdminGetUser, v1::AdminGetUser { user_id }))
}

/// `confab admin user USER`.
pub async fn show(client: &Client, spec: &str, json: bool) -> anyhow::Result<()> {
    let t = target(client, spec).await?;
    let u = get(client, t.user_id).await?;
    if json {
        println!("{}", user_json(&u));
        return Ok(());
    }
    let name =
        if u.display_name.is_empty() { u.username.clone() } else { format!("{} ({})", u.username, u.display_name) };
    let mut state_line = match (u.deleted_at_ms, u.suspended_at_ms) {
        (d, _) if d > 0 => format!("deleted {}", local(d)),
        (_, s) if s > 0 => format!("suspended since {}", local(s)),
        _ => "active".into(),
    };
    if u.server_admin {
        state_line.push_str(", server administrator");
    }
    let mut lines = vec![
        ("user", format!("{}  {name}", u.user_id)),
        ("state", state_line),
        ("created", local(u.created_at_ms)),
        ("last seen", local(u.last_seen_at_ms)),
        (
            "sessions",
            format!("{} live, {} open", u.live_sessions, plural(u64::from(u.connections), "connection", "connections")),
        ),
        (
            "messages",
            format!(
                "{} sent, member of {}",
                messages(u.messages_sent),
                plural(u64::from(u.conversations), "conversation", "conversations")
            ),
        ),
    ];
    lines.extend(limit_lines(&u.limits.unwrap_or_default()));
    print!("{}", fields(&lines));
    Ok(())
}

/// `confab admin suspend USER`.
pub async fn suspend(client: &Client, spec: &str, reason: Option<String>, json: bool) -> anyhow::Result<()> {
    let t = target(client, spec).await?;
    let req = v1::AdminSuspendUser { user_id: t.user_id, reason: reason.unwrap_or_default() };
    let r = call!(client, AdminSuspendUser, req);
    if json {
        println!(
            "{}",
            json!({"user_id": t.user_id, "username": t.username, "sessions_revoked": r.sessions_revoked,
                "suspended_at_ms": r.suspended_at_ms, "suspended_at": rfc3339(r.suspended_at_ms)})
        );
    } else {
        let ended = plural(u64::from(r.sessions_revoked), "session", "sessions");
        println!("suspended {} (since {}); {ended} ended", t.name(), local(r.suspended_at_ms));
    }
    Ok(())
}

/// `confab admin reactivate USER`.
pub async fn reactivate(client: &Client, spec: &str, json: bool) -> anyhow::Result<()> {
    let t = target(client, spec).await?;
    let r = call!(client, AdminReactivateUser, v1::AdminReactivateUser { user_id: t.user_id });
    if json {
        println!("{}", json!({"user_id": t.user_id, "username": t.username, "reactivated": r.reactivated}));
    } else if r.reactivated {
        println!("reactivated {}", t.name());
    } else {
        println!("{} was not suspended", t.name());
    }
    Ok(())
}

/// `confab admin delete USER`.
pub async fn delete(client: &Client, spec: &str, erase: bool, yes: bool, json: bool) -> anyhow::Result<()> {
    let t = target(client, spec).await?;
    let question = if erase {
        format!("Delete the account {} and every message it sent? This cannot be undone.", t.name())
    } else {
        format!("Delete the account {}? Its messages stay. This cannot be undone.", t.name())
    };
    confirm(question, yes).await?;
    let r = call!(client, AdminDeleteUser, v1::AdminDeleteUser { user_id: t.user_id, erase });
    if json {
        println!(
            "{}",
            json!({"user_id": t.user_id, "username": t.username, "erased": erase, "messages_erased": r.messages_erased})
        );
    } else if erase {
        println!("deleted {} and erased {}", t.name(), messages(r.messages_erased));
    } else {
        println!("deleted {}", t.name());
    }
    Ok(())
}

/// `confab admin revoke-sessions USER`.
pub async fn revoke_sessions(client: &Client, spec: &str, json: bool) -> anyhow::Result<()> {
    let t = target(client, spec).await?;
    let r = call!(client, AdminRevokeSessions, v1::AdminRevokeSessions { user_id: t.user_id });
    if json {
        println!("{}", json!({"user_id": t.user_id, "username": t.username, "sessions_revoked": r.sessions_revoked}));
    } else {
        println!("ended {} of {}", plural(u64::from(r.sessions_revoked), "session", "sessions"), t.name());
    }
    Ok(())
}

/// `confab admin limits USER [changes]`: shows the limits, or merges the changes into the
/// current overrides and sets them.
pub async fn limits(client: &Client, spec: &str, change: LimitsChange, json: bool) -> anyhow::Result<()> {
    let t = target(client, spec).await?;
    let current = get(client, t.user_id).await?;
    let (limits, changed) = if change.is_empty() {
        (current.limits.unwrap_or_default(), false)
    } else {
        let req = v1::AdminSetUserLimits {
            user_id: t.user_id,
            limits: Some(change.apply(current.limits.unwrap_or_default())),
            reset_sign_in_limits: change.reset_sign_in_limits,
        };
        (call!(client, AdminSetUserLimits, req).limits.unwrap_or_default(), true)
    };
    if json {
        println!(
            "{}",
            json!({"user_id": t.user_id, "username": current.username, "changed": changed,
                "sign_in_limits_reset": change.reset_sign_in_limits, "limits": limits_json(&limits)})
        );
        return Ok(());
    }
    let mut lines = vec![("user", format!("{}  {}", current.user_id, current.username))];
    lines.extend(limit_lines(&limits));
    print!("{}", fields(&lines));
    if change.reset_sign_in_limits {
        println!("failed sign-in attempts forgotten");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_bytes("123"), Ok(123));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5g"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("0.5 KiB"), Ok(512));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("99999999999999999999TB").is_err(), "overflow is an error");
        assert_eq!(quota_arg("default"), Ok(Setting::Default));
        assert_eq!(count_arg("30"), Ok(Setting::Value(30)));
        assert!(count_arg("-1").is_err());
    }

    #[test]
    fn changes_merge_into_the_current_overrides() {
        let current =
            v1::UserLimits { media_quota_bytes: Some(10), max_pending_uploads: Some(3), messages_per_minute: None };
        let change = LimitsChange {
            media_quota: Some(Setting::Default),
            messages_per_minute: Some(Setting::Value(0)),
            ..Default::default()
        };
        let merged = change.apply(current);
        assert_eq!(merged.media_quota_bytes, None, "default clears the override");
        assert_eq!(merged.max_pending_uploads, Some(3), "an unnamed limit stays");
        assert_eq!(merged.messages_per_minute, Some(0));
        assert!(LimitsChange::default().is_empty());
    }
}
