//! The watermarks of the log readers — the search indexer (`search_progress`, migration 0012)
//! and the push planner (`push_progress`, 0014): how far each has read every conversation's log,
//! which conversations it has not read to the head, and, inside a reader's pass, its rows locked
//! (`FOR UPDATE` on PostgreSQL: two nodes never read one conversation at once) and moved on.

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::conv_types::ConvId;
use super::search_sql::ids;
use super::sql::SqlBackend;
use super::{Backend, StoreError};

/// One reader's watermark table and its column.
#[derive(Clone, Copy, Debug)]
pub(super) struct Watermark {
    pub table: &'static str,
    pub column: &'static str,
}

pub(super) const SEARCH: Watermark = Watermark { table: "search_progress", column: "indexed_seq" };
pub(super) const PUSH: Watermark = Watermark { table: "push_progress", column: "planned_seq" };

/// A conversation's watermark, locked for a pass, with its log's head and its kind.
#[derive(Clone, Copy, Debug)]
pub(super) struct Locked {
    pub conversation: ConvId,
    /// The last seq read.
    pub read: i64,
    pub head: i64,
    /// `conversations.kind`.
    pub kind: i64,
}

pub(super) struct ProgressSql<DB>(PhantomData<DB>);

impl<DB: SqlBackend + sqlx::database::HasStatementCache> ProgressSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
{
    /// Conversations whose log `w`'s reader has not read to the head, lowest id first.
    pub(super) async fn lagging(
        pool: &Pool<DB>,
        w: Watermark,
        after: ConvId,
        limit: u32,
    ) -> Result<Vec<ConvId>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT c.id FROM conversations c LEFT JOIN {t} p ON p.conversation_id = c.id \
             WHERE c.id > $1 AND c.head_seq > COALESCE(p.{col}, 0) ORDER BY c.id LIMIT $2",
            t = w.table,
            col = w.column
        )))
        .bind(after.0)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        rows.iter().map(|r| Ok(ConvId(r.try_get(0)?))).collect()
    }

    /// The watermarks of `convs` (distinct, ascending), created at 0 where missing, locked until
    /// the transaction ends.
    pub(super) async fn lock(
        tx: &mut sqlx::Transaction<'_, DB>,
        w: Watermark,
        convs: &[ConvId],
    ) -> Result<Vec<Locked>, StoreError> {
        let values: Vec<String> = convs.iter().map(|c| format!("({}, 0)", c.0)).collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (conversation_id, {}) VALUES {} ON CONFLICT DO NOTHING",
            w.table,
            w.column,
            values.join(", ")
        )))
        .persistent(false)
        .execute(&mut **tx)
        .await?;
        let lock = match DB::BACKEND {
            Backend::Postgres => " FOR UPDATE OF p",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT p.conversation_id, p.{col}, c.head_seq, CAST(c.kind AS BIGINT) FROM {t} p \
             JOIN conversations c ON c.id = p.conversation_id \
             WHERE p.conversation_id IN ({list}) ORDER BY p.conversation_id{lock}",
            t = w.table,
            col = w.column,
            list = ids(convs)
        )))
        .persistent(false)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Locked {
                    conversation: ConvId(r.try_get(0)?),
                    read: r.try_get(1)?,
                    head: r.try_get(2)?,
                    kind: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Moves each locked watermark to the seq its pass reached (`reached`, one per row of
    /// `locked`, in order), in one statement for those that moved (a pass over 256
    /// conversations is one round trip here, not 256). Trusted integers only, inlined.
    pub(super) async fn advance(
        tx: &mut sqlx::Transaction<'_, DB>,
        w: Watermark,
        locked: &[Locked],
        reached: impl Iterator<Item = i64>,
    ) -> Result<(), StoreError> {
        let moves: Vec<(ConvId, i64)> = locked
            .iter()
            .zip(reached)
            .filter(|(r, seq)| *seq != r.read)
            .map(|(r, seq)| (r.conversation, seq))
            .collect();
        if moves.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = moves.iter().map(|(c, seq)| format!("({}, {seq})", c.0)).collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH v(cid, seq) AS (VALUES {values}) UPDATE {t} SET {col} = v.seq FROM v WHERE {t}.conversation_id = v.cid",
            values = values.join(", "),
            t = w.table,
            col = w.column
        )))
        .persistent(false)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
