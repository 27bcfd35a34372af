//! SQL of meeting rooms (`MeetingStore`, migration 0015): rooms, moderators, invites and bars.
//! Written once as generic functions over sqlx (`MeetingSql<DB>`); `impl_meeting_store!` forwards
//! each backend's methods.

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::StoreError;
use super::meeting_types::{Barred, InviteRec, InviteUse, RoomChange, RoomCloseReason, RoomId, RoomRec, RoomRole};
use super::push_sql::bad;
use super::sql::SqlBackend;
use super::types::UserId;

const ROOM_COLS: &str = "id, name, owner_id, max_publishers, max_participants, empty_timeout_ms, expires_at_ms, \
                         lobby, locked, created_at_ms, empty_since_ms, closed_at_ms, close_reason";
const INVITE_COLS: &str = "id, room_id, role, expires_at_ms, max_uses, uses, created_by, created_at_ms, revoked_at_ms";

/// The meeting-room SQL for backend `DB`.
pub(super) struct MeetingSql<DB>(PhantomData<DB>);

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl<DB: SqlBackend + sqlx::database::HasStatementCache> MeetingSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> Option<bool>: Encode<'q, DB>,
{
    fn room_row(r: &DB::Row) -> Result<RoomRec, StoreError> {
        let id: String = r.try_get(0)?;
        let reason: Option<i64> = r.try_get(12)?;
        let close_reason = match reason {
            None => None,
            Some(n) => Some(
                RoomCloseReason::try_from(i32::try_from(n).unwrap_or(0)).map_err(|_| bad("room close reason", n))?,
            ),
        };
        Ok(RoomRec {
            id: RoomId::parse(&id).ok_or_else(|| bad("room id", &id))?,
            name: r.try_get(1)?,
            owner: UserId(r.try_get(2)?),
            max_publishers: u32::try_from(r.try_get::<i64, _>(3)?).unwrap_or(0),
            max_participants: u32::try_from(r.try_get::<i64, _>(4)?).unwrap_or(0),
            empty_timeout_ms: u(r.try_get(5)?),
            expires_at_ms: u(r.try_get(6)?),
            lobby: r.try_get(7)?,
            locked: r.try_get(8)?,
            moderators: Vec::new(),
            created_at_ms: u(r.try_get(9)?),
            empty_since_ms: r.try_get::<Option<i64>, _>(10)?.map(u),
            closed_at_ms: r.try_get::<Option<i64>, _>(11)?.map(u),
            close_reason,
        })
    }

    fn invite_row(r: &DB::Row) -> Result<InviteRec, StoreError> {
        let room: String = r.try_get(1)?;
        let role: i64 = r.try_get(2)?;
        Ok(InviteRec {
            id: r.try_get(0)?,
            room: RoomId::parse(&room).ok_or_else(|| bad("room id", &room))?,
            role: RoomRole::try_from(i32::try_from(role).unwrap_or(0)).map_err(|_| bad("room role", role))?,
            expires_at_ms: u(r.try_get(3)?),
            max_uses: u32::try_from(r.try_get::<i64, _>(4)?).unwrap_or(0),
            uses: u32::try_from(r.try_get::<i64, _>(5)?).unwrap_or(0),
            created_by: UserId(r.try_get(6)?),
            created_at_ms: u(r.try_get(7)?),
            revoked_at_ms: r.try_get::<Option<i64>, _>(8)?.map(u),
        })
    }

    async fn with_moderators<'c, E>(ex: E, mut rooms: Vec<RoomRec>) -> Result<Vec<RoomRec>, StoreError>
    where
        E: Executor<'c, Database = DB> + Copy,
    {
        for room in &mut rooms {
            let ids: Vec<i64> =
                sqlx::query_scalar("SELECT user_id FROM meeting_room_moderators WHERE room_id = $1 ORDER BY user_id")
                    .bind(room.id.as_str())
                    .fetch_all(ex)
                    .await?;
            room.moderators = ids.into_iter().map(UserId).collect();
        }
        Ok(rooms)
    }

    /// §25.1: stores a new room and its moderators.
    pub(super) async fn create(pool: &Pool<DB>, r: &RoomRec) -> Result<(), StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        sqlx::query(
            "INSERT INTO meeting_rooms (id, name, owner_id, max_publishers, max_participants, empty_timeout_ms, \
             expires_at_ms, lobby, locked, created_at_ms, empty_since_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(r.id.as_str())
        .bind(r.name.as_str())
        .bind(r.owner.0)
        .bind(i64::from(r.max_publishers))
        .bind(i64::from(r.max_participants))
        .bind(i(r.empty_timeout_ms))
        .bind(i(r.expires_at_ms))
        .bind(r.lobby)
        .bind(r.locked)
        .bind(i(r.created_at_ms))
        .execute(&mut *tx)
        .await?;
        for m in &r.moderators {
            sqlx::query("INSERT INTO meeting_room_moderators (room_id, user_id) VALUES ($1, $2)")
                .bind(r.id.as_str())
                .bind(m.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn room(pool: &Pool<DB>, id: &RoomId) -> Result<Option<RoomRec>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ROOM_COLS} FROM meeting_rooms WHERE id = $1")))
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Self::with_moderators(pool, vec![Self::room_row(&row)?]).await?.pop())
    }

    /// The rooms `user` owns or moderates, newest first.
    pub(super) async fn rooms_of(pool: &Pool<DB>, user: UserId, closed: bool) -> Result<Vec<RoomRec>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROOM_COLS} FROM meeting_rooms WHERE (owner_id = $1 OR id IN \
             (SELECT room_id FROM meeting_room_moderators WHERE user_id = $1)) \
             AND ($2 OR closed_at_ms IS NULL) ORDER BY created_at_ms DESC, id LIMIT 1000"
        )))
        .bind(user.0)
        .bind(closed)
        .fetch_all(pool)
        .await?;
        let rooms = rows.iter().map(Self::room_row).collect::<Result<Vec<_>, _>>()?;
        Self::with_moderators(pool, rooms).await
    }

    /// §25.1: applies `c` to an open room; `None` when there is none.
    pub(super) async fn update(pool: &Pool<DB>, id: &RoomId, c: &RoomChange) -> Result<Option<RoomRec>, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let r = sqlx::query(
            "UPDATE meeting_rooms SET name = COALESCE($2, name), max_publishers = COALESCE($3, max_publishers), \
             max_participants = COALESCE($4, max_participants), empty_timeout_ms = COALESCE($5, empty_timeout_ms), \
             expires_at_ms = COALESCE($6, expires_at_ms), lobby = COALESCE($7, lobby), locked = COALESCE($8, locked) \
             WHERE id = $1 AND closed_at_ms IS NULL",
        )
        .bind(id.as_str())
        .bind(c.name.clone())
        .bind(c.max_publishers.map(i64::from))
        .bind(c.max_participants.map(i64::from))
        .bind(c.empty_timeout_ms.map(i))
        .bind(c.expires_at_ms.map(i))
        .bind(c.lobby)
        .bind(c.locked)
        .execute(&mut *tx)
        .await?;
        let n = DB::rows_affected(&r);
        if n == 0 {
            return Ok(None);
        }
        if let Some(mods) = &c.moderators {
            sqlx::query("DELETE FROM meeting_room_moderators WHERE room_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            for m in mods {
                sqlx::query("INSERT INTO meeting_room_moderators (room_id, user_id) VALUES ($1, $2)")
                    .bind(id.as_str())
                    .bind(m.0)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Self::room(pool, id).await
    }

    /// Records whether anyone is in the room: `Some(since)` when it became empty.
    pub(super) async fn set_empty(pool: &Pool<DB>, id: &RoomId, since: Option<u64>) -> Result<(), StoreError> {
        sqlx::query("UPDATE meeting_rooms SET empty_since_ms = $2 WHERE id = $1 AND closed_at_ms IS NULL")
            .bind(id.as_str())
            .bind(since.map(i))
            .execute(pool)
            .await?;
        Ok(())
    }

    /// At a start: open rooms recorded as in use count as empty from `now_ms` (a crash left them
    /// so); a node with people in a room's call marks it in use again at its next sweep.
    pub(super) async fn reset_in_use(pool: &Pool<DB>, now_ms: u64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE meeting_rooms SET empty_since_ms = $1 WHERE empty_since_ms IS NULL AND closed_at_ms IS NULL",
        )
        .bind(i(now_ms))
        .execute(pool)
        .await?;
        Ok(DB::rows_affected(&r))
    }

    /// Closes an open room; whether this call closed it.
    pub(super) async fn close(
        pool: &Pool<DB>,
        id: &RoomId,
        reason: RoomCloseReason,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE meeting_rooms SET closed_at_ms = $2, close_reason = $3 WHERE id = $1 AND closed_at_ms IS NULL",
        )
        .bind(id.as_str())
        .bind(i(now_ms))
        .bind(i64::from(i32::from(reason)))
        .execute(pool)
        .await?;
        let n = DB::rows_affected(&r);
        Ok(n > 0)
    }

    /// §25.6: open rooms due to close at `now_ms`: past `expires_at_ms`, or empty for longer than
    /// their empty timeout (`default_empty_ms` when they have none). At most `limit`.
    pub(super) async fn due(
        pool: &Pool<DB>,
        now_ms: u64,
        default_empty_ms: u64,
        limit: i64,
    ) -> Result<Vec<(RoomId, RoomCloseReason)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, CAST(CASE WHEN expires_at_ms > 0 AND expires_at_ms <= $1 THEN 1 ELSE 0 END AS BIGINT) FROM meeting_rooms \
             WHERE closed_at_ms IS NULL AND ((expires_at_ms > 0 AND expires_at_ms <= $1) OR (empty_since_ms IS NOT NULL \
             AND empty_since_ms + CASE WHEN empty_timeout_ms > 0 THEN empty_timeout_ms ELSE $2 END <= $1)) \
             ORDER BY id LIMIT $3",
        )
        .bind(i(now_ms))
        .bind(i(default_empty_ms))
        .bind(limit)
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                let expired: i64 = r.try_get(1)?;
                let reason = if expired == 1 { RoomCloseReason::Expired } else { RoomCloseReason::Empty };
                Ok((RoomId::parse(&id).ok_or_else(|| bad("room id", &id))?, reason))
            })
            .collect()
    }

    /// §25.2
    pub(super) async fn create_invite(pool: &Pool<DB>, v: &InviteRec) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meeting_room_invites (id, room_id, role, expires_at_ms, max_uses, uses, created_by, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
        )
        .bind(v.id.as_str())
        .bind(v.room.as_str())
        .bind(i64::from(i32::from(v.role)))
        .bind(i(v.expires_at_ms))
        .bind(i64::from(v.max_uses))
        .bind(v.created_by.0)
        .bind(i(v.created_at_ms))
        .execute(pool)
        .await?;
        Ok(())
    }

    pub(super) async fn invites(pool: &Pool<DB>, room: &RoomId) -> Result<Vec<InviteRec>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITE_COLS} FROM meeting_room_invites WHERE room_id = $1 ORDER BY created_at_ms DESC, id LIMIT 1000"
        )))
        .bind(room.as_str())
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::invite_row).collect()
    }

    pub(super) async fn invite(pool: &Pool<DB>, room: &RoomId, id: &str) -> Result<Option<InviteRec>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITE_COLS} FROM meeting_room_invites WHERE room_id = $1 AND id = $2"
        )))
        .bind(room.as_str())
        .bind(id)
        .fetch_optional(pool)
        .await?;
        row.as_ref().map(Self::invite_row).transpose()
    }

    /// §25.3: counts one use of a live invite of an open room (not revoked, not expired, not
    /// barred), in one transaction.
    pub(super) async fn use_invite(
        pool: &Pool<DB>,
        room: &RoomId,
        id: &str,
        now_ms: u64,
    ) -> Result<InviteUse, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let r = sqlx::query(
            "UPDATE meeting_room_invites SET uses = uses + 1 WHERE room_id = $1 AND id = $2 \
             AND revoked_at_ms IS NULL AND expires_at_ms > $3 AND (max_uses = 0 OR uses < max_uses) \
             AND NOT EXISTS (SELECT 1 FROM meeting_room_bars WHERE room_id = $1 AND kind = 'invite' AND subject = $2) \
             AND EXISTS (SELECT 1 FROM meeting_rooms WHERE id = $1 AND closed_at_ms IS NULL)",
        )
        .bind(room.as_str())
        .bind(id)
        .bind(i(now_ms))
        .execute(&mut *tx)
        .await?;
        let n = DB::rows_affected(&r);
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITE_COLS} FROM meeting_room_invites WHERE room_id = $1 AND id = $2"
        )))
        .bind(room.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(row) = row else { return Ok(InviteUse::Refused) };
        let rec = Self::invite_row(&row)?;
        Ok(if n > 0 {
            InviteUse::Used(rec)
        } else if rec.revoked_at_ms.is_none()
            && rec.expires_at_ms > now_ms
            && rec.max_uses > 0
            && rec.uses >= rec.max_uses
        {
            InviteUse::Exhausted
        } else {
            InviteUse::Refused
        })
    }

    /// §25.2: whether this call revoked the invite.
    pub(super) async fn revoke_invite(
        pool: &Pool<DB>,
        room: &RoomId,
        id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE meeting_room_invites SET revoked_at_ms = $3 WHERE room_id = $1 AND id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(room.as_str())
        .bind(id)
        .bind(i(now_ms))
        .execute(pool)
        .await?;
        let n = DB::rows_affected(&r);
        Ok(n > 0)
    }

    /// §25.5
    pub(super) async fn bar(pool: &Pool<DB>, room: &RoomId, who: &Barred, now_ms: u64) -> Result<(), StoreError> {
        let (kind, subject) = who.parts();
        sqlx::query(
            "INSERT INTO meeting_room_bars (room_id, kind, subject, at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (room_id, kind, subject) DO NOTHING",
        )
        .bind(room.as_str())
        .bind(kind)
        .bind(subject)
        .bind(i(now_ms))
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Whether any of `who` is barred from `room`.
    pub(super) async fn barred(pool: &Pool<DB>, room: &RoomId, who: &[Barred]) -> Result<bool, StoreError> {
        for w in who {
            let (kind, subject) = w.parts();
            let hit: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM meeting_room_bars WHERE room_id = $1 AND kind = $2 AND subject = $3",
            )
            .bind(room.as_str())
            .bind(kind)
            .bind(subject)
            .fetch_optional(pool)
            .await?;
            if hit.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Implements `MeetingStore` for a store with a `pool` and `metrics`.
macro_rules! impl_meeting_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::MeetingStore for $store {
            async fn create_meeting_room(&self, r: &$crate::store::RoomRec) -> Result<(), $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::create(&self.pool, r);
                $crate::store::timed(&self.metrics, "create_meeting_room", f).await
            }
            async fn meeting_room(
                &self,
                id: &$crate::store::RoomId,
            ) -> Result<Option<$crate::store::RoomRec>, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::room(&self.pool, id);
                $crate::store::timed(&self.metrics, "meeting_room", f).await
            }
            async fn meeting_rooms_of(
                &self,
                user: $crate::store::UserId,
                include_closed: bool,
            ) -> Result<Vec<$crate::store::RoomRec>, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::rooms_of(&self.pool, user, include_closed);
                $crate::store::timed(&self.metrics, "meeting_rooms_of", f).await
            }
            async fn update_meeting_room(
                &self,
                id: &$crate::store::RoomId,
                c: &$crate::store::RoomChange,
            ) -> Result<Option<$crate::store::RoomRec>, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::update(&self.pool, id, c);
                $crate::store::timed(&self.metrics, "update_meeting_room", f).await
            }
            async fn set_meeting_room_empty(
                &self,
                id: &$crate::store::RoomId,
                since_ms: Option<u64>,
            ) -> Result<(), $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::set_empty(&self.pool, id, since_ms);
                $crate::store::timed(&self.metrics, "set_meeting_room_empty", f).await
            }
            async fn reset_meeting_rooms_in_use(&self, now_ms: u64) -> Result<u64, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::reset_in_use(&self.pool, now_ms);
                $crate::store::timed(&self.metrics, "reset_meeting_rooms_in_use", f).await
            }
            async fn close_meeting_room(
                &self,
                id: &$crate::store::RoomId,
                reason: $crate::store::RoomCloseReason,
                now_ms: u64,
            ) -> Result<bool, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::close(&self.pool, id, reason, now_ms);
                $crate::store::timed(&self.metrics, "close_meeting_room", f).await
            }
            async fn meeting_rooms_due(
                &self,
                now_ms: u64,
                default_empty_ms: u64,
                limit: i64,
            ) -> Result<Vec<($crate::store::RoomId, $crate::store::RoomCloseReason)>, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::due(&self.pool, now_ms, default_empty_ms, limit);
                $crate::store::timed(&self.metrics, "meeting_rooms_due", f).await
            }
            async fn create_room_invite(&self, v: &$crate::store::InviteRec) -> Result<(), $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::create_invite(&self.pool, v);
                $crate::store::timed(&self.metrics, "create_room_invite", f).await
            }
            async fn room_invites(
                &self,
                room: &$crate::store::RoomId,
            ) -> Result<Vec<$crate::store::InviteRec>, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::invites(&self.pool, room);
                $crate::store::timed(&self.metrics, "room_invites", f).await
            }
            async fn room_invite(
                &self,
                room: &$crate::store::RoomId,
                id: &str,
            ) -> Result<Option<$crate::store::InviteRec>, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::invite(&self.pool, room, id);
                $crate::store::timed(&self.metrics, "room_invite", f).await
            }
            async fn use_room_invite(
                &self,
                room: &$crate::store::RoomId,
                id: &str,
                now_ms: u64,
            ) -> Result<$crate::store::InviteUse, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::use_invite(&self.pool, room, id, now_ms);
                $crate::store::timed(&self.metrics, "use_room_invite", f).await
            }
            async fn revoke_room_invite(
                &self,
                room: &$crate::store::RoomId,
                id: &str,
                now_ms: u64,
            ) -> Result<bool, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::revoke_invite(&self.pool, room, id, now_ms);
                $crate::store::timed(&self.metrics, "revoke_room_invite", f).await
            }
            async fn bar_from_room(
                &self,
                room: &$crate::store::RoomId,
                who: &$crate::store::Barred,
                now_ms: u64,
            ) -> Result<(), $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::bar(&self.pool, room, who, now_ms);
                $crate::store::timed(&self.metrics, "bar_from_room", f).await
            }
            async fn barred_from_room(
                &self,
                room: &$crate::store::RoomId,
                who: &[$crate::store::Barred],
            ) -> Result<bool, $crate::store::StoreError> {
                let f = $crate::store::meeting_sql::MeetingSql::barred(&self.pool, room, who);
                $crate::store::timed(&self.metrics, "barred_from_room", f).await
            }
        }
    };
}

pub(super) use impl_meeting_store;
