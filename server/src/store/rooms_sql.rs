//! SQL of the group-call room leases (`RoomLeaseStore`, migration 0010): which node holds each
//! conversation's SFU room in a cluster. Written once as generic functions over sqlx
//! (`RoomSql<DB>`); `impl_room_leases!` only forwards each backend's trait methods to them.

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::StoreError;
use super::conv_types::{ConvId, RoomLease};
use super::sql::SqlBackend;

/// The room leases' SQL for backend `DB`.
pub(super) struct RoomSql<DB>(PhantomData<DB>);

const COLS: &str = "conversation_id, node, fencing, expires_at_ms";

impl<DB: SqlBackend> RoomSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
{
    fn lease(r: &DB::Row) -> Result<RoomLease, StoreError> {
        Ok(RoomLease {
            conversation: ConvId(r.try_get(0)?),
            node: r.try_get(1)?,
            fencing: r.try_get(2)?,
            expires_at_ms: r.try_get(3)?,
        })
    }

    pub(super) async fn room_lease(pool: &Pool<DB>, conv: ConvId) -> Result<Option<RoomLease>, StoreError> {
        let q = format!("SELECT {COLS} FROM call_rooms WHERE conversation_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(q)).bind(conv.0).fetch_optional(pool).await?;
        row.as_ref().map(Self::lease).transpose()
    }

    /// One statement: a new lease, a renewal of `holder`'s own (same fencing when `keep`), or a
    /// take-over of an expired lease or of the one `take_over` names (holder and fencing; fencing
    /// + 1). Then the holder, whoever won.
    pub(super) async fn claim_room(
        pool: &Pool<DB>,
        conv: ConvId,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
        take_over: Option<(&str, i64)>,
        keep: bool,
    ) -> Result<RoomLease, StoreError> {
        let q = format!(
            "INSERT INTO call_rooms ({COLS}) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (conversation_id) DO UPDATE SET node = excluded.node, \
             fencing = CASE WHEN call_rooms.node = excluded.node AND $7 = 1 THEN call_rooms.fencing \
                       ELSE call_rooms.fencing + 1 END, \
             expires_at_ms = excluded.expires_at_ms \
             WHERE call_rooms.node = excluded.node OR call_rooms.expires_at_ms < $4 \
                OR (call_rooms.node = $5 AND call_rooms.fencing = $6) \
             RETURNING {COLS}"
        );
        let (gone, fencing) = take_over.unwrap_or(("", -1));
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(conv.0)
            .bind(holder)
            .bind(now_ms + ttl_ms)
            .bind(now_ms)
            .bind(gone)
            .bind(fencing)
            .bind(i64::from(keep))
            .fetch_optional(pool)
            .await?;
        match row {
            Some(r) => Self::lease(&r),
            None => Self::room_lease(pool, conv)
                .await?
                .ok_or_else(|| StoreError::Setup("a room lease vanished while it was claimed".into())),
        }
    }

    /// Extends `node`'s leases that still carry the fencing it holds; returns those extended.
    pub(super) async fn renew_rooms(
        pool: &Pool<DB>,
        node: &str,
        held: &[(ConvId, i64)],
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<ConvId>, StoreError> {
        let mut renewed = Vec::with_capacity(held.len());
        for (conv, fencing) in held {
            let r = sqlx::query(
                "UPDATE call_rooms SET expires_at_ms = $1 WHERE conversation_id = $2 AND node = $3 AND fencing = $4",
            )
            .bind(now_ms + ttl_ms)
            .bind(conv.0)
            .bind(node)
            .bind(*fencing)
            .execute(pool)
            .await?;
            if DB::rows_affected(&r) == 1 {
                renewed.push(*conv);
            }
        }
        Ok(renewed)
    }

    pub(super) async fn release_room(
        pool: &Pool<DB>,
        conv: ConvId,
        node: &str,
        fencing: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM call_rooms WHERE conversation_id = $1 AND node = $2 AND fencing = $3")
            .bind(conv.0)
            .bind(node)
            .bind(fencing)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Deletes the expired leases of `holder` and returns them: of nodes doing it at once, each
    /// lease goes to exactly one. A live holder's leases (renewed) are never expired.
    pub(super) async fn drop_node_rooms(
        pool: &Pool<DB>,
        holder: &str,
        now_ms: i64,
    ) -> Result<Vec<RoomLease>, StoreError> {
        let q = format!("DELETE FROM call_rooms WHERE node = $1 AND expires_at_ms < $2 RETURNING {COLS}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(q)).bind(holder).bind(now_ms).fetch_all(pool).await?;
        rows.iter().map(Self::lease).collect()
    }

    /// Expires every lease of `holder` now (it is stopping): the others end its rooms.
    pub(super) async fn expire_rooms(pool: &Pool<DB>, holder: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE call_rooms SET expires_at_ms = 0 WHERE node = $1").bind(holder).execute(pool).await?;
        Ok(())
    }
}

/// The `RoomLeaseStore` impl of a backend struct with `pool` and `metrics` fields.
macro_rules! impl_room_leases {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::RoomLeaseStore for $store {
            async fn room_lease(
                &self,
                conv: $crate::store::ConvId,
            ) -> Result<Option<$crate::store::RoomLease>, $crate::store::StoreError> {
                $crate::store::rooms_sql::RoomSql::room_lease(&self.pool, conv).await
            }

            async fn claim_room(
                &self,
                conv: $crate::store::ConvId,
                holder: &str,
                now_ms: i64,
                ttl_ms: i64,
                take_over: Option<(&str, i64)>,
                keep: bool,
            ) -> Result<$crate::store::RoomLease, $crate::store::StoreError> {
                let f = $crate::store::rooms_sql::RoomSql::claim_room(
                    &self.pool, conv, holder, now_ms, ttl_ms, take_over, keep,
                );
                $crate::store::timed(&self.metrics, "claim_room", f).await
            }

            async fn renew_rooms(
                &self,
                node: &str,
                held: &[($crate::store::ConvId, i64)],
                now_ms: i64,
                ttl_ms: i64,
            ) -> Result<Vec<$crate::store::ConvId>, $crate::store::StoreError> {
                $crate::store::rooms_sql::RoomSql::renew_rooms(&self.pool, node, held, now_ms, ttl_ms).await
            }

            async fn release_room(
                &self,
                conv: $crate::store::ConvId,
                node: &str,
                fencing: i64,
            ) -> Result<(), $crate::store::StoreError> {
                $crate::store::rooms_sql::RoomSql::release_room(&self.pool, conv, node, fencing).await
            }

            async fn drop_node_rooms(
                &self,
                holder: &str,
                now_ms: i64,
            ) -> Result<Vec<$crate::store::RoomLease>, $crate::store::StoreError> {
                $crate::store::rooms_sql::RoomSql::drop_node_rooms(&self.pool, holder, now_ms).await
            }

            async fn expire_rooms(&self, holder: &str) -> Result<(), $crate::store::StoreError> {
                $crate::store::rooms_sql::RoomSql::expire_rooms(&self.pool, holder).await
            }
        }
    };
}

pub(super) use impl_room_leases;
