//! The set-based send path, written once as generic functions over sqlx (`SendSql<DB>`, for any
//! `SqlBackend`; see docs/architecture.md on the bounds): a run of consecutive SendMessage writes
//! of one batch is checked and written with a fixed number of statements (about six, one more when
//! the run mentions anyone or carries attachments), whatever its length, instead of about nine
//! statements per message.
//! The outcome is the one the sends would have had one after another: sends change none of each
//! other's preconditions except the idempotency keys (tracked here) and the sequence numbers
//! (taken per conversation with one atomic `head_seq + n`). One difference is unobservable: a reply
//! to a message of the same run is refused as a reply to a missing message, but no client can know
//! a message's id before the commit that ends the run. The decision per send is `rules::send`,
//! over the facts these few statements read.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, FromRow, IntoArguments, Row as _, Type};

use super::conv_sql::join_ids;
use super::conv_types::{
    Applied, ConvId, ConvKind, LOG_POSTED, LogBody, LogEvent, MessageId, MessageRec, NotificationKind, NotificationRec,
    OpError, OpResult, Role, WriteOp,
};
use super::keys::{Scope, Sealer};
use super::media_types::AttachmentRec;
use super::report_types::{ReportAction, ReportId};
use super::rows::{PosterRow, StoredKeyRow};
use super::rowset::{Column, RowSet};
use super::rules;
use super::sql::SqlBackend;
use super::types::UserId;
use crate::crypto::Place;

type Tx<'c, DB> = sqlx::Transaction<'c, DB>;

/// One SendMessage of a run, borrowed from its op.
pub(super) struct SendRef<'a> {
    conv: ConvId,
    sender: UserId,
    session_id: &'a str,
    client_msg_id: &'a str,
    text: &'a str,
    reply_to: Option<MessageId>,
    mentions: &'a [UserId],
    attachments: &'a [AttachmentRec],
    written_at: i64,
    now: i64,
}

impl<'a> SendRef<'a> {
    /// The send `op` is, if it is one.
    pub(super) fn of(op: &'a WriteOp) -> Option<Self> {
        match op {
            WriteOp::Send {
                conversation_id,
                sender,
                session_id,
                client_msg_id,
                text,
                reply_to,
                mentions,
                attachments,
                written_at_ms,
                now_ms,
            } => Some(Self {
                conv: *conversation_id,
                sender: *sender,
                session_id,
                client_msg_id,
                text,
                reply_to: *reply_to,
                mentions,
                attachments,
                written_at: *written_at_ms,
                now: *now_ms,
            }),
            _ => None,
        }
    }
}

/// Members of each of `convs`, in user order (one statement; none for no conversation).
pub(super) async fn audiences<DB: SqlBackend>(
    tx: &mut Tx<'_, DB>,
    convs: &[ConvId],
) -> Result<HashMap<ConvId, Vec<UserId>>, sqlx::Error>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
{
    let Some(rows) = RowSet::new(vec![Column::Int(convs.iter().map(|c| c.0).collect())]) else {
        return Ok(HashMap::new());
    };
    let mut q =
        sqlx::QueryBuilder::<DB>::new("SELECT conversation_id, user_id FROM members WHERE conversation_id IN (");
    rows.push(&mut q);
    q.push(") ORDER BY conversation_id, user_id");
    let mut out: HashMap<ConvId, Vec<UserId>> = HashMap::with_capacity(convs.len());
    for r in q.build().fetch_all(&mut **tx).await? {
        out.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
    }
    Ok(out)
}

/// What the checks decided for one send of the run.
enum Fate {
    Refused(OpError),
    /// The key was used by an earlier, committed send.
    Stored(Applied),
    /// The key was used by an earlier send of this run (its index).
    SameAs(usize),
    /// A new message: its rank among the run's new messages of its conversation.
    New(i64),
}

/// The send path's SQL for backend `DB`. The `where` clause is the whole of what the SQL needs
/// from sqlx (an executor for a connection, and the types it binds and reads); it is written once,
/// on this block, because Rust does not carry where-clauses of a trait (`SqlBackend`) into the
/// functions bounded by it.
pub(super) struct SendSql<DB>(PhantomData<DB>);

impl<DB: SqlBackend> SendSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Option<MessageId>: Encode<'q, DB>,
    for<'r> PosterRow: FromRow<'r, DB::Row>,
    for<'r> StoredKeyRow: FromRow<'r, DB::Row>,
{
    /// Per (conversation, sender) that is a membership: the sender's standing (kind, role,
    /// announcement-only, whether a DIRECT conversation's peer blocked the sender or deleted
    /// their account).
    async fn send_checks(
        tx: &mut Tx<'_, DB>,
        run: &[SendRef<'_>],
    ) -> Result<HashMap<(ConvId, UserId), rules::Poster>, sqlx::Error> {
        let mut pairs: Vec<(ConvId, UserId)> = run.iter().map(|s| (s.conv, s.sender)).collect();
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
        q.push(format!(
            ") SELECT k.cid AS cid, k.uid AS uid, c.kind AS kind, c.announcement_only AS announcement_only, m.role AS role, \
             CASE WHEN c.kind = {direct} AND EXISTS (SELECT 1 FROM members p JOIN users pu ON pu.id = p.user_id \
             LEFT JOIN blocks b ON b.user_id = p.user_id AND b.blocked_id = k.uid \
             WHERE p.conversation_id = k.cid AND p.user_id <> k.uid \
             AND (b.user_id IS NOT NULL OR pu.deleted_at_ms IS NOT NULL)) THEN 1 ELSE 0 END AS peer_blocked \
             FROM k JOIN conversations c ON c.id = k.cid JOIN members m ON m.conversation_id = k.cid AND m.user_id = k.uid",
            direct = i32::from(ConvKind::Direct)
        ));
        let mut out = HashMap::with_capacity(pairs.len());
        for r in q.build_query_as::<PosterRow>().fetch_all(&mut **tx).await? {
            out.insert((r.cid, r.uid), r.poster());
        }
        Ok(out)
    }

    /// Messages already stored under the run's idempotency keys.
    async fn send_stored_keys(tx: &mut Tx<'_, DB>, run: &[SendRef<'_>]) -> Result<Vec<StoredKeyRow>, sqlx::Error> {
        // A VALUES list, not a RowSet: PostgreSQL keeps the generic plan of a prepared UNNEST
        // statement until `messages` is analyzed again, and one made while the table was nearly
        // empty scanned it whole as it grew (5.7 ms a call in a W4 run from an empty database,
        // against 0.5 ms for a plan per row count).
        let mut q = sqlx::QueryBuilder::<DB>::new("WITH k(u, c) AS (");
        q.push_values(run, |mut b, s| {
            b.push_bind(s.sender).push_bind(s.client_msg_id.to_string());
        });
        q.push(
            ") SELECT m.sender_id AS sender_id, m.client_msg_id AS client_msg_id, m.id AS id, m.seq AS seq, \
                m.created_at_ms AS created_at_ms, m.conversation_id AS conversation_id FROM messages m \
                JOIN k ON m.sender_id = k.u AND m.client_msg_id = k.c",
        );
        q.build_query_as().fetch_all(&mut **tx).await
    }

    /// The conversation of each existing message the run replies to.
    async fn send_parents(tx: &mut Tx<'_, DB>, run: &[SendRef<'_>]) -> Result<HashMap<MessageId, ConvId>, sqlx::Error> {
        let mut ids: Vec<MessageId> = run.iter().filter_map(|s| s.reply_to).collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        ids.sort_unstable();
        ids.dedup();
        let mut q = sqlx::QueryBuilder::<DB>::new("SELECT id, conversation_id FROM messages WHERE id IN (");
        let mut list = q.separated(", ");
        for id in &ids {
            list.push_bind(*id);
        }
        q.push(")");
        q.build().fetch_all(&mut **tx).await?.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// (mentioned user, sender) pairs of the run where the mentioned user blocked the sender:
    /// those mentions notify nobody (§18, §21). One statement; none when nothing is mentioned.
    async fn send_mention_blocks(
        tx: &mut Tx<'_, DB>,
        run: &[SendRef<'_>],
    ) -> Result<HashSet<(UserId, UserId)>, sqlx::Error> {
        let mut mentioned: Vec<UserId> = run.iter().flat_map(|s| s.mentions.iter().copied()).collect();
        if mentioned.is_empty() {
            return Ok(HashSet::new());
        }
        mentioned.sort_unstable();
        mentioned.dedup();
        let mut senders: Vec<UserId> = run.iter().filter(|s| !s.mentions.is_empty()).map(|s| s.sender).collect();
        senders.sort_unstable();
        senders.dedup();
        let mut q = sqlx::QueryBuilder::<DB>::new("SELECT user_id, blocked_id FROM blocks WHERE user_id IN (");
        let mut list = q.separated(", ");
        for u in &mentioned {
            list.push_bind(*u);
        }
        q.push(") AND blocked_id IN (");
        let mut list = q.separated(", ");
        for u in &senders {
            list.push_bind(*u);
        }
        q.push(")");
        q.build().fetch_all(&mut **tx).await?.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Applies a run of sends (§13.1): one result per send, in order.
    pub(super) async fn send_run(
        tx: &mut Tx<'_, DB>,
        sealer: &Sealer,
        run: &[SendRef<'_>],
    ) -> Result<Vec<Result<Applied, OpError>>, sqlx::Error> {
        let checks = Self::send_checks(tx, run).await?;
        let stored_rows = Self::send_stored_keys(tx, run).await?;
        let stored: HashMap<(UserId, &str), (MessageId, i64, i64, ConvId)> = stored_rows
            .iter()
            .map(|r| ((r.sender_id, r.client_msg_id.as_str()), (r.id, r.seq, r.created_at_ms, r.conversation_id)))
            .collect();
        let parents = Self::send_parents(tx, run).await?;

        // Decide, in order, as if the sends ran one after another.
        let mut fates = Vec::with_capacity(run.len());
        let mut taken: HashMap<(UserId, &str), usize> = HashMap::new();
        // Per conversation: new messages and the time of the last one.
        let mut counts: HashMap<ConvId, (i64, i64)> = HashMap::new();
        for (i, s) in run.iter().enumerate() {
            let key = (s.sender, s.client_msg_id);
            // An earlier use of the key: committed before, or earlier in this run.
            let earlier_stored = stored.get(&key).copied();
            let earlier_taken = taken.get(&key).copied();
            let facts = rules::SendFacts {
                conv: s.conv,
                poster: checks.get(&(s.conv, s.sender)).copied(),
                key_used_in: earlier_stored.map(|e| e.3).or(earlier_taken.map(|first| run[first].conv)),
                reply_to: s.reply_to,
                parent_conv: s.reply_to.and_then(|p| parents.get(&p).copied()),
            };
            let fate = match (rules::send(&facts), earlier_stored, earlier_taken) {
                (Err(e), _, _) => Fate::Refused(e),
                (Ok(rules::SendVerdict::Duplicate), Some((message_id, seq, created_at_ms, _)), _) => {
                    Fate::Stored(Applied {
                        result: Some(OpResult::Sent { message_id, seq, created_at_ms, duplicate: true }),
                        ..Default::default()
                    })
                }
                (Ok(rules::SendVerdict::Duplicate), None, Some(first)) => Fate::SameAs(first),
                (Ok(rules::SendVerdict::Duplicate), None, None) => {
                    return Err(sqlx::Error::Protocol("a duplicate send has no earlier use of its key".into()));
                }
                (Ok(rules::SendVerdict::Post), _, _) => {
                    taken.insert(key, i);
                    let entry = counts.entry(s.conv).or_insert((0, s.now));
                    entry.0 += 1;
                    entry.1 = entry.1.max(s.now);
                    Fate::New(entry.0)
                }
            };
            fates.push(fate);
        }

        let mut first_seq: HashMap<ConvId, i64> = HashMap::with_capacity(counts.len());
        let mut ids: HashMap<(ConvId, i64), MessageId> = HashMap::new();
        let mut audiences: HashMap<ConvId, Vec<UserId>> = HashMap::new();
        let mut mention_blocks: HashSet<(UserId, UserId)> = HashSet::new();
        if !counts.is_empty() {
            // Conversations in id order, so concurrent writers lock their rows alike.
            let mut convs: Vec<(ConvId, i64, i64)> = counts.iter().map(|(c, (n, at))| (*c, *n, *at)).collect();
            convs.sort_unstable();

            // Sequence numbers: one atomic step of each conversation's head. The run's new
            // messages take the last seqs, so the new head is also the last message's seq (every
            // SET reads the row as it was). A conversation an administrator deleted after the
            // membership check (its commit waited for here, on PostgreSQL) is not stepped: the
            // batch fails as "vanished", the writer tries it once more, and that send then finds
            // the conversation gone while the others commit (§26.6).
            let steps = RowSet::new(vec![
                Column::Int(convs.iter().map(|c| c.0.0).collect()),
                Column::Int(convs.iter().map(|c| c.1).collect()),
                Column::Int(convs.iter().map(|c| c.2).collect()),
            ])
            .ok_or_else(|| sqlx::Error::Protocol("a head step without conversations".into()))?;
            let mut q = sqlx::QueryBuilder::<DB>::new("WITH v(cid, n, at_ms) AS (");
            steps.push(&mut q);
            q.push(
                ") UPDATE conversations SET head_seq = head_seq + v.n, last_message_seq = head_seq + v.n, last_activity_ms = v.at_ms FROM v \
                    WHERE conversations.id = v.cid AND conversations.deleted_at_ms IS NULL RETURNING id, head_seq",
            );
            for r in q.build().fetch_all(&mut **tx).await? {
                let conv: ConvId = r.try_get(0)?;
                let head: i64 = r.try_get(1)?;
                first_seq.insert(conv, head - counts.get(&conv).map_or(0, |e| e.0) + 1);
            }
            if first_seq.len() != convs.len() {
                return Err(sqlx::Error::Protocol("a conversation vanished during a send batch".into()));
            }

            // The messages, then the log entries that carry them.
            let fresh: Vec<(&SendRef<'_>, i64)> = run
                .iter()
                .zip(&fates)
                .filter_map(|(s, f)| match f {
                    Fate::New(rank) => Some((s, first_seq[&s.conv] + rank - 1)),
                    _ => None,
                })
                .collect();
            // What is stored of each text: sealed for its place when encryption is on.
            let seal = |s: &SendRef<'_>, place: Place<'_>, text: &str| {
                sealer
                    .seal_text(Scope::Conversation(s.conv), s.now, &place, text)
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()))
            };
            let no_rows = || sqlx::Error::Protocol("a send run without new messages".into());
            let mut texts = Vec::with_capacity(fresh.len());
            let mut log_texts = Vec::with_capacity(fresh.len());
            for (s, seq) in &fresh {
                texts.push(seal(s, Place::Message { conv: s.conv.0, seq: *seq }, s.text)?);
                log_texts.push(seal(s, Place::Log { conv: s.conv.0, seq: *seq }, s.text)?);
            }
            let mut q = sqlx::QueryBuilder::<DB>::new(
                "INSERT INTO messages (conversation_id, seq, sender_id, session_id, client_msg_id, text, reply_to, mentions, created_at_ms, written_at_ms) ",
            );
            RowSet::new(vec![
                Column::Int(fresh.iter().map(|(s, _)| s.conv.0).collect()),
                Column::Int(fresh.iter().map(|(_, seq)| *seq).collect()),
                Column::Int(fresh.iter().map(|(s, _)| s.sender.0).collect()),
                Column::Text(fresh.iter().map(|(s, _)| s.session_id.to_string()).collect()),
                Column::Text(fresh.iter().map(|(s, _)| s.client_msg_id.to_string()).collect()),
                Column::Text(texts),
                Column::OptInt(fresh.iter().map(|(s, _)| s.reply_to.map(|m| m.0)).collect()),
                Column::Text(fresh.iter().map(|(s, _)| join_ids(s.mentions)).collect()),
                Column::Int(fresh.iter().map(|(s, _)| s.now).collect()),
                Column::Int(fresh.iter().map(|(s, _)| s.written_at).collect()),
            ])
            .ok_or_else(no_rows)?
            .push(&mut q);
            q.push(" RETURNING id, conversation_id, seq");
            for r in q.build().fetch_all(&mut **tx).await? {
                ids.insert((r.try_get(1)?, r.try_get(2)?), r.try_get(0)?);
            }
            if ids.len() != fresh.len() {
                return Err(sqlx::Error::Protocol("a sent message got no id".into()));
            }
            let mut q = sqlx::QueryBuilder::<DB>::new(
                "INSERT INTO conversation_events (conversation_id, seq, kind, actor_id, at_ms, message_id, text, user_ids) ",
            );
            RowSet::new(vec![
                Column::Int(fresh.iter().map(|(s, _)| s.conv.0).collect()),
                Column::Int(fresh.iter().map(|(_, seq)| *seq).collect()),
                Column::Int(fresh.iter().map(|_| i64::from(LOG_POSTED)).collect()),
                Column::Int(fresh.iter().map(|(s, _)| s.sender.0).collect()),
                Column::Int(fresh.iter().map(|(s, _)| s.now).collect()),
                Column::Int(fresh.iter().map(|(s, seq)| ids[&(s.conv, *seq)].0).collect()),
                Column::Text(log_texts),
                Column::Text(fresh.iter().map(|(s, _)| join_ids(s.mentions)).collect()),
            ])
            .ok_or_else(no_rows)?
            .push(&mut q);
            q.build().execute(&mut **tx).await?;

            // Attachments (§22.8), in the sender's order; the media items' foreign key refuses
            // one the collector removed meanwhile.
            let mut rows: Vec<(MessageId, usize, &AttachmentRec, String)> = Vec::new();
            for (s, seq) in &fresh {
                let id = ids[&(s.conv, *seq)];
                for (i, a) in s.attachments.iter().enumerate() {
                    let name = seal(
                        s,
                        Place::Attachment {
                            message: id.0,
                            position: i64::try_from(i).unwrap_or(i64::MAX),
                            media: a.media_id.0.as_str(),
                        },
                        &a.file_name,
                    )?;
                    rows.push((id, i, a, name));
                }
            }
            if !rows.is_empty() {
                let mut q = sqlx::QueryBuilder::<DB>::new(
                    "INSERT INTO message_attachments (message_id, position, media_id, file_name, duration_ms) ",
                );
                q.push_values(&rows, |mut b, (id, i, a, name)| {
                    b.push_bind(id.0)
                        .push_bind(i64::try_from(*i).unwrap_or(i64::MAX))
                        .push_bind(a.media_id.0.clone())
                        .push_bind(name.clone())
                        .push_bind(i64::from(a.duration_ms));
                });
                q.build().execute(&mut **tx).await?;
            }

            let list: Vec<ConvId> = convs.iter().map(|e| e.0).collect();
            audiences = self::audiences::<DB>(tx, &list).await?;
            mention_blocks = Self::send_mention_blocks(tx, run).await?;
        }

        // The results, in order; mentions of members become inbox entries.
        let mut out: Vec<Result<Applied, OpError>> = Vec::with_capacity(run.len());
        for (s, fate) in run.iter().zip(fates) {
            let applied = match fate {
                Fate::Refused(e) => Err(e),
                Fate::Stored(a) => Ok(a),
                Fate::SameAs(first) => match &out[first] {
                    Ok(Applied { result: Some(OpResult::Sent { message_id, seq, created_at_ms, .. }), .. }) => {
                        Ok(Applied {
                            result: Some(OpResult::Sent {
                                message_id: *message_id,
                                seq: *seq,
                                created_at_ms: *created_at_ms,
                                duplicate: true,
                            }),
                            ..Default::default()
                        })
                    }
                    _ => return Err(sqlx::Error::Protocol("a taken idempotency key has no message".into())),
                },
                Fate::New(rank) => {
                    let seq = first_seq[&s.conv] + rank - 1;
                    let message_id = ids[&(s.conv, seq)];
                    let audience = audiences.get(&s.conv).cloned().unwrap_or_default();
                    let mut notifications = Vec::new();
                    let notified = |u: &&UserId| {
                        rules::mention_notifies(
                            **u,
                            s.sender,
                            audience.contains(u),
                            mention_blocks.contains(&(**u, s.sender)),
                        )
                    };
                    for u in s.mentions.iter().filter(notified) {
                        notifications.push(
                            Self::notify(
                                tx,
                                *u,
                                NotificationKind::Mentioned,
                                s.conv,
                                Some(message_id),
                                s.sender,
                                None,
                                None,
                                None,
                                s.now,
                            )
                            .await?,
                        );
                    }
                    let m = MessageRec {
                        id: message_id,
                        conversation_id: s.conv,
                        seq,
                        sender_id: s.sender,
                        text: s.text.to_string(),
                        reply_to: s.reply_to,
                        mentions: s.mentions.to_vec(),
                        created_at_ms: s.now,
                        edited_at_ms: None,
                        deleted: false,
                        client_msg_id: s.client_msg_id.to_string(),
                        reactions: Vec::new(),
                        pinned: false,
                        attachments: s.attachments.to_vec(),
                        written_at_ms: s.written_at,
                    };
                    let ev = LogEvent {
                        conversation_id: s.conv,
                        seq,
                        actor_id: s.sender,
                        at_ms: s.now,
                        body: LogBody::Posted(m),
                    };
                    Ok(Applied {
                        result: Some(OpResult::Sent { message_id, seq, created_at_ms: s.now, duplicate: false }),
                        events: vec![ev],
                        audience,
                        notifications,
                        ..Default::default()
                    })
                }
            };
            out.push(applied);
        }
        Ok(out)
    }

    /// A new inbox entry. `role`: a `RoleChanged` entry's new role; `report_id` and
    /// `report_action`: a `Reported` or `ReportResolved` entry's report and action (§27).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn notify(
        tx: &mut Tx<'_, DB>,
        user: UserId,
        kind: NotificationKind,
        conv: ConvId,
        message_id: Option<MessageId>,
        actor: UserId,
        role: Option<Role>,
        report_id: Option<ReportId>,
        report_action: Option<ReportAction>,
        now: i64,
    ) -> Result<NotificationRec, sqlx::Error> {
        let r = sqlx::query(
            "INSERT INTO notifications (user_id, kind, conversation_id, message_id, actor_id, role, created_at_ms, \
             report_id, report_action) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(user)
        .bind(i32::from(kind))
        .bind(conv)
        .bind(message_id)
        .bind(actor)
        .bind(role.map(i32::from))
        .bind(now)
        .bind(report_id.map(|r| r.0))
        .bind(report_action.map(i32::from))
        .fetch_one(&mut **tx)
        .await?;
        Ok(NotificationRec {
            id: r.try_get(0)?,
            user_id: user,
            kind,
            conversation_id: conv,
            message_id,
            actor_id: actor,
            role,
            created_at_ms: now,
            read: false,
            report_id,
            report_action,
        })
    }
}
