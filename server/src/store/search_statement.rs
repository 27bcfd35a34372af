//! The statement of one search (`SearchSpec`, docs/protocol.md §23): its conditions on the
//! folded body (`LIKE` over pg_trgm on PostgreSQL; on SQLite the FTS5 trigram table, `instr` for
//! needles under three characters) or, with encryption at rest, on the blind index's tokens (a
//! tsvector phrase or, for documents too long for one, `LIKE` on the tokens; an FTS5 phrase), the
//! relevance score, and the page after a cursor. Every needle is bound, never spliced.

use super::Backend;
use super::search_sql::ids;
use super::search_types::{AttachmentFilter, IndexKind, Match, SearchOrder, SearchSpec};
use super::sql::escape_like;

/// A statement's text and the strings it binds, in order (`$1`, `$2`, … are numbered as pushed).
pub(super) struct Built {
    pub(super) sql: String,
    pub(super) binds: Vec<String>,
}

impl Built {
    fn bind(&mut self, value: String) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// PostgreSQL, blind: `tokens` (a needle's or a whole word's) side by side in the document.
    /// A document a tsvector holds whole is in `d.tokens` (a `<->` chain); one it cannot
    /// (`search_sql::fits_tsvector`) is in `d.body` as text, spaces around each token, with an
    /// empty `d.tokens`: both arms are exact, so `NOT` of the condition is too.
    fn blind_pg(&mut self, tokens: &str) -> String {
        let p = self.bind(tokens.to_string());
        let l = self.bind(format!("% {} %", escape_like(tokens)));
        format!("(d.tokens @@ phraseto_tsquery('simple', {p}) OR d.body LIKE {l})")
    }

    /// The SQL condition for `m` on `d.body` (blind: on the token index).
    fn condition(&mut self, backend: Backend, index: IndexKind, m: &Match) -> String {
        match m {
            Match::Contains(tokens) if index == IndexKind::Blind => match backend {
                // A needle's tokens side by side: an FTS5 phrase, a tsquery `<->` chain.
                Backend::Sqlite => {
                    let p = self.bind(format!("\"{tokens}\""));
                    format!("d.message_id IN (SELECT rowid FROM search_blind WHERE search_blind MATCH {p})")
                }
                Backend::Postgres => self.blind_pg(tokens),
            },
            Match::Contains(needle) => match backend {
                Backend::Postgres => {
                    let p = self.bind(format!("%{}%", escape_like(needle)));
                    format!("d.body LIKE {p}")
                }
                // The trigram table answers three characters or more; shorter needles are
                // looked for in the caller's spans only.
                Backend::Sqlite if needle.chars().count() >= 3 => {
                    let p = self.bind(format!("\"{}\"", needle.replace('"', "\"\"")));
                    format!("d.message_id IN (SELECT rowid FROM search_trigrams WHERE search_trigrams MATCH {p})")
                }
                Backend::Sqlite => {
                    let p = self.bind(needle.clone());
                    format!("instr(d.body, {p}) > 0")
                }
            },
            Match::Not(inner) => format!("NOT ({})", self.condition(backend, index, inner)),
            Match::Any(ms) | Match::All(ms) if ms.is_empty() => "1 = 1".to_string(),
            Match::Any(ms) => {
                let parts: Vec<String> = ms.iter().map(|m| self.condition(backend, index, m)).collect();
                format!("({})", parts.join(" OR "))
            }
            Match::All(ms) => {
                let parts: Vec<String> = ms.iter().map(|m| self.condition(backend, index, m)).collect();
                format!("({})", parts.join(" AND "))
            }
        }
    }

    /// How many of `needles` occur as whole words.
    fn score(&mut self, backend: Backend, index: IndexKind, needles: &[String]) -> String {
        if needles.is_empty() {
            return "0".to_string();
        }
        let parts: Vec<String> = needles
            .iter()
            .map(|n| match (backend, index) {
                (Backend::Postgres, IndexKind::Blind) => {
                    let c = self.blind_pg(n);
                    format!("(CASE WHEN {c} THEN 1 ELSE 0 END)")
                }
                // The word's tokens (spaces around included) side by side in `search_blind`.
                (Backend::Sqlite, IndexKind::Blind) => {
                    let p = self.bind(format!("\"{n}\""));
                    format!(
                        "(CASE WHEN d.message_id IN (SELECT rowid FROM search_blind WHERE search_blind MATCH {p}) \
                         THEN 1 ELSE 0 END)"
                    )
                }
                (Backend::Sqlite, IndexKind::Folded) => {
                    let p = self.bind(format!(" {n} "));
                    format!("(CASE WHEN instr(d.body, {p}) > 0 THEN 1 ELSE 0 END)")
                }
                (Backend::Postgres, IndexKind::Folded) => {
                    let p = self.bind(format!("% {} %", escape_like(n)));
                    format!("(CASE WHEN d.body LIKE {p} THEN 1 ELSE 0 END)")
                }
            })
            .collect();
        parts.join(" + ")
    }
}

/// The statement that finds `spec`'s page (one row more than the limit).
pub(super) fn search_statement(backend: Backend, spec: &SearchSpec) -> Built {
    let mut b = Built { sql: String::new(), binds: Vec::new() };
    let mut conds =
        vec![format!("s.user_id = {}", spec.user.0), format!("d.conversation_id IN ({})", ids(&spec.conversations))];
    if !spec.senders.is_empty() {
        conds.push(format!("d.sender_id IN ({})", ids(&spec.senders)));
    }
    if let Some(t) = spec.sent_after_ms {
        conds.push(format!("d.sent_at_ms >= {t}"));
    }
    if let Some(t) = spec.sent_before_ms {
        conds.push(format!("d.sent_at_ms < {t}"));
    }
    match (spec.attachments, backend) {
        (AttachmentFilter::Either, _) => {}
        (AttachmentFilter::With, Backend::Postgres) => conds.push("d.has_attachment".into()),
        (AttachmentFilter::Without, Backend::Postgres) => conds.push("NOT d.has_attachment".into()),
        (AttachmentFilter::With, Backend::Sqlite) => conds.push("d.has_attachment = 1".into()),
        (AttachmentFilter::Without, Backend::Sqlite) => conds.push("d.has_attachment = 0".into()),
    }
    if let Some(m) = &spec.matching {
        let c = b.condition(backend, spec.index, m);
        conds.push(c);
    }
    let score = match spec.order {
        SearchOrder::Newest => "0".to_string(),
        SearchOrder::Relevance => b.score(backend, spec.index, &spec.scored),
    };
    let after = spec.after.map_or_else(String::new, |k| {
        let (t, id) = (k.sent_at_ms, k.message_id.0);
        let newer = format!("(x.sent_at_ms < {t} OR (x.sent_at_ms = {t} AND x.message_id < {id}))");
        match spec.order {
            SearchOrder::Newest => format!("WHERE {newer}"),
            SearchOrder::Relevance => format!("WHERE (x.score < {s} OR (x.score = {s} AND {newer}))", s = k.score),
        }
    });
    let order = match spec.order {
        SearchOrder::Newest => "x.sent_at_ms DESC, x.message_id DESC",
        SearchOrder::Relevance => "x.score DESC, x.sent_at_ms DESC, x.message_id DESC",
    };
    b.sql = format!(
        "SELECT x.message_id, x.conversation_id, x.sent_at_ms, x.score FROM (\
           SELECT d.message_id AS message_id, d.conversation_id AS conversation_id, d.sent_at_ms AS sent_at_ms, \
                  CAST({score} AS BIGINT) AS score \
           FROM membership_spans s JOIN search_docs d ON d.conversation_id = s.conversation_id \
                AND d.seq > s.from_seq AND (s.until_seq IS NULL OR d.seq <= s.until_seq) \
           WHERE {conds}) x {after} ORDER BY {order} LIMIT {limit}",
        conds = conds.join(" AND "),
        limit = i64::from(spec.limit) + 1,
    );
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ConvId, UserId};

    fn spec(matching: Match) -> SearchSpec {
        SearchSpec {
            user: UserId(7),
            index: IndexKind::Folded,
            matching: Some(matching),
            scored: vec!["config".into()],
            conversations: vec![ConvId(1), ConvId(2)],
            senders: vec![],
            sent_after_ms: None,
            sent_before_ms: None,
            attachments: AttachmentFilter::Either,
            order: SearchOrder::Relevance,
            after: None,
            limit: 20,
        }
    }

    #[test]
    fn needles_are_bound_never_spliced_and_short_ones_scan_on_sqlite() {
        let m = Match::All(vec![
            Match::Contains("50%_off".into()),
            Match::Not(Box::new(Match::Contains("a\"b".into()))),
            Match::Any(vec![Match::Contains("中 文".into()), Match::Contains("xy".into())]),
        ]);
        let pg = search_statement(Backend::Postgres, &spec(m.clone()));
        assert_eq!(pg.binds, ["%50\\%\\_off%", "%a\"b%", "%中 文%", "%xy%", "% config %"]);
        assert!(!pg.sql.contains("off") && !pg.sql.contains('"'));
        let lite = search_statement(Backend::Sqlite, &spec(m));
        assert_eq!(lite.binds, ["\"50%_off\"", "\"a\"\"b\"", "\"中 文\"", "xy", " config "]);
        assert!(lite.sql.contains("instr(d.body, $4)") && lite.sql.contains("MATCH $1"));
    }

    #[test]
    fn blind_needles_use_the_token_index_bound() {
        let m =
            Match::All(vec![Match::Contains("aaaa bbbb".into()), Match::Not(Box::new(Match::Contains("cccc".into())))]);
        let blind = SearchSpec { index: IndexKind::Blind, scored: vec!["dddd eeee".into()], ..spec(m) };
        let pg = search_statement(Backend::Postgres, &blind);
        assert_eq!(pg.binds, ["aaaa bbbb", "% aaaa bbbb %", "cccc", "% cccc %", "dddd eeee", "% dddd eeee %"]);
        assert!(pg.sql.contains("(d.tokens @@ phraseto_tsquery('simple', $1) OR d.body LIKE $2)"));
        assert!(pg.sql.contains("NOT ((d.tokens @@ phraseto_tsquery('simple', $3) OR d.body LIKE $4))"));
        let lite = search_statement(Backend::Sqlite, &blind);
        assert_eq!(lite.binds, ["\"aaaa bbbb\"", "\"cccc\"", "\"dddd eeee\""]);
        assert!(lite.sql.contains("search_blind MATCH $1") && lite.sql.contains("search_blind MATCH $3"));
        assert!(!lite.sql.contains("search_trigrams") && !lite.sql.contains("d.body"));
    }
}
