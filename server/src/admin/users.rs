//! Accounts as administrators see and limit them (docs/protocol.md §26.2, §26.7-§26.9): the
//! user list with its figures, limit overrides, media quarantine and the server's statistics.

use confab_protocol::v1;

use super::{Acting, MAX_REASON_BYTES, no_such_user};
use crate::error::ServerError;
use crate::page::{Slice, page_limit};
use crate::store::{AdminUserRec, AuditAction, LimitOverrides, MediaId, NewAudit, UserId, UserListQuery, now_ms};

/// Longest `AdminListUsers.query`, in bytes.
const MAX_QUERY_BYTES: usize = 256;

/// Largest `max_pending_uploads` and `messages_per_minute` an administrator may set.
const MAX_COUNT_LIMIT: u32 = 1_000_000;

/// ms since the epoch on the wire: 0 for none.
fn ms(v: Option<i64>) -> u64 {
    v.map_or(0, |v| u64::try_from(v).unwrap_or(0))
}

fn wire_limits(l: &LimitOverrides) -> v1::UserLimits {
    v1::UserLimits {
        media_quota_bytes: l.media_quota_bytes,
        max_pending_uploads: l.max_pending_uploads,
        messages_per_minute: l.messages_per_minute,
    }
}

/// The overrides an `AdminSetUserLimits` asks for, checked (§26.8).
fn overrides(l: Option<v1::UserLimits>) -> Result<LimitOverrides, ServerError> {
    let l = l.unwrap_or_default();
    if l.media_quota_bytes.is_some_and(|q| i64::try_from(q).is_err()) {
        return Err(ServerError::invalid("admin_set_user_limits.limits.media_quota_bytes", "at most 2^63 - 1"));
    }
    if l.max_pending_uploads.is_some_and(|n| n > MAX_COUNT_LIMIT) {
        return Err(ServerError::invalid("admin_set_user_limits.limits.max_pending_uploads", "at most 1000000"));
    }
    if l.messages_per_minute.is_some_and(|n| n > MAX_COUNT_LIMIT) {
        return Err(ServerError::invalid(
            "admin_set_user_limits.limits.messages_per_minute",
            "at most 1000000 (0: unlimited)",
        ));
    }
    Ok(LimitOverrides {
        media_quota_bytes: l.media_quota_bytes,
        max_pending_uploads: l.max_pending_uploads,
        messages_per_minute: l.messages_per_minute,
    })
}

/// An account as the wire shows it to an administrator, with its `connections` (§26.2).
fn admin_user(u: &AdminUserRec, connections: u32) -> v1::AdminUser {
    v1::AdminUser {
        user_id: u64::try_from(u.id.0).unwrap_or(0),
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        created_at_ms: ms(Some(u.created_at_ms)),
        last_seen_at_ms: ms(u.last_seen_at_ms),
        live_sessions: u.live_sessions,
        messages_sent: u.messages_sent,
        conversations: u.conversations,
        server_admin: u.server_admin,
        suspended_at_ms: ms(u.suspended_at_ms),
        deleted_at_ms: ms(u.deleted_at_ms),
        connections,
        limits: Some(wire_limits(&u.limits)),
    }
}

impl Acting {
    /// §26.2: accounts whose username or display name starts with the query (case-folded; empty:
    /// all), in id order after `after_user_id`, with their figures; one store statement per page.
    /// The read is recorded (`admin_viewed`, target `admin_list_users`) before it is made.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a query over 256 bytes.
    pub async fn list_users(&self, r: v1::AdminListUsers) -> Result<v1::AdminListUsersResult, ServerError> {
        if r.query.len() > MAX_QUERY_BYTES {
            return Err(ServerError::invalid("admin_list_users.query", "at most 256 bytes"));
        }
        let limit = page_limit(r.limit, 50, 100);
        let q = UserListQuery {
            prefix: confab_protocol::text::fold(r.query.trim()),
            after: UserId(i64::try_from(r.after_user_id).unwrap_or(i64::MAX)),
            limit: limit + 1,
            include_deleted: r.include_deleted,
        };
        self.viewed("admin_list_users", None).await?;
        let page = Slice::cut(self.store().admin_users(&q, now_ms()).await?, limit);
        let ids: Vec<UserId> = page.items.iter().map(|u| u.id).collect();
        let connections = self.admin.0.hub.connections_of(&ids);
        Ok(v1::AdminListUsersResult {
            users: page.items.iter().zip(connections).map(|(u, c)| admin_user(u, c)).collect(),
            has_more: page.has_more,
        })
    }

    /// §26.2: one account with its figures, deleted ones too (`deleted_at_ms` set). The read is
    /// recorded (`admin_viewed`, target `admin_get_user`) before it is made.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a missing id; `NOT_FOUND` for an id that names no account.
    pub async fn get_user(&self, r: v1::AdminGetUser) -> Result<v1::AdminUser, ServerError> {
        let user: UserId = crate::access::id("admin_get_user.user_id", r.user_id)?;
        self.viewed("admin_get_user", Some(user)).await?;
        let u = self.store().admin_user(user, now_ms()).await?.ok_or_else(no_such_user)?;
        let connections = self.admin.0.hub.connections_of(&[user]).first().copied().unwrap_or(0);
        Ok(admin_user(&u, connections))
    }

    /// §26.7: from now on nobody reads the media item (nor any other of the same bytes), and an
    /// upload of the same bytes is refused at FinishUpload. Recorded with the media id as target
    /// and the uploader as target user.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a missing id or a reason over 500 bytes; `NOT_FOUND` for an
    /// unknown media id.
    pub async fn quarantine_media(
        &self,
        r: v1::AdminQuarantineMedia,
    ) -> Result<v1::AdminQuarantineMediaResult, ServerError> {
        if r.media_id.is_empty() {
            return Err(ServerError::invalid("admin_quarantine_media.media_id", "required"));
        }
        if r.reason.len() > MAX_REASON_BYTES {
            return Err(ServerError::invalid("admin_quarantine_media.reason", "at most 500 bytes"));
        }
        let no_media = || ServerError::NotFound("no such media".into());
        let id = MediaId::parse(&r.media_id).ok_or_else(no_media)?;
        let now = now_ms();
        let entry = NewAudit {
            after: serde_json::json!({ "reason": r.reason }).to_string(),
            at_ms: now,
            ..self.entry(AuditAction::MediaQuarantined, None)
        };
        let quarantined = self.store().quarantine_media(&id, now, &entry).await?.ok_or_else(no_media)?;
        Ok(v1::AdminQuarantineMediaResult { quarantined })
    }

    /// §26.8: replaces the account's limit overrides (an unset field: the server's value), and
    /// with `reset_sign_in_limits` forgets its sign-in attempts (the login buckets of its
    /// username, email and id); recorded with the overrides before and after, in the same
    /// transaction (target `reset_sign_in_limits` when they were forgotten).
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a missing id or a value out of range; `NOT_FOUND` for no such live
    /// account.
    pub async fn set_user_limits(
        &self,
        r: v1::AdminSetUserLimits,
    ) -> Result<v1::AdminSetUserLimitsResult, ServerError> {
        let user: UserId = crate::access::id("admin_set_user_limits.user_id", r.user_id)?;
        let limits = overrides(r.limits)?;
        let account = self.store().user(user).await?.filter(|u| !u.deleted).ok_or_else(no_such_user)?;
        let buckets = if r.reset_sign_in_limits { self.admin.0.auth.sign_in_buckets(&account) } else { Vec::new() };
        let mut entry = self.entry(AuditAction::LimitsChanged, Some(user));
        if r.reset_sign_in_limits {
            entry.target = "reset_sign_in_limits".into();
        }
        let change = self.store().set_user_limits(user, &limits, &buckets, &entry).await?.ok_or_else(no_such_user)?;
        Ok(v1::AdminSetUserLimitsResult { limits: Some(wire_limits(&change.after)) })
    }

    /// §26.9: the server's figures; connections and online users as this node knows them. Not
    /// recorded in the audit log.
    ///
    /// # Errors
    /// Store errors only.
    pub async fn stats(&self) -> Result<v1::ServerStats, ServerError> {
        let s = self.store().server_stats(now_ms()).await?;
        let hub = &self.admin.0.hub;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(v1::ServerStats {
            connections: count(hub.connection_count()),
            online_users: count(hub.online_user_count()),
            users: s.users,
            users_suspended: s.users_suspended,
            users_deleted: s.users_deleted,
            conversations: s.conversations,
            messages: s.messages,
            messages_per_day: s
                .messages_per_day
                .iter()
                .map(|(day, count)| v1::DayCount { day_start_ms: ms(Some(*day)), count: *count })
                .collect(),
            store_bytes: s.store_bytes,
            media_bytes: s.media_bytes,
            audit_entries: s.audit_entries,
        })
    }
}
