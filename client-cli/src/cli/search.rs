//! `confab search`: message search (docs/protocol.md §23) by words, sender, conversation, date
//! and attachments, following the server's cursor up to `--limit` hits; hits as text with the
//! matches emphasised, or one JSON object per line.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::bail;
use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone};
use confab_protocol::client::Client;
use confab_protocol::v1;
use serde_json::json;

use super::output::{Names, datetime, message_json};
use super::resolve;
use crate::config::Settings;
use crate::highlight::{Piece, pieces};
use crate::media::attachment_summary;
use crate::session;

/// The most hits one SearchMessages page holds (§23.1).
const PAGE_MAX: u32 = 100;

/// Which hits come first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// Newest first.
    Newest,
    /// Messages matching more of the words as whole words first, newest first among equals.
    Relevance,
}

/// The arguments of `confab search`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct SearchArgs {
    /// Words to look for (the arguments are joined): each also matches inside longer words, case
    /// and accents do not matter; "a phrase", -excluded, a OR b. Quote the query for the shell,
    /// or put excluded words after --. May be empty when a filter is given.
    #[arg(value_name = "QUERY")]
    pub query: Vec<String>,
    /// Only messages from USER: a username, @username, #ID or a numeric id (repeat for several).
    #[arg(long, value_name = "USER")]
    pub from: Vec<String>,
    /// Only in CONV: an id (also of a conversation you left), a title, or @username for a DM
    /// (repeat for several).
    #[arg(long = "in", value_name = "CONV")]
    pub conversations: Vec<String>,
    /// Only messages sent at or after WHEN: 2026-11-30T10:00:00Z (RFC 3339), 2026-11-30 (that
    /// day's midnight, local time), or a duration ago: 90m, 2h, 3d, 1w.
    #[arg(long, value_name = "WHEN", value_parser = when_arg)]
    pub after: Option<u64>,
    /// Only messages sent before WHEN (same forms as --after).
    #[arg(long, value_name = "WHEN", value_parser = when_arg)]
    pub before: Option<u64>,
    /// Which hits come first.
    #[arg(long, value_enum, default_value_t = Order::Newest)]
    pub order: Order,
    /// At most this many hits (the server's pages are followed).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Only messages with attachments.
    #[arg(long, conflicts_with = "without_attachments")]
    pub with_attachments: bool,
    /// Only messages without attachments.
    #[arg(long)]
    pub without_attachments: bool,
    /// One JSON object per hit: the message (as `history --json` prints it), `conversation` (its
    /// name) and `highlights` ([[start, end], …]: byte offsets into `text`).
    #[arg(long)]
    pub json: bool,
}

const AFTER_HELP: &str = "\
Output: a line with the conversation, sender, local time and message id, then the text indented,
with the matching parts in bold yellow on a terminal, or between [ and ] otherwise (and when
NO_COLOR is set). Only the parts of conversations you were a member for are searched. When the
server's index has not caught up with a conversation yet, a note on stderr says which.

Examples:
  confab search deploy --from bob --after 3d
  confab search '\"release notes\" -draft' --in lobby --order relevance
  confab search deploy --json -- -staging
  confab search --in @bob --with-attachments --limit 50 --json";

/// Parses a `--after`/`--before` value now, in the local time zone.
fn when_arg(s: &str) -> Result<u64, String> {
    parse_when(s, chrono::Utc::now(), &chrono::Local)
}

/// A point in time as Unix milliseconds: RFC 3339, a date (its midnight in `tz`), or a duration
/// before `now` (`2h`, `3d`, `1w`, humantime's forms).
pub fn parse_when<Tz: TimeZone>(s: &str, now: DateTime<chrono::Utc>, tz: &Tz) -> Result<u64, String> {
    let s = s.trim();
    let ms = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.timestamp_millis()
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).ok_or("no midnight")?;
        // Where a clock change skips midnight, the day starts at the first time that exists.
        let start = (0..=2)
            .find_map(|h| tz.from_local_datetime(&(midnight + TimeDelta::hours(h))).earliest())
            .ok_or_else(|| format!("{s} has no midnight in the local time zone"))?;
        start.timestamp_millis()
    } else if let Ok(d) = humantime::parse_duration(s) {
        let d = TimeDelta::from_std(d).map_err(|_| format!("{s} is too long ago"))?;
        now.checked_sub_signed(d).ok_or_else(|| format!("{s} is too long ago"))?.timestamp_millis()
    } else {
        return Err(format!(
            "{s:?} is not a time: use 2026-11-30T10:00:00Z, a date like 2026-11-30, or a duration ago like 2h or 3d"
        ));
    };
    u64::try_from(ms).map_err(|_| format!("{s} is before 1970"))
}

/// Runs `confab search`.
pub async fn run(settings: &Settings, args: SearchArgs) -> anyhow::Result<()> {
    let query = args.query.join(" ");
    let filtered = !args.from.is_empty()
        || !args.conversations.is_empty()
        || args.after.is_some()
        || args.before.is_some()
        || args.with_attachments
        || args.without_attachments;
    if query.trim().is_empty() && !filtered {
        bail!("nothing to search for: give words, or a filter (--from, --in, --after, --before, --with-attachments)");
    }
    if let (Some(a), Some(b)) = (args.after, args.before)
        && a >= b
    {
        bail!("--after must be earlier than --before");
    }
    let c = session::connect(settings).await?;
    let result = search(&c.client, query, &args).await;
    c.client.close().await;
    result
}

async fn search(client: &Client, query: String, args: &SearchArgs) -> anyhow::Result<()> {
    let mut sender_ids = Vec::new();
    for u in &args.from {
        sender_ids.push(resolve::user(client, u).await?.user_id);
    }
    let mut conversation_ids = Vec::new();
    for spec in &args.conversations {
        // An id is taken as it is: conversations left since are searched too (§23.1).
        let id = match spec.trim_start_matches('#').parse::<u64>() {
            Ok(id) => id,
            Err(_) => resolve::conversation(client, spec).await?.0.conversation_id,
        };
        conversation_ids.push(id);
    }
    let has_attachment = if args.with_attachments {
        v1::AttachmentFilter::With
    } else if args.without_attachments {
        v1::AttachmentFilter::Without
    } else {
        v1::AttachmentFilter::Unspecified
    };
    let order = match args.order {
        Order::Newest => v1::SearchOrder::Newest,
        Order::Relevance => v1::SearchOrder::Relevance,
    };
    let mut req = v1::SearchMessages {
        query,
        conversation_ids,
        sender_ids,
        sent_after_ms: args.after.unwrap_or(0),
        sent_before_ms: args.before.unwrap_or(0),
        has_attachment: has_attachment as i32,
        order: order as i32,
        limit: 0,
        cursor: String::new(),
    };
    let want = args.limit as usize;
    let mut hits = Vec::new();
    // The latest report per conversation: later pages ran later.
    let mut lag: BTreeMap<u64, v1::IndexLag> = BTreeMap::new();
    let mut more = false;
    while hits.len() < want {
        req.limit = (want - hits.len()).min(PAGE_MAX as usize) as u32;
        let page = client.search_messages(req.clone()).await?;
        for l in page.index_lag {
            lag.insert(l.conversation_id, l);
        }
        hits.extend(page.hits);
        more = !page.next_cursor.is_empty();
        if !more {
            break;
        }
        req.cursor = page.next_cursor;
    }
    hits.truncate(want);
    let names = names_for(client, &hits, &lag).await?;
    let style = if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        Emphasis::Ansi
    } else {
        Emphasis::Brackets
    };
    for hit in &hits {
        if args.json {
            println!("{}", hit_json(hit, &names));
        } else {
            println!("{}", hit_text(hit, &names, style));
        }
    }
    if !args.json {
        if hits.is_empty() {
            eprintln!("no messages match");
        } else if more {
            eprintln!("(more hits: raise --limit)");
        }
    }
    if let Some(note) = lag_note(&lag.into_values().collect::<Vec<_>>(), &names) {
        eprintln!("confab: {note}");
    }
    Ok(())
}

/// Names of the conversations and senders the hits (and lag reports) show.
async fn names_for(
    client: &Client,
    hits: &[v1::SearchHit],
    lag: &BTreeMap<u64, v1::IndexLag>,
) -> anyhow::Result<Names> {
    let convs = if hits.is_empty() && lag.is_empty() { Vec::new() } else { resolve::all_conversations(client).await? };
    let senders = hits.iter().filter_map(|h| h.message.as_ref().map(|m| m.sender_id)).collect();
    resolve::names_for(client, &convs, senders).await
}

/// How matches are shown in text output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emphasis {
    /// Bold yellow (a terminal).
    Ansi,
    /// `[` and `]` around each match.
    Brackets,
}

/// A hit as JSON: the message as `history --json` prints it, its conversation's name, and the
/// highlights as the server gave them.
pub fn hit_json(hit: &v1::SearchHit, names: &Names) -> serde_json::Value {
    let m = hit.message.clone().unwrap_or_default();
    let mut v = message_json(&m, names);
    v["conversation"] = json!(names.conversation(m.conversation_id));
    v["highlights"] = json!(hit.highlights.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>());
    v
}

/// A hit as text: `conversation · sender · time · #id`, then the text indented, matches
/// emphasised, and its attachments.
pub fn hit_text(hit: &v1::SearchHit, names: &Names, style: Emphasis) -> String {
    let m = hit.message.clone().unwrap_or_default();
    let mut s = format!(
        "{} · {} · {} · #{}\n    ",
        names.conversation(m.conversation_id),
        names.user(m.sender_id),
        datetime(m.created_at_ms),
        m.message_id
    );
    for Piece { text, marked } in pieces(&m.text, &hit.highlights) {
        let text = text.replace('\n', "\n    ");
        match (marked, style) {
            (false, _) => s.push_str(&text),
            (true, Emphasis::Ansi) => s.push_str(&format!("\x1b[1;33m{text}\x1b[0m")),
            (true, Emphasis::Brackets) => s.push_str(&format!("[{text}]")),
        }
    }
    for a in &m.attachments {
        s.push_str(&format!("\n    📎 {}  {}", attachment_summary(a), a.media_id));
    }
    s
}

/// What to say when the index had not caught up with some conversations (§23.6).
pub fn lag_note(lag: &[v1::IndexLag], names: &Names) -> Option<String> {
    if lag.is_empty() {
        return None;
    }
    let each: Vec<String> = lag
        .iter()
        .map(|l| {
            let entries = crate::format::plural(l.head_seq, "entry", "entries");
            format!("{}: {} of {entries}", names.conversation(l.conversation_id), l.indexed_seq)
        })
        .collect();
    let n = lag.len();
    let convs = crate::format::plural(n as u64, "conversation", "conversations");
    Some(format!(
        "the search index is catching up in {convs} ({}): their newest messages may be missing",
        each.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    fn now() -> DateTime<chrono::Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().to_utc()
    }

    #[test]
    fn times_in_three_forms() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let paris = FixedOffset::east_opt(3600).unwrap();
        let noon = 1_796_040_000_000;
        assert_eq!(parse_when("2026-11-30T12:00:00Z", now(), &utc), Ok(noon));
        assert_eq!(parse_when("2026-11-30T13:00:00+01:00", now(), &utc), Ok(noon));
        assert_eq!(parse_when("2026-11-30", now(), &utc), Ok(noon - 12 * 3_600_000));
        assert_eq!(parse_when("2026-11-30", now(), &paris), Ok(noon - 13 * 3_600_000));
        assert_eq!(parse_when("2h", now(), &utc), Ok(noon - 2 * 3_600_000));
        assert_eq!(parse_when(" 3d ", now(), &utc), Ok(noon - 3 * 86_400_000));
        assert_eq!(parse_when("90m", now(), &utc), Ok(noon - 90 * 60_000));
        assert!(parse_when("yesterday-ish", now(), &utc).unwrap_err().contains("is not a time"));
        assert!(parse_when("1969-12-31", now(), &utc).unwrap_err().contains("before 1970"));
        assert!(parse_when("2026-13-01", now(), &utc).is_err());
    }

    fn hit(text: &str, ranges: &[(u32, u32)]) -> v1::SearchHit {
        v1::SearchHit {
            message: Some(v1::Message {
                message_id: 120,
                conversation_id: 11,
                seq: 20,
                sender_id: 3,
                text: text.into(),
                created_at_ms: 1_796_040_000_000,
                ..Default::default()
            }),
            highlights: ranges.iter().map(|&(start, end)| v1::TextRange { start, end }).collect(),
        }
    }

    fn names() -> Names {
        let mut n = Names::default();
        n.users.insert(3, "carol".into());
        n.conversations.insert(11, "release crew".into());
        n
    }

    #[test]
    fn text_output_marks_matches() {
        let h = hit("tag the Élodie release\nthen deploy", &[(8, 15), (29, 35)]);
        let plain = hit_text(&h, &names(), Emphasis::Brackets);
        let (head, body) = plain.split_once('\n').unwrap();
        assert!(head.starts_with("release crew · carol · 2026-"), "{head}");
        assert!(head.ends_with(" · #120"), "{head}");
        assert_eq!(body, "    tag the [Élodie] release\n    then [deploy]");
        let ansi = hit_text(&h, &names(), Emphasis::Ansi);
        assert!(ansi.contains("\x1b[1;33mÉlodie\x1b[0m"), "{ansi:?}");
    }

    #[test]
    fn json_keeps_the_servers_offsets() {
        let v = hit_json(&hit("hello world", &[(6, 11)]), &names());
        assert_eq!(v["highlights"], json!([[6, 11]]));
        assert_eq!(
            (v["message_id"].as_u64(), v["seq"].as_u64(), v["sender_id"].as_u64()),
            (Some(120), Some(20), Some(3))
        );
        assert_eq!(v["conversation"], "release crew");
        assert_eq!(v["created_at_ms"].as_u64(), Some(1_796_040_000_000));
    }

    #[test]
    fn lag_is_noted_per_conversation() {
        assert_eq!(lag_note(&[], &names()), None);
        let lag = [
            v1::IndexLag { conversation_id: 11, indexed_seq: 18, head_seq: 20 },
            v1::IndexLag { conversation_id: 12, indexed_seq: 3, head_seq: 7 },
        ];
        assert_eq!(
            lag_note(&lag, &names()).unwrap(),
            "the search index is catching up in 2 conversations (release crew: 18 of 20 entries; #12: 3 of 7 \
             entries): their newest messages may be missing"
        );
    }
}
