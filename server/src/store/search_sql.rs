//! SQL of message search (`SearchStore`, migration 0012): the caller's searchable spans, the
//! search itself (its statement is built in `search_statement`), and the indexer's pass over
//! conversation logs, which writes each live message's document: its folded text or, with
//! encryption at rest, the blind index's tokens of it (`crypto::blind`, migration 0013) from the
//! opened text. Written once as generic functions over sqlx (`SearchSql<DB>`);
//! `impl_search_store!` forwards each backend's methods.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::conv_types::{ConvId, MessageId};
use super::keys::Sealer;
use super::progress_sql::{ProgressSql, SEARCH};
use super::search_statement::search_statement;
use super::search_types::{FoldFn, Found, IndexProgress, SearchKey, SearchScope, SearchSpec, Span};
use super::sql::SqlBackend;
use super::types::UserId;
use super::{Backend, StoreError};
use crate::crypto::Place;

/// Log kinds that change what a message's search document holds (`LogBody::kind`): posted,
/// edited, deleted.
const MESSAGE_KINDS: &str = "2, 3, 4";
/// Most log entries one indexer pass reads (over all its conversations): a pass's transaction
/// and memory stay small however far behind the index is.
const PASS_ENTRIES: i64 = 4000;

/// The last word position a PostgreSQL tsvector keeps (later words all get this one).
const TSVECTOR_LAST_POSITION: usize = 16_383;
/// Most positions a PostgreSQL tsvector keeps for one lexeme (later ones are dropped).
const TSVECTOR_LEXEME_POSITIONS: usize = 255;

/// Whether a tsvector of blind document `doc` keeps every token's position, so a run of tokens
/// side by side is found exactly where the text holds its needle. Past 16,383 tokens, or with a
/// token more than 255 times (a long message, a repeated pattern), it would not: positions would
/// be lost (a needle missed) or merged (a needle found where it is not, which `NOT` turns into a
/// miss). Such a document is kept as text instead (`search_statement`).
pub(super) fn fits_tsvector(doc: &str) -> bool {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, token) in doc.split_ascii_whitespace().enumerate() {
        let n = seen.entry(token).or_default();
        *n += 1;
        if i >= TSVECTOR_LAST_POSITION || *n > TSVECTOR_LEXEME_POSITIONS {
            return false;
        }
    }
    true
}

/// The search SQL for backend `DB`.
pub(super) struct SearchSql<DB>(PhantomData<DB>);

/// `v` as a comma-separated SQL list of integers (ids are never bound one by one in an `IN`).
pub(super) fn ids<T: Copy + Into<i64>>(v: &[T]) -> String {
    let mut out = String::new();
    for (i, id) in v.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}", (*id).into());
    }
    out
}

impl From<ConvId> for i64 {
    fn from(c: ConvId) -> Self {
        c.0
    }
}

impl From<UserId> for i64 {
    fn from(u: UserId) -> Self {
        u.0
    }
}

impl From<MessageId> for i64 {
    fn from(m: MessageId) -> Self {
        m.0
    }
}

/// A message as the indexer reads it.
struct Current {
    id: i64,
    conversation: i64,
    seq: i64,
    sender: i64,
    sent_at_ms: i64,
    text: String,
    deleted: bool,
    has_attachment: bool,
}

impl<DB: SqlBackend + sqlx::database::HasStatementCache> SearchSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Decode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    /// `user`'s spans (in `only` when given) and the index's progress in their conversations.
    pub(super) async fn scope(pool: &Pool<DB>, user: UserId, only: &[ConvId]) -> Result<SearchScope, StoreError> {
        let filter = if only.is_empty() { String::new() } else { format!(" AND s.conversation_id IN ({})", ids(only)) };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT s.conversation_id, s.from_seq, s.until_seq, c.head_seq, COALESCE(p.indexed_seq, 0) \
             FROM membership_spans s JOIN conversations c ON c.id = s.conversation_id \
             LEFT JOIN search_progress p ON p.conversation_id = s.conversation_id \
             WHERE s.user_id = $1{filter} ORDER BY s.conversation_id, s.from_seq"
        )))
        .persistent(false)
        .bind(user.0)
        .fetch_all(pool)
        .await?;
        let mut scope = SearchScope::default();
        for r in &rows {
            let conversation = ConvId(r.try_get(0)?);
            scope.spans.push(Span { conversation, from_seq: r.try_get(1)?, until_seq: r.try_get(2)? });
            if scope.progress.last().is_none_or(|p| p.conversation != conversation) {
                scope.progress.push(IndexProgress {
                    conversation,
                    head_seq: r.try_get(3)?,
                    indexed_seq: r.try_get(4)?,
                });
            }
        }
        Ok(scope)
    }

    /// The page of hits `spec` asks for, plus one when more follow.
    pub(super) async fn search(pool: &Pool<DB>, spec: &SearchSpec) -> Result<Vec<Found>, StoreError> {
        if spec.conversations.is_empty() {
            return Ok(Vec::new());
        }
        let built = search_statement(DB::BACKEND, spec);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(built.sql)).persistent(false);
        for v in built.binds {
            q = q.bind(v);
        }
        let rows = q.fetch_all(pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Found {
                    conversation: ConvId(r.try_get(1)?),
                    key: SearchKey {
                        message_id: MessageId(r.try_get(0)?),
                        sent_at_ms: r.try_get(2)?,
                        score: r.try_get(3)?,
                    },
                })
            })
            .collect()
    }

    /// Conversations whose log the index has not read to the head, lowest id first.
    pub(super) async fn lagging(pool: &Pool<DB>, after: ConvId, limit: u32) -> Result<Vec<ConvId>, StoreError> {
        ProgressSql::<DB>::lagging(pool, SEARCH, after, limit).await
    }

    /// One indexer pass over `convs` in one transaction: their progress rows locked (two nodes
    /// never index one conversation at once), up to `PASS_ENTRIES` new log entries read in all,
    /// the messages they touch written in their current state (deleted ones removed), and the
    /// progress moved on. Returns each conversation's progress after the pass.
    pub(super) async fn index_pass(
        pool: &Pool<DB>,
        sealer: &Sealer,
        convs: &[ConvId],
        fold: &FoldFn,
    ) -> Result<(Vec<IndexProgress>, u64), StoreError> {
        let convs: BTreeSet<ConvId> = convs.iter().copied().collect();
        let convs: Vec<ConvId> = convs.into_iter().collect();
        if convs.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let rows = ProgressSql::<DB>::lock(&mut tx, SEARCH, &convs).await?;
        let mut progress = Vec::with_capacity(rows.len());
        let mut touched: BTreeSet<i64> = BTreeSet::new();
        let mut ranges: Vec<String> = Vec::new();
        let mut budget = PASS_ENTRIES;
        for r in &rows {
            let (conversation, indexed_seq, head_seq) = (r.conversation.0, r.read, r.head);
            if indexed_seq >= head_seq || budget <= 0 {
                progress.push(IndexProgress { conversation: ConvId(conversation), indexed_seq, head_seq });
                continue;
            }
            let upto = head_seq.min(indexed_seq.saturating_add(budget));
            budget -= upto - indexed_seq;
            ranges.push(format!("({conversation}, {indexed_seq}, {upto})"));
            progress.push(IndexProgress { conversation: ConvId(conversation), indexed_seq: upto, head_seq });
        }
        // Every conversation's new entries in one statement (trusted integers, inlined).
        if !ranges.is_empty() {
            let events = sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH r(cid, lo, hi) AS (VALUES {}) SELECT e.message_id FROM r JOIN conversation_events e \
                 ON e.conversation_id = r.cid AND e.seq > r.lo AND e.seq <= r.hi \
                 WHERE e.kind IN ({MESSAGE_KINDS}) AND e.message_id IS NOT NULL",
                ranges.join(", ")
            )))
            .persistent(false)
            .fetch_all(&mut *tx)
            .await?;
            for e in &events {
                touched.insert(e.try_get(0)?);
            }
        }
        let touched: Vec<i64> = touched.into_iter().collect();
        let mut written = 0u64;
        for chunk in touched.chunks(500) {
            let mut current = Self::current(&mut tx, chunk).await?;
            for m in &mut current {
                let place = Place::Message { conv: m.conversation, seq: m.seq };
                match sealer.open_all(&mut [(place, &mut m.text)]).await {
                    Ok(()) => {}
                    // A value that does not open is left out of the index (reads of it fail
                    // loudly); the rest of the pass goes on.
                    Err(StoreError::Sealed(crate::crypto::CryptoError::Inauthentic)) => {
                        tracing::error!(message = m.id, "a sealed message text failed authentication; not indexed");
                        m.deleted = true;
                    }
                    Err(e) => return Err(e),
                }
            }
            let blind = sealer.blind_index().is_some();
            written += Self::write_docs(&mut tx, chunk, &current, fold, blind).await?;
        }
        ProgressSql::<DB>::advance(&mut tx, SEARCH, &rows, progress.iter().map(|p| p.indexed_seq)).await?;
        tx.commit().await?;
        Ok((progress, written))
    }

    async fn current(tx: &mut sqlx::Transaction<'_, DB>, ids_: &[i64]) -> Result<Vec<Current>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT m.id, m.conversation_id, m.seq, m.sender_id, m.created_at_ms, m.text, m.deleted_at_ms, \
                    (SELECT COUNT(*) FROM message_attachments a WHERE a.message_id = m.id) \
             FROM messages m WHERE m.id IN ({})",
            ids(ids_)
        )))
        .persistent(false)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| {
                let deleted: Option<i64> = r.try_get(6)?;
                let attachments: i64 = r.try_get(7)?;
                Ok(Current {
                    id: r.try_get(0)?,
                    conversation: r.try_get(1)?,
                    seq: r.try_get(2)?,
                    sender: r.try_get(3)?,
                    sent_at_ms: r.try_get(4)?,
                    text: r.try_get(5)?,
                    deleted: deleted.is_some(),
                    has_attachment: attachments > 0,
                })
            })
            .collect()
    }

    /// Replaces the documents of `touched` by those of their live messages in `current`. `blind`:
    /// `fold` makes blind documents (encryption at rest), kept in `search_blind` on SQLite (`body`
    /// empty), and on PostgreSQL as a tsvector (`tokens`, `body` empty) or, when one would lose
    /// positions (`fits_tsvector`), as text (`body`, `tokens` empty).
    async fn write_docs(
        tx: &mut sqlx::Transaction<'_, DB>,
        touched: &[i64],
        current: &[Current],
        fold: &FoldFn,
        blind: bool,
    ) -> Result<u64, StoreError> {
        let list = ids(touched);
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM search_docs WHERE message_id IN ({list})")))
            .persistent(false)
            .execute(&mut **tx)
            .await?;
        let fts = if blind { "search_blind" } else { "search_trigrams" };
        if DB::BACKEND == Backend::Sqlite {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {fts} WHERE rowid IN ({list})")))
                .persistent(false)
                .execute(&mut **tx)
                .await?;
        }
        let sqlite_blind = blind && DB::BACKEND == Backend::Sqlite;
        let live: Vec<(&Current, String)> = current.iter().filter(|m| !m.deleted).map(|m| (m, fold(&m.text))).collect();
        let flag = |b: bool| match (DB::BACKEND, b) {
            (Backend::Postgres, true) => "TRUE",
            (Backend::Postgres, false) => "FALSE",
            (Backend::Sqlite, true) => "1",
            (Backend::Sqlite, false) => "0",
        };
        for chunk in live.chunks(100) {
            let mut values = String::new();
            for (i, (m, body)) in chunk.iter().enumerate() {
                if i > 0 {
                    values.push_str(", ");
                }
                // Blind: on SQLite the document goes into `search_blind` only; on PostgreSQL into
                // the tsvector only, or the text only.
                let doc = match (DB::BACKEND, blind) {
                    (Backend::Postgres, true) if fits_tsvector(body) => {
                        format!("'', to_tsvector('simple', ${})", i + 1)
                    }
                    (Backend::Postgres, true) => format!("${}, CAST('' AS tsvector)", i + 1),
                    (Backend::Postgres, false) => format!("${}, NULL", i + 1),
                    (Backend::Sqlite, true) => "''".to_string(),
                    (Backend::Sqlite, false) => format!("${}", i + 1),
                };
                let _ = write!(
                    values,
                    "({}, {}, {}, {}, {}, {}, {doc})",
                    m.id,
                    m.conversation,
                    m.seq,
                    m.sender,
                    m.sent_at_ms,
                    flag(m.has_attachment),
                );
            }
            let tokens = if DB::BACKEND == Backend::Postgres { ", tokens" } else { "" };
            let sql = format!(
                "INSERT INTO search_docs (message_id, conversation_id, seq, sender_id, sent_at_ms, has_attachment, body{tokens}) \
                 VALUES {values}"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            if !sqlite_blind {
                for (_, body) in chunk {
                    q = q.bind(body.as_str());
                }
            }
            q.execute(&mut **tx).await?;
            if DB::BACKEND == Backend::Sqlite {
                let values: Vec<String> =
                    chunk.iter().enumerate().map(|(i, (m, _))| format!("({}, ${})", m.id, i + 1)).collect();
                let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {fts} (rowid, body) VALUES {}",
                    values.join(", ")
                )))
                .persistent(false);
                for (_, body) in chunk {
                    q = q.bind(body.as_str());
                }
                q.execute(&mut **tx).await?;
            }
        }
        Ok(live.len() as u64)
    }
}

/// Groups found hits by conversation, keeping each group's ids in hit order.
pub(crate) fn by_conversation(found: &[Found]) -> BTreeMap<ConvId, Vec<MessageId>> {
    let mut out: BTreeMap<ConvId, Vec<MessageId>> = BTreeMap::new();
    for f in found {
        out.entry(f.conversation).or_default().push(f.key.message_id);
    }
    out
}

macro_rules! impl_search_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::SearchStore for $store {
            async fn search_scope(
                &self,
                user: $crate::store::UserId,
                only: &[$crate::store::ConvId],
            ) -> Result<$crate::store::SearchScope, $crate::store::StoreError> {
                let f = $crate::store::search_sql::SearchSql::scope(&self.pool, user, only);
                $crate::store::timed(&self.metrics, "search_scope", f).await
            }

            async fn search(
                &self,
                spec: &$crate::store::SearchSpec,
            ) -> Result<Vec<$crate::store::Found>, $crate::store::StoreError> {
                let f = $crate::store::search_sql::SearchSql::search(&self.pool, spec);
                $crate::store::timed(&self.metrics, "search", f).await
            }

            async fn search_lagging(
                &self,
                after: $crate::store::ConvId,
                limit: u32,
            ) -> Result<Vec<$crate::store::ConvId>, $crate::store::StoreError> {
                let f = $crate::store::search_sql::SearchSql::lagging(&self.pool, after, limit);
                $crate::store::timed(&self.metrics, "search_lagging", f).await
            }

            async fn index_pass(
                &self,
                convs: &[$crate::store::ConvId],
                fold: &$crate::store::FoldFn,
            ) -> Result<(Vec<$crate::store::IndexProgress>, u64), $crate::store::StoreError> {
                let f = $crate::store::search_sql::SearchSql::index_pass(&self.pool, &self.sealer, convs, fold);
                $crate::store::timed(&self.metrics, "index_pass", f).await
            }
        }
    };
}

pub(super) use impl_search_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tsvector_holds_a_document_while_it_keeps_every_position() {
        let words = |n: usize| (0..n).map(|i| format!("{i:x}")).collect::<Vec<_>>().join(" ");
        assert!(fits_tsvector(&format!(" {} ", words(TSVECTOR_LAST_POSITION))));
        assert!(!fits_tsvector(&format!(" {} ", words(TSVECTOR_LAST_POSITION + 1))));
        assert!(fits_tsvector(&" abc".repeat(TSVECTOR_LEXEME_POSITIONS)));
        assert!(!fits_tsvector(&" abc".repeat(TSVECTOR_LEXEME_POSITIONS + 1)));
        assert!(fits_tsvector(" "));
    }
}
