//! SQL of the re-encryption job of encryption at rest (migration 0013), shared by both
//! backends: one step over a sealed column (`KeysSql::step`), the rows after the job's cursor, how
//! many are left, and the job's progress rows. A second `impl` block of `KeysSql<DB>` (the rest of
//! the operator's SQL is in `keys_sql`), with the same bounds.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::keys::{Scope, Sealer};
use super::keys_sql::{JobProgress, JobStep, KeysSql, SealedColumn};
use super::sql::SqlBackend;
use super::{ConvId, StoreError};
use crate::crypto::{self, Place};

/// A row the job looks at: where its value sits, and the value.
struct JobRow {
    /// The cursor after this row.
    cursor: String,
    scope: Scope,
    at_ms: i64,
    /// `(conversation or message id, seq or position)` for the place and the update.
    a: i64,
    b: i64,
    /// Media or upload id, or the attachment's media id.
    name: String,
    value: String,
}

impl JobRow {
    fn place(&self, col: SealedColumn) -> Place<'_> {
        match col {
            SealedColumn::MessageTexts => Place::Message { conv: self.a, seq: self.b },
            SealedColumn::LogTexts => Place::Log { conv: self.a, seq: self.b },
            SealedColumn::AttachmentNames => Place::Attachment { message: self.a, position: self.b, media: &self.name },
            SealedColumn::MediaNames => Place::MediaName { media: &self.name },
            SealedColumn::UploadNames => Place::UploadName { upload: &self.name },
        }
    }
}

fn split_cursor(c: &str) -> (i64, i64) {
    let mut it = c.split('/').map(|p| p.parse::<i64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

impl<DB: SqlBackend + sqlx::database::HasStatementCache> KeysSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
{
    /// Rows of `col` the job has yet to visit after `cursor` (`keys status`).
    pub(super) async fn count_after(pool: &Pool<DB>, col: SealedColumn, cursor: &str) -> Result<i64, StoreError> {
        let (table, _, filter) = table_of(col);
        let pk = cursor_columns(col);
        let (a, b) = split_cursor(cursor);
        let after = match col {
            SealedColumn::MediaNames | SealedColumn::UploadNames => format!("{pk} > $1"),
            SealedColumn::MessageTexts => format!("{pk} > {a}"),
            _ => {
                format!("({pk}) > ({a}, {b})")
            }
        };
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {after}{filter}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
        if matches!(col, SealedColumn::MediaNames | SealedColumn::UploadNames) {
            q = q.bind(cursor.to_string());
        }
        Ok(q.fetch_one(pool).await?.try_get(0)?)
    }

    /// One step of the re-encryption job on `col`: up to `limit` rows after the cursor, each
    /// plaintext or older-generation value sealed again under the current generation (a value
    /// changed meanwhile by a writer is left to it), and the cursor moved on, in one transaction.
    pub(super) async fn step(
        pool: &Pool<DB>,
        sealer: &Sealer,
        col: SealedColumn,
        limit: u32,
        now_ms: i64,
    ) -> Result<JobStep, StoreError> {
        let generation = sealer.generation();
        if generation == 0 {
            return Ok(JobStep { finished: true, ..JobStep::default() });
        }
        let job = sqlx::query("SELECT generation, cursor, finished_at_ms FROM encryption_jobs WHERE name = $1")
            .bind(col.name())
            .fetch_optional(pool)
            .await?;
        let cursor = match &job {
            Some(r) if r.try_get::<i64, _>(0)? == generation => {
                if r.try_get::<Option<i64>, _>(2)?.is_some() {
                    return Ok(JobStep { finished: true, ..JobStep::default() });
                }
                r.try_get::<String, _>(1)?
            }
            _ => String::new(),
        };
        let rows = Self::rows_after(pool, col, &cursor, limit).await?;
        let mut changes: Vec<(usize, String)> = Vec::new();
        let mut from_clear = 0u64;
        for (i, row) in rows.iter().enumerate() {
            if row.value.is_empty() {
                continue;
            }
            let stale = match crypto::from_text(&row.value)? {
                None => {
                    from_clear += 1;
                    true
                }
                Some(bytes) => {
                    let id = crypto::sealed_key_id(&bytes).ok_or(crypto::CryptoError::Inauthentic)?;
                    sealer.key_generation(id).await? < generation
                }
            };
            if !stale {
                continue;
            }
            let mut plain = row.value.clone();
            sealer.open_all(&mut [(row.place(col), &mut plain)]).await?;
            sealer.prepare([row.scope], row.at_ms).await?;
            changes.push((i, sealer.seal_text(row.scope, row.at_ms, &row.place(col), &plain)?));
        }
        let finished = rows.len() < limit as usize;
        let next = rows.last().map_or(cursor.clone(), |r| r.cursor.clone());
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let mut rewritten = 0u64;
        for (i, sealed) in &changes {
            let row = &rows[*i];
            let (table, column, _) = table_of(col);
            let key = cursor_columns(col);
            let r = match col {
                SealedColumn::MediaNames | SealedColumn::UploadNames => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE {table} SET {column} = $1 WHERE {key} = $2 AND {column} = $3"
                    )))
                    .bind(sealed.as_str())
                    .bind(row.name.as_str())
                    .bind(row.value.as_str())
                    .execute(&mut *tx)
                    .await?
                }
                SealedColumn::MessageTexts => {
                    sqlx::query("UPDATE messages SET text = $1 WHERE id = $2 AND text = $3")
                        .bind(sealed.as_str())
                        .bind(row.cursor.parse::<i64>().unwrap_or(0))
                        .bind(row.value.as_str())
                        .execute(&mut *tx)
                        .await?
                }
                SealedColumn::LogTexts | SealedColumn::AttachmentNames => {
                    let (x, y) = key.split_once(", ").unwrap_or((key, key));
                    let (a, b) = split_cursor(&row.cursor);
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE {table} SET {column} = $1 WHERE {x} = $2 AND {y} = $3 AND {column} = $4"
                    )))
                    .bind(sealed.as_str())
                    .bind(a)
                    .bind(b)
                    .bind(row.value.as_str())
                    .execute(&mut *tx)
                    .await?
                }
            };
            rewritten += DB::rows_affected(&r);
        }
        sqlx::query(
            "INSERT INTO encryption_jobs (name, generation, cursor, rewritten, finished_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET generation = excluded.generation, cursor = excluded.cursor, \
             rewritten = CASE WHEN encryption_jobs.generation = excluded.generation \
                              THEN encryption_jobs.rewritten + excluded.rewritten ELSE excluded.rewritten END, \
             finished_at_ms = excluded.finished_at_ms",
        )
        .bind(col.name())
        .bind(generation)
        .bind(next.as_str())
        .bind(i64::try_from(rewritten).unwrap_or(i64::MAX))
        .bind(finished.then_some(now_ms))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(JobStep { rewritten, from_clear, visited: rows.len() as u64, finished })
    }

    async fn rows_after(
        pool: &Pool<DB>,
        col: SealedColumn,
        cursor: &str,
        limit: u32,
    ) -> Result<Vec<JobRow>, StoreError> {
        let (a, b) = split_cursor(cursor);
        let limit = i64::from(limit);
        let rows = match col {
            SealedColumn::MessageTexts => sqlx::query(
                "SELECT id, conversation_id, seq, created_at_ms, text FROM messages WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(a)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let conv: i64 = r.try_get(1)?;
                Ok(JobRow {
                    cursor: r.try_get::<i64, _>(0)?.to_string(),
                    scope: Scope::Conversation(ConvId(conv)),
                    at_ms: r.try_get(3)?,
                    a: conv,
                    b: r.try_get(2)?,
                    name: String::new(),
                    value: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?,
            SealedColumn::LogTexts => sqlx::query(
                "SELECT conversation_id, seq, at_ms, text FROM conversation_events \
                 WHERE kind IN (2, 3) AND (conversation_id, seq) > ($1, $2) \
                 ORDER BY conversation_id, seq LIMIT $3",
            )
            .bind(a)
            .bind(b)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let (conv, seq): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
                Ok(JobRow {
                    cursor: format!("{conv}/{seq}"),
                    scope: Scope::Conversation(ConvId(conv)),
                    at_ms: r.try_get(2)?,
                    a: conv,
                    b: seq,
                    name: String::new(),
                    value: r.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?,
            SealedColumn::AttachmentNames => sqlx::query(
                "SELECT a.message_id, a.position, a.media_id, m.conversation_id, m.created_at_ms, a.file_name \
                 FROM message_attachments a JOIN messages m ON m.id = a.message_id \
                 WHERE (a.message_id, a.position) > ($1, $2) \
                 ORDER BY a.message_id, a.position LIMIT $3",
            )
            .bind(a)
            .bind(b)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let (message, position): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
                Ok(JobRow {
                    cursor: format!("{message}/{position}"),
                    scope: Scope::Conversation(ConvId(r.try_get(3)?)),
                    at_ms: r.try_get(4)?,
                    a: message,
                    b: position,
                    name: r.try_get(2)?,
                    value: r.try_get(5)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?,
            SealedColumn::MediaNames | SealedColumn::UploadNames => {
                let (table, _, _) = table_of(col);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT id, created_at_ms, file_name FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"
                )))
                .persistent(false)
                .bind(cursor.to_string())
                .bind(limit)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| {
                    let id: String = r.try_get(0)?;
                    Ok(JobRow {
                        cursor: id.clone(),
                        scope: Scope::Media,
                        at_ms: r.try_get(1)?,
                        a: 0,
                        b: 0,
                        name: id,
                        value: r.try_get(2)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?
            }
        };
        Ok(rows)
    }

    /// The job row `name` (for the blob pass, which the keys service drives).
    pub(super) async fn job(pool: &Pool<DB>, name: &str) -> Result<Option<JobProgress>, StoreError> {
        let row = sqlx::query(
            "SELECT name, generation, cursor, rewritten, finished_at_ms FROM encryption_jobs WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?;
        row.map(|r| {
            Ok(JobProgress {
                name: r.try_get(0)?,
                generation: r.try_get(1)?,
                cursor: r.try_get(2)?,
                rewritten: r.try_get(3)?,
                finished_at_ms: r.try_get(4)?,
            })
        })
        .transpose()
    }

    pub(super) async fn save_job(pool: &Pool<DB>, j: &JobProgress) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO encryption_jobs (name, generation, cursor, rewritten, finished_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET generation = excluded.generation, cursor = excluded.cursor, \
             rewritten = excluded.rewritten, finished_at_ms = excluded.finished_at_ms",
        )
        .bind(j.name.as_str())
        .bind(j.generation)
        .bind(j.cursor.as_str())
        .bind(j.rewritten)
        .bind(j.finished_at_ms)
        .execute(pool)
        .await?;
        Ok(())
    }
}

/// `(table, column, extra filter)` of a sealed column.
pub(super) fn table_of(col: SealedColumn) -> (&'static str, &'static str, &'static str) {
    match col {
        SealedColumn::MessageTexts => ("messages", "text", ""),
        SealedColumn::LogTexts => ("conversation_events", "text", " AND kind IN (2, 3)"),
        SealedColumn::AttachmentNames => ("message_attachments", "file_name", ""),
        SealedColumn::MediaNames => ("media", "file_name", ""),
        SealedColumn::UploadNames => ("uploads", "file_name", ""),
    }
}

/// The key columns a cursor walks (`a, b` for two-part cursors).
fn cursor_columns(col: SealedColumn) -> &'static str {
    match col {
        SealedColumn::MessageTexts | SealedColumn::MediaNames | SealedColumn::UploadNames => "id",
        SealedColumn::LogTexts => "conversation_id, seq",
        SealedColumn::AttachmentNames => "message_id, position",
    }
}
