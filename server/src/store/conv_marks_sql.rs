//! The set-based receipt path (§14.2 MarkRead, §14.4 Ack), written once as generic functions over
//! sqlx (`MarkSql<DB>`, for any `SqlBackend`, like `conv_send_sql`): a run of consecutive Ack and
//! MarkRead writes of one batch is checked and written with at most seven statements whatever its
//! length — the facts and watermarks of every (conversation, user) pair, the devices' cursors, the
//! members' watermarks, the mentions now read, the users' own logs, and the audiences — instead of
//! four to seven statements per op.
//! The outcome is the one the ops would have had one after another: receipts change none of each
//! other's preconditions (heads, memberships and settings stay as they are), so the watermarks
//! are read once and advanced in memory in op order; each op that moves one gets the receipt and
//! user-log entry it would have had, and the rows get their final values. The decision per op is
//! `rules::watermark`.

use std::collections::HashMap;
use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, FromRow, IntoArguments, Row as _, Type};

use super::conv_send_sql::audiences;
use super::conv_types::{Applied, ConvId, NotificationKind, OpError, OpResult, UpdateKind, UserUpdateRec, WriteOp};
use super::rows::{MarkFactsRow, WatermarkRow};
use super::rowset::{Column, RowSet};
use super::rules;
use super::sql::SqlBackend;
use super::types::UserId;

type Tx<'c, DB> = sqlx::Transaction<'c, DB>;

/// One Ack or MarkRead of a run, borrowed from its op.
pub(super) struct MarkRef<'a> {
    conv: ConvId,
    user: UserId,
    seq: i64,
    kind: MarkKind<'a>,
}

enum MarkKind<'a> {
    /// §14.4: this device (session) applied everything up to `seq`.
    Ack { session_id: &'a str },
    /// §14.2: the user read everything up to `seq`.
    Read { now: i64 },
}

impl<'a> MarkRef<'a> {
    /// The receipt `op` is, if it is one.
    pub(super) fn of(op: &'a WriteOp) -> Option<Self> {
        match op {
            WriteOp::Ack { conversation_id, user, session_id, seq } => {
                Some(Self { conv: *conversation_id, user: *user, seq: *seq, kind: MarkKind::Ack { session_id } })
            }
            WriteOp::MarkRead { conversation_id, user, seq, now_ms } => {
                Some(Self { conv: *conversation_id, user: *user, seq: *seq, kind: MarkKind::Read { now: *now_ms } })
            }
            _ => None,
        }
    }

    /// The field a refusal names.
    fn field(&self) -> &'static str {
        match self.kind {
            MarkKind::Ack { .. } => "ack.seq",
            MarkKind::Read { .. } => "mark_read.seq",
        }
    }
}

/// What one op of the run did, decided in memory.
enum Fate {
    Refused(OpError),
    /// An Ack that moved nothing, or a MarkRead at or below the read marker (its value).
    Unmoved(OpResult),
    /// A moved watermark: the member's watermarks right after this op, and for a MarkRead the
    /// rank of its entry among the run's entries of its user's log (1-based).
    Moved(WatermarkRow, Option<i64>),
}

/// The receipt path's SQL for backend `DB` (the `where` clause is what it needs from sqlx; see
/// `SendSql`).
pub(super) struct MarkSql<DB>(PhantomData<DB>);

impl<DB: SqlBackend> MarkSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'r> MarkFactsRow: FromRow<'r, DB::Row>,
{
    /// Per (conversation, user) of the run: the facts the rule reads and the member's watermarks.
    async fn facts(
        tx: &mut Tx<'_, DB>,
        run: &[MarkRef<'_>],
    ) -> Result<HashMap<(ConvId, UserId), MarkFactsRow>, sqlx::Error> {
        let mut pairs: Vec<(ConvId, UserId)> = run.iter().map(|m| (m.conv, m.user)).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let Some(keys) = RowSet::new(vec![
            Column::Int(pairs.iter().map(|p| p.0.0).collect()),
            Column::Int(pairs.iter().map(|p| p.1.0).collect()),
        ]) else {
            return Ok(HashMap::new());
        };
        let mut q = sqlx::QueryBuilder::<DB>::new("WITH k(cid, uid) AS (");
        keys.push(&mut q);
        // Members only (a non-member's receipt is refused like a missing conversation's), their
        // rows locked in key order: another node's receipt for the same member waits for this
        // commit, so the moves decided here are the ones written.
        q.push(
            ") SELECT k.cid AS cid, k.uid AS uid, c.kind AS kind, m.role AS role, c.head_seq AS head_seq, \
             m.delivered_seq AS delivered_seq, m.read_seq AS read_seq, u.read_receipts AS read_receipts \
             FROM k JOIN conversations c ON c.id = k.cid \
             JOIN members m ON m.conversation_id = k.cid AND m.user_id = k.uid \
             LEFT JOIN users u ON u.id = k.uid ORDER BY k.cid, k.uid",
        );
        q.push(DB::LOCK_MEMBERS);
        let rows = q.build_query_as::<MarkFactsRow>().fetch_all(&mut **tx).await?;
        Ok(rows.into_iter().map(|r| ((r.cid, r.uid), r)).collect())
    }

    /// Applies a run of receipts: one result per op, in order.
    pub(super) async fn mark_run(
        tx: &mut Tx<'_, DB>,
        run: &[MarkRef<'_>],
    ) -> Result<Vec<Result<Applied, OpError>>, sqlx::Error> {
        let facts = Self::facts(tx, run).await?;
        let mut marks: HashMap<(ConvId, UserId), WatermarkRow> =
            facts.iter().map(|(k, r)| (*k, r.watermarks())).collect();
        // Decide in op order, advancing the watermarks as the ops one after another would.
        let mut fates = Vec::with_capacity(run.len());
        let mut device_acks: HashMap<(&str, ConvId), i64> = HashMap::new();
        let mut read_upto: HashMap<(UserId, ConvId), i64> = HashMap::new();
        let mut log_entries: HashMap<UserId, i64> = HashMap::new();
        for m in run {
            let row = facts.get(&(m.conv, m.user));
            if let Err(e) = rules::watermark(row.map(MarkFactsRow::facts), m.field(), m.seq) {
                fates.push(Fate::Refused(e));
                continue;
            }
            let Some(w) = marks.get_mut(&(m.conv, m.user)) else {
                return Err(sqlx::Error::Protocol("an allowed receipt has no member row".into()));
            };
            let fate = match m.kind {
                MarkKind::Ack { session_id } => {
                    let cursor = device_acks.entry((session_id, m.conv)).or_insert(m.seq);
                    *cursor = (*cursor).max(m.seq);
                    if w.delivered_seq < m.seq {
                        w.delivered_seq = m.seq;
                        Fate::Moved(*w, None)
                    } else {
                        Fate::Unmoved(OpResult::Done)
                    }
                }
                MarkKind::Read { .. } => {
                    if w.read_seq < m.seq {
                        w.read_seq = m.seq;
                        w.delivered_seq = w.delivered_seq.max(m.seq);
                        read_upto.insert((m.user, m.conv), m.seq);
                        let rank = log_entries.entry(m.user).or_insert(0);
                        *rank += 1;
                        Fate::Moved(*w, Some(*rank))
                    } else {
                        Fate::Unmoved(OpResult::Seq(w.read_seq))
                    }
                }
            };
            fates.push(fate);
        }

        Self::write_device_acks(tx, &device_acks).await?;
        let moved: Vec<((ConvId, UserId), WatermarkRow)> = marks
            .iter()
            .filter(|(k, w)| facts.get(k).is_some_and(|r| r.watermarks() != **w))
            .map(|(k, w)| (*k, *w))
            .collect();
        Self::write_watermarks(tx, &moved).await?;
        Self::read_mentions(tx, &read_upto).await?;
        let first_user_seq = Self::advance_user_logs(tx, &log_entries).await?;
        let mut convs: Vec<ConvId> = moved.iter().map(|((c, _), _)| *c).collect();
        convs.sort_unstable();
        convs.dedup();
        let audiences = audiences::<DB>(tx, &convs).await?;

        // The results, in order; the moved reads' user-log entries, written together.
        let mut out = Vec::with_capacity(run.len());
        let mut entries = Vec::new();
        for (m, fate) in run.iter().zip(fates) {
            out.push(match fate {
                Fate::Refused(e) => Err(e),
                Fate::Unmoved(result) => Ok(Applied { result: Some(result), ..Default::default() }),
                Fate::Moved(w, rank) => {
                    let mut user_updates = Vec::new();
                    if let (MarkKind::Read { now }, Some(rank)) = (&m.kind, rank) {
                        let entry = UserUpdateRec {
                            user_id: m.user,
                            user_seq: first_user_seq.get(&m.user).copied().unwrap_or(0) + rank - 1,
                            at_ms: *now,
                            kind: UpdateKind::Read,
                            conversation_id: m.conv,
                            seq: Some(m.seq),
                        };
                        entries.push(entry.clone());
                        user_updates.push(entry);
                    }
                    let result = match m.kind {
                        MarkKind::Ack { .. } => OpResult::Done,
                        MarkKind::Read { .. } => OpResult::Seq(m.seq),
                    };
                    Ok(Applied {
                        result: Some(result),
                        audience: audiences.get(&m.conv).cloned().unwrap_or_default(),
                        user_updates,
                        receipts: vec![w.receipt(m.conv)],
                        ..Default::default()
                    })
                }
            });
        }
        Self::write_user_entries(tx, &entries).await?;
        Ok(out)
    }

    /// Each device's cursor per conversation, never moved back (§14.4).
    async fn write_device_acks(tx: &mut Tx<'_, DB>, acks: &HashMap<(&str, ConvId), i64>) -> Result<(), sqlx::Error> {
        if acks.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<(&str, ConvId, i64)> = acks.iter().map(|((s, c), q)| (*s, *c, *q)).collect();
        rows.sort_unstable();
        let Some(cursors) = RowSet::new(vec![
            Column::Text(rows.iter().map(|r| r.0.to_string()).collect()),
            Column::Int(rows.iter().map(|r| r.1.0).collect()),
            Column::Int(rows.iter().map(|r| r.2).collect()),
        ]) else {
            return Ok(());
        };
        let mut q = sqlx::QueryBuilder::<DB>::new("INSERT INTO device_acks (session_id, conversation_id, acked_seq) ");
        cursors.push(&mut q);
        q.push(
            " ON CONFLICT (session_id, conversation_id) DO UPDATE SET acked_seq = excluded.acked_seq \
             WHERE device_acks.acked_seq < excluded.acked_seq",
        );
        q.build().execute(&mut **tx).await?;
        Ok(())
    }

    /// The members' final watermarks, never moved back.
    async fn write_watermarks(
        tx: &mut Tx<'_, DB>,
        moved: &[((ConvId, UserId), WatermarkRow)],
    ) -> Result<(), sqlx::Error> {
        if moved.is_empty() {
            return Ok(());
        }
        let mut rows = moved.to_vec();
        // Rows in key order, so concurrent writers lock them alike.
        rows.sort_unstable_by_key(|(k, _)| *k);
        let Some(marks) = RowSet::new(vec![
            Column::Int(rows.iter().map(|((c, _), _)| c.0).collect()),
            Column::Int(rows.iter().map(|((_, u), _)| u.0).collect()),
            Column::Int(rows.iter().map(|(_, w)| w.delivered_seq).collect()),
            Column::Int(rows.iter().map(|(_, w)| w.read_seq).collect()),
        ]) else {
            return Ok(());
        };
        let mut q = sqlx::QueryBuilder::<DB>::new("WITH v(cid, uid, d, r) AS (");
        marks.push(&mut q);
        q.push(
            ") UPDATE members SET delivered_seq = CASE WHEN members.delivered_seq < v.d THEN v.d ELSE members.delivered_seq END, \
             read_seq = CASE WHEN members.read_seq < v.r THEN v.r ELSE members.read_seq END \
             FROM v WHERE members.conversation_id = v.cid AND members.user_id = v.uid",
        );
        q.build().execute(&mut **tx).await?;
        Ok(())
    }

    /// §19, §21: reading a conversation up to a seq reads the mentions of the messages up to it.
    async fn read_mentions(tx: &mut Tx<'_, DB>, upto: &HashMap<(UserId, ConvId), i64>) -> Result<(), sqlx::Error> {
        if upto.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<(UserId, ConvId, i64)> = upto.iter().map(|((u, c), s)| (*u, *c, *s)).collect();
        rows.sort_unstable();
        let mut q = sqlx::QueryBuilder::<DB>::new("WITH v(uid, cid, upto) AS (");
        q.push_values(&rows, |mut b, (u, c, s)| {
            b.push_bind(*u).push_bind(*c).push_bind(*s);
        });
        q.push(") UPDATE notifications SET read_flag = 1 FROM v WHERE notifications.user_id = v.uid AND notifications.conversation_id = v.cid AND notifications.kind = ");
        q.push_bind(i32::from(NotificationKind::Mentioned));
        q.push(
            " AND notifications.read_flag = 0 AND notifications.message_id IN \
             (SELECT id FROM messages WHERE messages.conversation_id = v.cid AND messages.seq <= v.upto)",
        );
        q.build().execute(&mut **tx).await?;
        Ok(())
    }

    /// Takes `n` entries of each user's own log in one step: the first new `user_seq` per user.
    async fn advance_user_logs(
        tx: &mut Tx<'_, DB>,
        counts: &HashMap<UserId, i64>,
    ) -> Result<HashMap<UserId, i64>, sqlx::Error> {
        if counts.is_empty() {
            return Ok(HashMap::new());
        }
        let mut rows: Vec<(UserId, i64)> = counts.iter().map(|(u, n)| (*u, *n)).collect();
        rows.sort_unstable();
        let mut q = sqlx::QueryBuilder::<DB>::new("WITH v(uid, n) AS (");
        q.push_values(&rows, |mut b, (u, n)| {
            b.push_bind(*u).push_bind(*n);
        });
        q.push(") UPDATE users SET update_seq = update_seq + v.n FROM v WHERE users.id = v.uid RETURNING users.id, users.update_seq");
        let mut first = HashMap::with_capacity(rows.len());
        for r in q.build().fetch_all(&mut **tx).await? {
            let user: UserId = r.try_get(0)?;
            let head: i64 = r.try_get(1)?;
            first.insert(user, head - counts.get(&user).copied().unwrap_or(0) + 1);
        }
        if first.len() != rows.len() {
            return Err(sqlx::Error::Protocol("a reader's account vanished during a receipt batch".into()));
        }
        Ok(first)
    }

    /// The moved reads' entries in their users' logs.
    async fn write_user_entries(tx: &mut Tx<'_, DB>, entries: &[UserUpdateRec]) -> Result<(), sqlx::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut q = sqlx::QueryBuilder::<DB>::new(
            "INSERT INTO user_updates (user_id, user_seq, kind, conversation_id, at_ms, seq) ",
        );
        let Some(rows) = RowSet::new(vec![
            Column::Int(entries.iter().map(|e| e.user_id.0).collect()),
            Column::Int(entries.iter().map(|e| e.user_seq).collect()),
            Column::Int(entries.iter().map(|e| i64::from(i32::from(e.kind))).collect()),
            Column::Int(entries.iter().map(|e| e.conversation_id.0).collect()),
            Column::Int(entries.iter().map(|e| e.at_ms).collect()),
            Column::OptInt(entries.iter().map(|e| e.seq).collect()),
        ]) else {
            return Ok(());
        };
        rows.push(&mut q);
        q.build().execute(&mut **tx).await?;
        Ok(())
    }
}
