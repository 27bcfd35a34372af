//! SQL of media (`MediaStore`, migration 0011): uploads with their per-user limits, blobs,
//! media items and thumbnails, quarantine, who may read a media item. Written once as generic
//! functions over sqlx (`MediaSql<DB>`; the collector's are in `media_collect_sql.rs`);
//! `impl_media_store!` only forwards each backend's trait methods to them.

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::StoreError;
use super::conv_types::ConvKind;
use super::conv_types::MessageId;
use super::media_types::{
    AttachmentRec, BlobRef, MediaId, MediaPurpose, MediaRec, NewMedia, NewUpload, ThumbnailRec, UploadId, UploadLimits,
    UploadRec, UploadRefusal,
};
use super::sql::SqlBackend;
use super::types::UserId;

/// The media SQL for backend `DB`.
pub(super) struct MediaSql<DB>(PhantomData<DB>);

const UPLOAD_COLS: &str = "id, user_id, size, mime_type, sha256, purpose, file_name, chunk_size, created_at_ms, \
                           expires_at_ms, media_id, finishing_until_ms, sealed";
const MEDIA_COLS: &str = "m.id, m.uploader_id, m.purpose, m.mime_type, m.file_name, m.blob_id, b.sha256, m.size, \
                          m.width, m.height, m.created_at_ms, b.key_id, COALESCE(b.stored_as, b.id)";
/// A blob row as [`blob_ref`] reads it.
pub(super) const BLOB_COLS: &str = "id, sha256, size, key_id, COALESCE(stored_as, id)";

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn sha_of(v: Vec<u8>) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| StoreError::Setup("a stored SHA-256 is not 32 bytes".into()))
}

fn purpose_of(v: i64) -> Result<MediaPurpose, StoreError> {
    i32::try_from(v)
        .ok()
        .and_then(|v| MediaPurpose::try_from(v).ok())
        .ok_or_else(|| StoreError::Setup(format!("unknown stored media purpose {v}")))
}

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
    fn upload_row(r: &DB::Row) -> Result<UploadRec, StoreError> {
        let sha: Option<Vec<u8>> = r.try_get(4)?;
        let media: Option<String> = r.try_get(10)?;
        Ok(UploadRec {
            id: UploadId(r.try_get(0)?),
            user: UserId(r.try_get(1)?),
            size: u64_of(r.try_get(2)?),
            mime_type: r.try_get(3)?,
            sha256: sha.map(sha_of).transpose()?,
            purpose: purpose_of(r.try_get(5)?)?,
            file_name: r.try_get(6)?,
            chunk_size: u32_of(r.try_get(7)?),
            created_at_ms: r.try_get(8)?,
            expires_at_ms: r.try_get(9)?,
            media: media.map(MediaId),
            finishing_until_ms: r.try_get(11)?,
            sealed: r.try_get(12)?,
        })
    }

    /// A blob from columns `at..at + 5` in [`BLOB_COLS`] order.
    pub(super) fn blob_ref(r: &DB::Row, at: usize) -> Result<BlobRef, StoreError> {
        Ok(BlobRef {
            generation: r.try_get(at)?,
            sha256: sha_of(r.try_get(at + 1)?)?,
            size: u64_of(r.try_get(at + 2)?),
            key_id: r.try_get(at + 3)?,
            stored_as: r.try_get(at + 4)?,
        })
    }

    /// Records `up` unless its user is at a limit: the user's row is locked first (an `UPDATE`
    /// that changes nothing: a row lock on PostgreSQL, SQLite's write lock is already held), so two
    /// concurrent BeginUploads of one user are counted one after the other.
    pub(super) async fn begin_upload(
        pool: &Pool<DB>,
        up: &NewUpload,
        sealed: bool,
        limits: UploadLimits,
    ) -> Result<Result<(), UploadRefusal>, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        sqlx::query("UPDATE users SET id = id WHERE id = $1").bind(up.user.0).execute(&mut *tx).await?;
        // An administrator's overrides of this user's limits take the place of the server's
        // (§26.8).
        let limits = match sqlx::query(
            "SELECT media_quota_bytes, CAST(max_pending_uploads AS BIGINT) FROM user_limits WHERE user_id = $1",
        )
        .bind(up.user.0)
        .fetch_optional(&mut *tx)
        .await?
        {
            Some(r) => {
                let quota: Option<i64> = r.try_get(0)?;
                let pending: Option<i64> = r.try_get(1)?;
                UploadLimits {
                    max_pending: pending.map_or(limits.max_pending, |p| u32::try_from(p).unwrap_or(0)),
                    quota_bytes: quota.map_or(limits.quota_bytes, u64_of),
                }
            }
            None => limits,
        };
        let pending: i64 =
            sqlx::query("SELECT COUNT(*) FROM uploads WHERE user_id = $1 AND media_id IS NULL AND expires_at_ms > $2")
                .bind(up.user.0)
                .bind(up.created_at_ms)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        if pending >= i64::from(limits.max_pending) {
            return Ok(Err(UploadRefusal::TooManyPending { max: limits.max_pending }));
        }
        let used = Self::usage_in(&mut tx, up.user, up.created_at_ms).await?;
        if used.saturating_add(up.size) > limits.quota_bytes {
            return Ok(Err(UploadRefusal::OverQuota { used, quota: limits.quota_bytes }));
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO uploads ({UPLOAD_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, $11)"
        )))
        .bind(up.id.0.as_str())
        .bind(up.user.0)
        .bind(i64_of(up.size))
        .bind(up.mime_type.as_str())
        .bind(up.sha256.as_ref().map(|s| s.as_slice()))
        .bind(i64::from(i32::from(up.purpose)))
        .bind(up.file_name.as_str())
        .bind(i64::from(up.chunk_size))
        .bind(up.created_at_ms)
        .bind(up.expires_at_ms)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn usage_in(tx: &mut DB::Connection, user: UserId, now_ms: i64) -> Result<u64, StoreError> {
        let media: Option<i64> = sqlx::query("SELECT CAST(SUM(size) AS BIGINT) FROM media WHERE uploader_id = $1")
            .bind(user.0)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let pending: Option<i64> =
            sqlx::query("SELECT CAST(SUM(size) AS BIGINT) FROM uploads WHERE user_id = $1 AND media_id IS NULL AND expires_at_ms > $2")
                .bind(user.0)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        Ok(u64_of(media.unwrap_or(0)).saturating_add(u64_of(pending.unwrap_or(0))))
    }

    pub(super) async fn media_usage(pool: &Pool<DB>, user: UserId, now_ms: i64) -> Result<u64, StoreError> {
        let mut conn = pool.acquire().await?;
        Self::usage_in(&mut conn, user, now_ms).await
    }

    pub(super) async fn upload(pool: &Pool<DB>, id: &UploadId, now_ms: i64) -> Result<Option<UploadRec>, StoreError> {
        let q = format!("SELECT {UPLOAD_COLS} FROM uploads WHERE id = $1 AND expires_at_ms > $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(q)).bind(id.0.as_str()).bind(now_ms).fetch_optional(pool).await?;
        row.as_ref().map(Self::upload_row).transpose()
    }

    /// Takes the finishing lease of an unfinished upload until `now_ms + ttl_ms`; false when
    /// another FinishUpload holds it or the upload is finished or gone.
    pub(super) async fn claim_finish(
        pool: &Pool<DB>,
        id: &UploadId,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE uploads SET finishing_until_ms = $1 WHERE id = $2 AND media_id IS NULL \
             AND (finishing_until_ms IS NULL OR finishing_until_ms < $3)",
        )
        .bind(now_ms + ttl_ms)
        .bind(id.0.as_str())
        .bind(now_ms)
        .execute(pool)
        .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    /// Gives the finishing lease back (a FinishUpload that failed; the client may go on).
    pub(super) async fn release_finish(pool: &Pool<DB>, id: &UploadId) -> Result<(), StoreError> {
        sqlx::query("UPDATE uploads SET finishing_until_ms = NULL WHERE id = $1")
            .bind(id.0.as_str())
            .execute(pool)
            .await?;
        Ok(())
    }

    pub(super) async fn cancel_upload(pool: &Pool<DB>, id: &UploadId, user: UserId) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM uploads WHERE id = $1 AND user_id = $2 AND media_id IS NULL")
            .bind(id.0.as_str())
            .bind(user.0)
            .execute(pool)
            .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    /// The recorded blob with this hash, its clock restarted (`created_at_ms = now_ms`) so the
    /// collector, which removes only blobs older than its cutoff, leaves it to the media item
    /// about to use it. A row lock orders this against a collector deleting it at that moment:
    /// either the update finds no row (write the bytes again) or the delete no longer matches.
    /// [`StoreError::Quarantined`] when an administrator quarantined these bytes (§26.7).
    pub(super) async fn reuse_blob(
        pool: &Pool<DB>,
        sha256: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<BlobRef>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE blobs SET created_at_ms = $2 WHERE sha256 = $1 RETURNING {BLOB_COLS}, quarantined_at_ms"
        )))
        .bind(sha256.as_slice())
        .bind(now_ms)
        .fetch_optional(pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        if r.try_get::<Option<i64>, _>(5)?.is_some() {
            return Err(StoreError::Quarantined);
        }
        Self::blob_ref(&r, 0).map(Some)
    }

    /// Records `blob` (already durable in the blob store); when another copy of the same bytes
    /// was recorded first, that one, and the caller deletes its own copy.
    pub(super) async fn add_blob(pool: &Pool<DB>, blob: BlobRef, now_ms: i64) -> Result<BlobRef, StoreError> {
        sqlx::query(
            "INSERT INTO blobs (id, sha256, size, created_at_ms, key_id) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(blob.generation)
        .bind(blob.sha256.as_slice())
        .bind(i64_of(blob.size))
        .bind(now_ms)
        .bind(blob.key_id)
        .execute(pool)
        .await?;
        Self::reuse_blob(pool, &blob.sha256, now_ms)
            .await?
            .ok_or_else(|| StoreError::Setup("a blob row vanished as it was recorded".into()))
    }

    /// The media item and its thumbnails, and the upload marked finished, in one transaction.
    /// A blob the collector removed meanwhile fails the foreign key (the caller writes it again).
    pub(super) async fn finish_upload(pool: &Pool<DB>, new: &NewMedia) -> Result<(), StoreError> {
        let m = &new.media;
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        // Waits for a quarantine of the blob committing now (the row lock), then sees it: a media
        // item is never made of quarantined bytes (§26.7).
        let blob = sqlx::query("UPDATE blobs SET id = id WHERE id = $1 RETURNING quarantined_at_ms")
            .bind(m.blob.generation)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(b) = blob
            && b.try_get::<Option<i64>, _>(0)?.is_some()
        {
            return Err(StoreError::Quarantined);
        }
        sqlx::query(
            "INSERT INTO media (id, uploader_id, purpose, mime_type, file_name, blob_id, size, sha256, width, height, \
             created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(m.id.0.as_str())
        .bind(m.uploader.0)
        .bind(i64::from(i32::from(m.purpose)))
        .bind(m.mime_type.as_str())
        .bind(m.file_name.as_str())
        .bind(m.blob.generation)
        .bind(i64_of(m.blob.size))
        .bind(m.blob.sha256.as_slice())
        .bind(i64::from(m.width))
        .bind(i64::from(m.height))
        .bind(m.created_at_ms)
        .execute(&mut *tx)
        .await?;
        for t in &m.thumbnails {
            sqlx::query(
                "INSERT INTO media_thumbnails (media_id, name, blob_id, mime_type, width, height, size) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(m.id.0.as_str())
            .bind(t.name.as_str())
            .bind(t.blob.generation)
            .bind(t.mime_type.as_str())
            .bind(i64::from(t.width))
            .bind(i64::from(t.height))
            .bind(i64_of(t.blob.size))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE uploads SET media_id = $1, finishing_until_ms = NULL WHERE id = $2 AND media_id IS NULL")
            .bind(m.id.0.as_str())
            .bind(new.upload.0.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn media(pool: &Pool<DB>, id: &MediaId) -> Result<Option<MediaRec>, StoreError> {
        let q = format!("SELECT {MEDIA_COLS} FROM media m JOIN blobs b ON b.id = m.blob_id WHERE m.id = $1");
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(q)).bind(id.0.as_str()).fetch_optional(pool).await? else {
            return Ok(None);
        };
        let thumbs = sqlx::query(
            "SELECT t.name, t.blob_id, b.sha256, t.size, t.mime_type, t.width, t.height, b.key_id, \
             COALESCE(b.stored_as, b.id) FROM media_thumbnails t \
             JOIN blobs b ON b.id = t.blob_id WHERE t.media_id = $1 ORDER BY t.width, t.name",
        )
        .bind(id.0.as_str())
        .fetch_all(pool)
        .await?;
        let thumbnails = thumbs
            .iter()
            .map(|t| {
                Ok(ThumbnailRec {
                    name: t.try_get(0)?,
                    blob: BlobRef {
                        generation: t.try_get(1)?,
                        sha256: sha_of(t.try_get(2)?)?,
                        size: u64_of(t.try_get(3)?),
                        key_id: t.try_get(7)?,
                        stored_as: t.try_get(8)?,
                    },
                    mime_type: t.try_get(4)?,
                    width: u32_of(t.try_get(5)?),
                    height: u32_of(t.try_get(6)?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(MediaRec {
            id: MediaId(r.try_get(0)?),
            uploader: UserId(r.try_get(1)?),
            purpose: purpose_of(r.try_get(2)?)?,
            mime_type: r.try_get(3)?,
            file_name: r.try_get(4)?,
            blob: BlobRef {
                generation: r.try_get(5)?,
                sha256: sha_of(r.try_get(6)?)?,
                size: u64_of(r.try_get(7)?),
                key_id: r.try_get(11)?,
                stored_as: r.try_get(12)?,
            },
            width: u32_of(r.try_get(8)?),
            height: u32_of(r.try_get(9)?),
            created_at_ms: r.try_get(10)?,
            thumbnails,
        }))
    }

    /// docs/protocol.md §22.10: the uploader; a member of a conversation with a live message
    /// carrying it; anyone signed in for a live account's avatar; whoever sees the conversation
    /// (members; anyone for a channel) for its photo. Nobody, the uploader included, once an
    /// administrator quarantined it or another media item of the same bytes (§26.7).
    pub(super) async fn may_read_media(pool: &Pool<DB>, user: UserId, id: &MediaId) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM media m JOIN blobs qb ON qb.id = m.blob_id WHERE m.id = $1 \
             AND m.quarantined_at_ms IS NULL AND qb.quarantined_at_ms IS NULL AND (m.uploader_id = $2 \
             OR EXISTS (SELECT 1 FROM message_attachments a JOIN messages g ON g.id = a.message_id \
                        JOIN members mb ON mb.conversation_id = g.conversation_id AND mb.user_id = $2 \
                        WHERE a.media_id = m.id AND g.deleted_at_ms IS NULL) \
             OR EXISTS (SELECT 1 FROM users u WHERE u.avatar_ref = m.id AND u.avatar_ref <> '' \
                        AND u.deleted_at_ms IS NULL) \
             OR EXISTS (SELECT 1 FROM conversations c WHERE c.photo_ref = m.id AND c.photo_ref <> '' AND (c.kind = $3 \
                        OR EXISTS (SELECT 1 FROM members mc WHERE mc.conversation_id = c.id AND mc.user_id = $2))))",
        )
        .bind(id.0.as_str())
        .bind(user.0)
        .bind(i64::from(i32::from(ConvKind::Channel)))
        .fetch_optional(pool)
        .await?;
        Ok(row.is_some())
    }

    /// The attachments of `messages` (live ones), in each message's order; quarantined media
    /// items are left out (§26.7).
    pub(super) async fn attachments(
        pool: &Pool<DB>,
        messages: &[MessageId],
    ) -> Result<Vec<(MessageId, AttachmentRec)>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let list = messages.iter().map(|m| m.0.to_string()).collect::<Vec<_>>().join(",");
        // The ids are integers formatted here, never client text.
        let q = format!(
            "SELECT a.message_id, a.media_id, a.file_name, a.duration_ms, m.mime_type, m.size, m.width, m.height, \
             (SELECT COALESCE(STRING_AGG(t.name, ',' ORDER BY t.width, t.name), '') FROM media_thumbnails t \
              WHERE t.media_id = m.id) \
             FROM message_attachments a JOIN media m ON m.id = a.media_id JOIN blobs qb ON qb.id = m.blob_id \
             WHERE a.message_id IN ({list}) AND m.quarantined_at_ms IS NULL AND qb.quarantined_at_ms IS NULL \
             ORDER BY a.message_id, a.position"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q)).fetch_all(pool).await?;
        rows.iter()
            .map(|r| {
                let thumbs: String = r.try_get(8)?;
                Ok((
                    MessageId(r.try_get(0)?),
                    AttachmentRec {
                        media_id: MediaId(r.try_get(1)?),
                        file_name: r.try_get(2)?,
                        duration_ms: u32_of(r.try_get(3)?),
                        mime_type: r.try_get(4)?,
                        size: u64_of(r.try_get(5)?),
                        width: u32_of(r.try_get(6)?),
                        height: u32_of(r.try_get(7)?),
                        thumbnails: thumbs.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                    },
                ))
            })
            .collect()
    }

    /// Fills the attachments of the live messages among `msgs`.
    pub(super) async fn attach<'m>(
        pool: &Pool<DB>,
        msgs: impl Iterator<Item = &'m mut super::conv_types::MessageRec>,
    ) -> Result<(), StoreError> {
        let mut live: Vec<&mut super::conv_types::MessageRec> = msgs.filter(|m| !m.deleted).collect();
        let ids: Vec<MessageId> = live.iter().map(|m| m.id).collect();
        for (id, a) in Self::attachments(pool, &ids).await? {
            if let Some(m) = live.iter_mut().find(|m| m.id == id) {
                m.attachments.push(a);
            }
        }
        Ok(())
    }
}

/// Implements `MediaStore` for a backend store type with `pool` and `metrics` fields by
/// forwarding to [`MediaSql`].
macro_rules! impl_media_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::MediaStore for $store {
            async fn begin_upload(
                &self,
                up: &$crate::store::NewUpload,
                limits: $crate::store::UploadLimits,
            ) -> Result<Result<(), $crate::store::UploadRefusal>, $crate::store::StoreError> {
                let f = async {
                    self.sealer.check_writable()?;
                    // The file name sealed for its place (a media-scope key of the upload's time).
                    let mut up = up.clone();
                    if self.sealer.is_on() {
                        let scope = $crate::store::keys::Scope::Media;
                        self.sealer.prepare([scope], up.created_at_ms).await?;
                        let place = $crate::crypto::Place::UploadName { upload: up.id.0.as_str() };
                        up.file_name = self.sealer.seal_text(scope, up.created_at_ms, &place, &up.file_name)?;
                    }
                    $crate::store::media_sql::MediaSql::begin_upload(&self.pool, &up, self.sealer.is_on(), limits).await
                };
                $crate::store::timed(&self.metrics, "begin_upload", f).await
            }

            async fn upload(
                &self,
                id: &$crate::store::UploadId,
                now_ms: i64,
            ) -> Result<Option<$crate::store::UploadRec>, $crate::store::StoreError> {
                let f = async {
                    let mut up = $crate::store::media_sql::MediaSql::upload(&self.pool, id, now_ms).await?;
                    if let Some(u) = up.as_mut() {
                        self.sealer.open_upload(u).await?;
                    }
                    Ok(up)
                };
                $crate::store::timed(&self.metrics, "upload", f).await
            }

            async fn claim_finish(
                &self,
                id: &$crate::store::UploadId,
                now_ms: i64,
                ttl_ms: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                $crate::store::media_sql::MediaSql::claim_finish(&self.pool, id, now_ms, ttl_ms).await
            }

            async fn release_finish(&self, id: &$crate::store::UploadId) -> Result<(), $crate::store::StoreError> {
                $crate::store::media_sql::MediaSql::release_finish(&self.pool, id).await
            }

            async fn cancel_upload(
                &self,
                id: &$crate::store::UploadId,
                user: $crate::store::UserId,
            ) -> Result<bool, $crate::store::StoreError> {
                $crate::store::media_sql::MediaSql::cancel_upload(&self.pool, id, user).await
            }

            async fn media_usage(
                &self,
                user: $crate::store::UserId,
                now_ms: i64,
            ) -> Result<u64, $crate::store::StoreError> {
                $crate::store::media_sql::MediaSql::media_usage(&self.pool, user, now_ms).await
            }

            async fn reuse_blob(
                &self,
                sha256: &[u8; 32],
                now_ms: i64,
            ) -> Result<Option<$crate::store::BlobRef>, $crate::store::StoreError> {
                $crate::store::media_sql::MediaSql::reuse_blob(&self.pool, sha256, now_ms).await
            }

            async fn add_blob(
                &self,
                blob: $crate::store::BlobRef,
                now_ms: i64,
            ) -> Result<$crate::store::BlobRef, $crate::store::StoreError> {
                $crate::store::media_sql::MediaSql::add_blob(&self.pool, blob, now_ms).await
            }

            async fn finish_upload(&self, new: &$crate::store::NewMedia) -> Result<(), $crate::store::StoreError> {
                let f = async {
                    self.sealer.check_writable()?;
                    let mut new = new.clone();
                    if self.sealer.is_on() {
                        let (scope, at) = ($crate::store::keys::Scope::Media, new.media.created_at_ms);
                        self.sealer.prepare([scope], at).await?;
                        let place = $crate::crypto::Place::MediaName { media: new.media.id.0.as_str() };
                        new.media.file_name = self.sealer.seal_text(scope, at, &place, &new.media.file_name)?;
                    }
                    $crate::store::media_sql::MediaSql::finish_upload(&self.pool, &new).await
                };
                $crate::store::timed(&self.metrics, "finish_upload", f).await
            }

            async fn media(
                &self,
                id: &$crate::store::MediaId,
            ) -> Result<Option<$crate::store::MediaRec>, $crate::store::StoreError> {
                let f = async {
                    let mut m = $crate::store::media_sql::MediaSql::media(&self.pool, id).await?;
                    if let Some(m) = m.as_mut() {
                        self.sealer.open_media(m).await?;
                    }
                    Ok(m)
                };
                $crate::store::timed(&self.metrics, "media", f).await
            }

            async fn may_read_media(
                &self,
                user: $crate::store::UserId,
                id: &$crate::store::MediaId,
            ) -> Result<bool, $crate::store::StoreError> {
                let f = $crate::store::media_sql::MediaSql::may_read_media(&self.pool, user, id);
                $crate::store::timed(&self.metrics, "may_read_media", f).await
            }

            async fn attachments(
                &self,
                messages: &[$crate::store::MessageId],
            ) -> Result<Vec<($crate::store::MessageId, $crate::store::AttachmentRec)>, $crate::store::StoreError> {
                let mut list = $crate::store::media_sql::MediaSql::attachments(&self.pool, messages).await?;
                self.sealer.open_attachments(&mut list).await?;
                Ok(list)
            }

            async fn claim_job(
                &self,
                name: &str,
                holder: &str,
                now_ms: i64,
                ttl_ms: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                $crate::store::media_sql::MediaSql::claim_job(&self.pool, name, holder, now_ms, ttl_ms).await
            }

            async fn collect_media(
                &self,
                now_ms: i64,
                cutoff_ms: i64,
                limit: u32,
            ) -> Result<$crate::store::Collected, $crate::store::StoreError> {
                let f = $crate::store::media_sql::MediaSql::collect(&self.pool, now_ms, cutoff_ms, limit);
                $crate::store::timed(&self.metrics, "collect_media", f).await
            }

            async fn known_blobs(&self, generations: &[i64]) -> Result<Vec<i64>, $crate::store::StoreError> {
                $crate::store::media_sql::MediaSql::known_blobs(&self.pool, generations).await
            }

            async fn known_uploads(&self, uploads: &[String]) -> Result<Vec<String>, $crate::store::StoreError> {
                $crate::store::media_sql::MediaSql::known_uploads(&self.pool, uploads).await
            }
        }
    };
}

pub(super) use impl_media_store;
