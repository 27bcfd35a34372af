//! SQL of encryption at rest (migration 0013), shared by both backends: the data-key table the
//! keyring reads and fills (`SqlKeys`, a [`KeyTable`]), and the operator's side (`KeyStore`):
//! status, re-wrapping under a new key-encryption key, a new data-key generation, and the blobs.
//! One step of the resumable job that seals plaintext rows and re-seals rows under older
//! generations is in `keys_job_sql`.

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::keys::{EncryptionState, KeyTable, Sealer, StoredKey};
use super::keys_job_sql::table_of;
use super::sql::SqlBackend;
use super::{Backend, StoreError};

/// A table (and column) holding sealed contents, as the re-encryption job walks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SealedColumn {
    /// `messages.text`.
    MessageTexts,
    /// `conversation_events.text` of posted and edited entries.
    LogTexts,
    /// `message_attachments.file_name`.
    AttachmentNames,
    /// `media.file_name`.
    MediaNames,
    /// `uploads.file_name`.
    UploadNames,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 5] =
        [Self::MessageTexts, Self::LogTexts, Self::AttachmentNames, Self::MediaNames, Self::UploadNames];

    /// The job's name for it (`encryption_jobs.name`, `keys status`).
    pub fn name(self) -> &'static str {
        match self {
            Self::MessageTexts => "message_texts",
            Self::LogTexts => "log_texts",
            Self::AttachmentNames => "attachment_names",
            Self::MediaNames => "media_names",
            Self::UploadNames => "upload_names",
        }
    }
}

/// Data keys wrapped by one key-encryption key, of one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCount {
    pub kek_id: String,
    pub generation: i64,
    pub count: i64,
}

/// Where the re-encryption job stands for one column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobProgress {
    pub name: String,
    /// The generation this pass seals under.
    pub generation: i64,
    pub cursor: String,
    pub rewritten: i64,
    pub finished_at_ms: Option<i64>,
}

/// What `keys status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyStatus {
    /// `None`: the database is not encrypted.
    pub state: Option<EncryptionState>,
    pub keys: Vec<KeyCount>,
    pub jobs: Vec<JobProgress>,
    /// Non-empty contents still stored in clear, per column name.
    pub plaintext: Vec<(String, i64)>,
    /// Rows the job has yet to visit, per column name (an upper bound on what it may rewrite).
    pub remaining: Vec<(String, i64)>,
}

/// A blob row as the re-encryption job reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobRow {
    pub id: i64,
    pub sha256: [u8; 32],
    /// Plaintext bytes.
    pub size: u64,
    /// `None`: stored in clear.
    pub key_id: Option<i64>,
    /// The generation in the object's name.
    pub stored_as: i64,
}

/// One step of the re-encryption job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobStep {
    /// Rows sealed or re-sealed in this step.
    pub rewritten: u64,
    /// Of those, rows that were stored in clear.
    pub from_clear: u64,
    /// Rows read.
    pub visited: u64,
    /// The column is done for the current generation.
    pub finished: bool,
}

/// The key table over one backend's pool.
pub(super) struct SqlKeys<DB: sqlx::Database>(pub(super) Pool<DB>);

impl<DB: sqlx::Database> std::fmt::Debug for SqlKeys<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqlKeys")
    }
}

impl<DB: sqlx::Database> SqlKeys<DB> {
    pub(super) fn new(pool: Pool<DB>) -> Self {
        Self(pool)
    }
}

macro_rules! sql_bounds {
    ($($item:item)*) => {
        $(
        #[async_trait::async_trait]
        $item
        )*
    };
}

sql_bounds! {
impl<DB: SqlBackend + sqlx::database::HasStatementCache> KeyTable for SqlKeys<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Decode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
{
    async fn state(&self) -> Result<Option<EncryptionState>, StoreError> {
        let row = sqlx::query("SELECT enabled_at_ms, generation, rotated_at_ms FROM encryption WHERE id = 1")
            .fetch_optional(&self.0)
            .await?;
        row.map(|r| {
            Ok(EncryptionState { enabled_at_ms: r.try_get(0)?, generation: r.try_get(1)?, rotated_at_ms: r.try_get(2)? })
        })
        .transpose()
    }

    async fn enable(&self, now_ms: i64) -> Result<EncryptionState, StoreError> {
        let mut tx = self.0.begin_with(DB::BEGIN).await?;
        let inserted = sqlx::query(
            "INSERT INTO encryption (id, enabled_at_ms, generation, rotated_at_ms) VALUES (1, $1, 1, $1) ON CONFLICT DO NOTHING",
        )
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&inserted) == 1 {
            // The index held folded plaintext: the indexer rebuilds it blind from the logs.
            let mut stmts = vec!["DELETE FROM search_docs", "DELETE FROM search_progress"];
            if DB::BACKEND == Backend::Sqlite {
                stmts.push("INSERT INTO search_trigrams (search_trigrams) VALUES ('delete-all')");
                stmts.push("INSERT INTO search_blind (search_blind) VALUES ('delete-all')");
            }
            for s in stmts {
                sqlx::query(s).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        self.state().await?.ok_or_else(|| StoreError::Setup("the encryption row vanished".into()))
    }

    async fn keys_by_id(&self, ids: &[i64]) -> Result<Vec<StoredKey>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, scope, period, generation, kek_id, wrapped FROM data_keys WHERE id IN ({})",
            super::search_sql::ids(ids)
        )))
        .persistent(false)
        .fetch_all(&self.0)
        .await?;
        rows.iter().map(stored_key::<DB>).collect()
    }

    async fn key_in_slot(&self, scope: &str, period: i64, generation: i64) -> Result<Option<StoredKey>, StoreError> {
        let row = sqlx::query(
            "SELECT id, scope, period, generation, kek_id, wrapped FROM data_keys \
             WHERE scope = $1 AND period = $2 AND generation = $3",
        )
        .bind(scope)
        .bind(period)
        .bind(generation)
        .fetch_optional(&self.0)
        .await?;
        row.as_ref().map(stored_key::<DB>).transpose()
    }

    async fn insert_key(&self, key: &StoredKey, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO data_keys (scope, period, generation, kek_id, wrapped, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(key.scope.as_str())
        .bind(key.period)
        .bind(key.generation)
        .bind(key.kek_id.as_str())
        .bind(key.wrapped.clone())
        .bind(now_ms)
        .execute(&self.0)
        .await?;
        Ok(())
    }

    async fn purge_clear_index(&self) -> Result<u64, StoreError> {
        // Clear documents: PostgreSQL's have no tokens; SQLite's are in the trigram table.
        let clear = match DB::BACKEND {
            Backend::Postgres => "SELECT message_id FROM search_docs WHERE tokens IS NULL",
            Backend::Sqlite => "SELECT rowid FROM search_trigrams",
        };
        let mut tx = self.0.begin_with(DB::BEGIN).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM search_progress WHERE conversation_id IN \
             (SELECT conversation_id FROM search_docs WHERE message_id IN ({clear}))"
        )))
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM search_docs WHERE message_id IN ({clear})")))
            .execute(&mut *tx)
            .await?;
        if DB::BACKEND == Backend::Sqlite {
            sqlx::query("INSERT INTO search_trigrams (search_trigrams) VALUES ('delete-all')").execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(DB::rows_affected(&gone))
    }

    async fn restart_jobs(&self) -> Result<(), StoreError> {
        sqlx::query("UPDATE encryption_jobs SET cursor = '', finished_at_ms = NULL").execute(&self.0).await?;
        Ok(())
    }

    async fn kek_usage(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT kek_id, COUNT(*) FROM data_keys GROUP BY kek_id ORDER BY kek_id")
            .fetch_all(&self.0)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }
}
}

fn stored_key<DB: sqlx::Database>(r: &DB::Row) -> Result<StoredKey, StoreError>
where
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
{
    Ok(StoredKey {
        id: r.try_get(0)?,
        scope: r.try_get(1)?,
        period: r.try_get(2)?,
        generation: r.try_get(3)?,
        kek_id: r.try_get(4)?,
        wrapped: r.try_get(5)?,
    })
}

/// The operator's SQL (`impl_key_store!` forwards to it).
pub(super) struct KeysSql<DB>(PhantomData<DB>);

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
    pub(super) async fn status(pool: &Pool<DB>) -> Result<KeyStatus, StoreError> {
        let state = SqlKeys::new(pool.clone()).state().await?;
        let keys = sqlx::query(
            "SELECT kek_id, generation, COUNT(*) FROM data_keys GROUP BY kek_id, generation ORDER BY generation, kek_id",
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok(KeyCount { kek_id: r.try_get(0)?, generation: r.try_get(1)?, count: r.try_get(2)? }))
        .collect::<Result<Vec<_>, StoreError>>()?;
        let jobs = sqlx::query(
            "SELECT name, generation, cursor, rewritten, finished_at_ms FROM encryption_jobs ORDER BY name",
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(JobProgress {
                name: r.try_get(0)?,
                generation: r.try_get(1)?,
                cursor: r.try_get(2)?,
                rewritten: r.try_get(3)?,
                finished_at_ms: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let mark = match DB::BACKEND {
            Backend::Postgres => "chr(1)",
            Backend::Sqlite => "char(1)",
        };
        let mut plaintext = Vec::new();
        let mut remaining = Vec::new();
        for col in SealedColumn::ALL {
            let (table, column, filter) = table_of(col);
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {table} WHERE {column} <> '' AND substr({column}, 1, 1) <> {mark}{filter}"
            )))
            .persistent(false)
            .fetch_one(pool)
            .await?
            .try_get(0)?;
            plaintext.push((col.name().to_string(), n));
            let job = jobs.iter().find(|j| j.name == col.name());
            let left = match (state, job) {
                (None, _) => 0,
                (Some(s), Some(j)) if j.generation == s.generation && j.finished_at_ms.is_some() => 0,
                (Some(s), Some(j)) if j.generation == s.generation => Self::count_after(pool, col, &j.cursor).await?,
                _ => Self::count_after(pool, col, "").await?,
            };
            remaining.push((col.name().to_string(), left));
        }
        Ok(KeyStatus { state, keys, jobs, plaintext, remaining })
    }

    /// Re-wraps every data key not wrapped by the current key-encryption key; returns how many.
    pub(super) async fn rewrap(pool: &Pool<DB>, sealer: &Sealer) -> Result<u64, StoreError> {
        let Some(current) = sealer.current_kek_id() else {
            return Err(StoreError::Setup("encryption at rest is off: there is nothing to re-wrap".into()));
        };
        let mut done = 0u64;
        loop {
            let rows = sqlx::query(
                "SELECT id, scope, period, generation, kek_id, wrapped FROM data_keys WHERE kek_id <> $1 ORDER BY id LIMIT 500",
            )
            .bind(current.as_str())
            .fetch_all(pool)
            .await?;
            if rows.is_empty() {
                return Ok(done);
            }
            let mut tx = pool.begin_with(DB::BEGIN).await?;
            for r in &rows {
                let old = stored_key::<DB>(r)?;
                let wrapped = sealer.rewrap(&old)?;
                sqlx::query("UPDATE data_keys SET kek_id = $1, wrapped = $2 WHERE id = $3 AND kek_id = $4")
                    .bind(current.as_str())
                    .bind(wrapped)
                    .bind(old.id)
                    .bind(old.kek_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                done += 1;
            }
            tx.commit().await?;
        }
    }

    /// Starts a new data-key generation; returns it.
    pub(super) async fn rotate_data(pool: &Pool<DB>, now_ms: i64) -> Result<i64, StoreError> {
        let r = sqlx::query(
            "UPDATE encryption SET generation = generation + 1, rotated_at_ms = $1 WHERE id = 1 RETURNING generation",
        )
        .bind(now_ms)
        .fetch_optional(pool)
        .await?;
        match r {
            Some(r) => Ok(r.try_get(0)?),
            None => Err(StoreError::Setup("encryption at rest is off: there are no data keys to rotate".into())),
        }
    }

    /// Up to `limit` blobs with ids above `after`, by id.
    pub(super) async fn blobs_after(pool: &Pool<DB>, after: i64, limit: u32) -> Result<Vec<BlobRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM blobs WHERE id > $1 ORDER BY id LIMIT $2",
            super::media_sql::BLOB_COLS
        )))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| {
                let sha: Vec<u8> = r.try_get(1)?;
                Ok(BlobRow {
                    id: r.try_get(0)?,
                    sha256: sha.try_into().map_err(|_| StoreError::Setup("a stored SHA-256 is not 32 bytes".into()))?,
                    size: u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                    key_id: r.try_get(3)?,
                    stored_as: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Points blob `id` at its sealed copy named with `to` under data key `key_id`, unless it
    /// moved meanwhile (no longer named with `from`) or is gone; true when it was moved.
    pub(super) async fn move_blob(
        pool: &Pool<DB>,
        id: i64,
        from: i64,
        to: i64,
        key_id: i64,
    ) -> Result<bool, StoreError> {
        let r =
            sqlx::query("UPDATE blobs SET stored_as = $1, key_id = $2 WHERE id = $3 AND COALESCE(stored_as, id) = $4")
                .bind(to)
                .bind(key_id)
                .bind(id)
                .bind(from)
                .execute(pool)
                .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    /// After the job. SQLite: when it sealed values stored in clear (`vacuum`), VACUUM rebuilds
    /// the file, so no page or free cell from before encryption (before `secure_delete` zeroed
    /// what is freed) keeps them; then the write-ahead log is folded in and truncated (retried
    /// while readers hold it), so no page image of them stays in the WAL file. PostgreSQL keeps
    /// dead row versions until VACUUM reuses their space (docs/operations.md says so).
    pub(super) async fn settle(pool: &Pool<DB>, vacuum: bool) -> Result<(), StoreError> {
        if DB::BACKEND != Backend::Sqlite {
            return Ok(());
        }
        if vacuum {
            sqlx::query("VACUUM").execute(pool).await?;
        }
        for _ in 0..50 {
            let busy: i64 = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(pool).await?.try_get(0)?;
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tracing::warn!("the WAL could not be truncated after the re-encryption job (readers kept it busy)");
        Ok(())
    }
}

macro_rules! impl_key_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::KeyStore for $store {
            fn sealer(&self) -> &$crate::store::keys::Sealer {
                &self.sealer
            }

            async fn key_status(&self) -> Result<$crate::store::keys_sql::KeyStatus, $crate::store::StoreError> {
                $crate::store::keys_sql::KeysSql::status(&self.pool).await
            }

            async fn rewrap_keys(&self) -> Result<u64, $crate::store::StoreError> {
                $crate::store::keys_sql::KeysSql::rewrap(&self.pool, &self.sealer).await
            }

            async fn rotate_data_keys(&self, now_ms: i64) -> Result<i64, $crate::store::StoreError> {
                let g = $crate::store::keys_sql::KeysSql::rotate_data(&self.pool, now_ms).await?;
                self.sealer.refresh().await?;
                Ok(g)
            }

            async fn reencrypt_step(
                &self,
                col: $crate::store::keys_sql::SealedColumn,
                limit: u32,
                now_ms: i64,
            ) -> Result<$crate::store::keys_sql::JobStep, $crate::store::StoreError> {
                let f = $crate::store::keys_sql::KeysSql::step(&self.pool, &self.sealer, col, limit, now_ms);
                $crate::store::timed(&self.metrics, "reencrypt_step", f).await
            }

            async fn job(
                &self,
                name: &str,
            ) -> Result<Option<$crate::store::keys_sql::JobProgress>, $crate::store::StoreError> {
                $crate::store::keys_sql::KeysSql::job(&self.pool, name).await
            }

            async fn save_job(
                &self,
                job: &$crate::store::keys_sql::JobProgress,
            ) -> Result<(), $crate::store::StoreError> {
                $crate::store::keys_sql::KeysSql::save_job(&self.pool, job).await
            }

            async fn blobs_after(
                &self,
                after: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::keys_sql::BlobRow>, $crate::store::StoreError> {
                $crate::store::keys_sql::KeysSql::blobs_after(&self.pool, after, limit).await
            }

            async fn move_blob(
                &self,
                id: i64,
                from: i64,
                to: i64,
                key_id: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                $crate::store::keys_sql::KeysSql::move_blob(&self.pool, id, from, to, key_id).await
            }

            async fn settle_after_reencryption(&self, vacuum: bool) -> Result<(), $crate::store::StoreError> {
                $crate::store::keys_sql::KeysSql::settle(&self.pool, vacuum).await
            }
        }
    };
}

pub(super) use impl_key_store;
