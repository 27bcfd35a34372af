//! SQL of the media collector (`MediaStore`, migration 0011): its job lease, one pass that
//! frees what nothing refers to (quarantined media and blobs stay, §26.7), and the ids it may
//! keep. Another `impl` of [`MediaSql`], split from `media_sql.rs`.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::StoreError;
use super::media_sql::MediaSql;
use super::media_types::{Collected, MediaId, UploadId};
use super::sql::SqlBackend;

impl<DB: SqlBackend> MediaSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Decode<'q, DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q [u8]>: Encode<'q, DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
    for<'q> Option<Vec<u8>>: Decode<'q, DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
{
    /// Takes or renews the lease on job `name` for `holder` until `now_ms + ttl_ms`; true when
    /// `holder` has it (it held it, or the last holder's lease ran out).
    pub(super) async fn claim_job(
        pool: &Pool<DB>,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "INSERT INTO job_leases (name, holder, expires_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
             WHERE job_leases.holder = excluded.holder OR job_leases.expires_at_ms < $4 RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .fetch_optional(pool)
        .await?;
        Ok(row.is_some())
    }

    /// One collector pass, each step bounded by `limit` rows: expired uploads; the attachment
    /// rows of deleted messages; media items created before `cutoff_ms` that no message,
    /// avatar or photo references (their thumbnails go with them); blobs recorded before
    /// `cutoff_ms` that no media item or thumbnail references. Quarantined media items and
    /// blobs stay (evidence, and the refusal of the same bytes, §26.7). Returns what went, so
    /// the caller removes the chunks and the blob bytes.
    pub(super) async fn collect(
        pool: &Pool<DB>,
        now_ms: i64,
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<Collected, StoreError> {
        let limit = i64::from(limit);
        let uploads = sqlx::query(
            "DELETE FROM uploads WHERE id IN (SELECT id FROM uploads WHERE expires_at_ms <= $1 LIMIT $2) RETURNING id",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok(UploadId(r.try_get(0)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
        sqlx::query(
            "DELETE FROM message_attachments WHERE message_id IN (SELECT a.message_id FROM message_attachments a \
             JOIN messages g ON g.id = a.message_id WHERE g.deleted_at_ms IS NOT NULL LIMIT $1)",
        )
        .bind(limit)
        .execute(pool)
        .await?;
        let media = sqlx::query(
            "DELETE FROM media WHERE id IN (SELECT m.id FROM media m WHERE m.created_at_ms < $1 \
             AND m.quarantined_at_ms IS NULL \
             AND NOT EXISTS (SELECT 1 FROM message_attachments a WHERE a.media_id = m.id) \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_ref = m.id AND u.avatar_ref <> '') \
             AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.photo_ref = m.id AND c.photo_ref <> '') LIMIT $2) \
             AND created_at_ms < $1 RETURNING id",
        )
        .bind(cutoff_ms)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok(MediaId(r.try_get(0)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
        let blobs = sqlx::query(
            "DELETE FROM blobs WHERE id IN (SELECT b.id FROM blobs b WHERE b.created_at_ms < $1 \
             AND b.quarantined_at_ms IS NULL \
             AND NOT EXISTS (SELECT 1 FROM media m WHERE m.blob_id = b.id) \
             AND NOT EXISTS (SELECT 1 FROM media_thumbnails t WHERE t.blob_id = b.id) LIMIT $2) \
             AND created_at_ms < $1 RETURNING id, sha256, size, key_id, COALESCE(stored_as, id)",
        )
        .bind(cutoff_ms)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Self::blob_ref(r, 0))
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Collected { uploads, media, blobs })
    }

    /// Of `generations`, those recorded in `blobs`.
    pub(super) async fn known_blobs(pool: &Pool<DB>, generations: &[i64]) -> Result<Vec<i64>, StoreError> {
        if generations.is_empty() {
            return Ok(Vec::new());
        }
        let list = generations.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let q = format!("SELECT COALESCE(stored_as, id) FROM blobs WHERE id IN ({list}) OR stored_as IN ({list})");
        let rows = sqlx::query(sqlx::AssertSqlSafe(q)).fetch_all(pool).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Of `uploads`, those recorded in `uploads` (ids checked to be `[0-9a-z_-]` by the caller).
    pub(super) async fn known_uploads(pool: &Pool<DB>, uploads: &[String]) -> Result<Vec<String>, StoreError> {
        let mut known = Vec::new();
        for page in uploads.chunks(500) {
            let mut q = sqlx::QueryBuilder::<DB>::new("SELECT id FROM uploads WHERE id IN (");
            let mut list = q.separated(", ");
            for id in page {
                list.push_bind(id.as_str());
            }
            q.push(")");
            for r in q.build().fetch_all(pool).await? {
                known.push(r.try_get(0)?);
            }
        }
        Ok(known)
    }
}
