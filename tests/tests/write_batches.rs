//! Group commit must not change meaning (docs/protocol.md §13.1, §14.1): a batch of writes
//! applied in one transaction gives exactly the results, logs and messages that the same writes
//! give one at a time — on both stores, through the set-based send path and the set-based receipt
//! path (§14.2 MarkRead, §14.4 Ack).

use std::sync::Arc;

use confab_conformance::pg::TestDatabase;
use confab_server::config::StoreConfig;
use confab_server::store::{
    self, Applied, ConvId, ConvKind, MessageId, NewUser, NotificationKind, OpError, OpResult, Store, UserId, WriteOp,
};

const NOW: i64 = 1_700_000_000_000;

fn user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        username_key: name.into(),
        display_name: name.into(),
        email: None,
        email_key: None,
        phone: None,
        password_hash: None,
        created_at_ms: NOW,
    }
}

fn send(conv: ConvId, sender: UserId, session: &str, key: &str, text: &str) -> WriteOp {
    WriteOp::Send {
        conversation_id: conv,
        sender,
        session_id: session.into(),
        client_msg_id: key.into(),
        text: text.into(),
        reply_to: None,
        mentions: Vec::new(),
        attachments: Vec::new(),
        written_at_ms: 0,
        now_ms: NOW + 1,
    }
}

fn with(op: WriteOp, reply: Option<MessageId>, mention: &[UserId]) -> WriteOp {
    match op {
        WriteOp::Send { conversation_id, sender, session_id, client_msg_id, text, now_ms, .. } => WriteOp::Send {
            conversation_id,
            sender,
            session_id,
            client_msg_id,
            text,
            reply_to: reply,
            mentions: mention.to_vec(),
            attachments: Vec::new(),
            written_at_ms: 0,
            now_ms,
        },
        other => other,
    }
}

async fn one(s: &Arc<dyn Store>, op: WriteOp) -> Result<Applied, OpError> {
    s.apply(&[op]).await.expect("apply").pop().expect("one result")
}

fn conv_of(r: &Result<Applied, OpError>) -> ConvId {
    match r {
        Ok(Applied { result: Some(OpResult::Conversation(c)), .. }) => *c,
        other => panic!("not a conversation: {other:?}"),
    }
}

fn sent(r: &Result<Applied, OpError>) -> (MessageId, i64, bool) {
    match r {
        Ok(Applied { result: Some(OpResult::Sent { message_id, seq, duplicate, .. }), .. }) => {
            (*message_id, *seq, *duplicate)
        }
        other => panic!("not a send: {other:?}"),
    }
}

struct World {
    users: [UserId; 4],
    group: ConvId,
    direct: ConvId,
    other: ConvId,
    announce: ConvId,
    parent: MessageId,
}

/// The same users, conversations, block and first message in a fresh store.
async fn world(s: &Arc<dyn Store>) -> World {
    let mut users = [UserId::default(); 4];
    for (i, name) in ["ana", "ben", "cyd", "dee"].iter().enumerate() {
        users[i] = s.create_user(user(name)).await.expect("user").id;
    }
    let [a, b, c, _] = users;
    let create = |kind, members: Vec<UserId>| WriteOp::Create {
        kind,
        title: "t".into(),
        description: String::new(),
        creator: a,
        members,
        now_ms: NOW,
    };
    let group = conv_of(&one(s, create(ConvKind::Group, vec![b, c])).await);
    let direct = conv_of(&one(s, create(ConvKind::Direct, vec![b])).await);
    let other = conv_of(&one(s, create(ConvKind::Group, vec![c])).await);
    let announce = conv_of(&one(s, create(ConvKind::Group, vec![b])).await);
    let update = WriteOp::Update {
        conversation_id: announce,
        actor: a,
        title: None,
        description: None,
        photo_ref: None,
        announcement_only: Some(true),
        now_ms: NOW,
    };
    one(s, update).await.expect("announcement-only");
    assert!(s.block(b, a, NOW).await.expect("block"), "ben blocks ana");
    let parent = sent(&one(s, send(group, a, "sa", "k0", "parent")).await).0;
    World { users, group, direct, other, announce, parent }
}

/// Every case the send path decides, with an edit in the middle that splits the run.
fn script(w: &World) -> Vec<WriteOp> {
    let [a, b, c, d] = w.users;
    vec![
        send(w.group, a, "sa", "k1", "hello"),                                   // 0 new
        with(send(w.group, b, "sb", "k2", "re"), Some(w.parent), &[]),           // 1 new reply
        send(w.group, a, "sa", "k1", "hello again"), // 2 same key, same conv: duplicate of 0
        send(w.other, a, "sa", "k1", "elsewhere"),   // 3 same key, other conv: invalid
        send(w.group, d, "sd", "k3", "outsider"),    // 4 not a member: not found
        send(w.direct, a, "sa", "k4", "blocked"),    // 5 the peer blocked ana: denied
        send(w.direct, b, "sb", "k5", "fine"),       // 6 new
        send(w.announce, b, "sb", "k6", "not allowed"), // 7 announcement-only: denied
        send(w.announce, a, "sa", "k7", "owner posts"), // 8 new
        with(send(w.other, c, "sc", "k8", "wrong parent"), Some(w.parent), &[]), // 9 parent elsewhere: invalid
        with(send(w.group, a, "sa", "k9", "@all"), None, &[b, c, d]), // 10 new: notifies cyd (ben blocks ana)
        send(ConvId(999_999), a, "sa", "k10", "nowhere"), // 11 no such conversation
        WriteOp::Edit {
            conversation_id: w.group,
            actor: a,
            message_id: w.parent,
            text: "edited".into(),
            now_ms: NOW + 2,
        },
        send(w.group, a, "sa", "k1", "stored"), // 13 key committed earlier: duplicate
        send(w.group, c, "sc", "k11", "one"),   // 14 new
        send(w.group, c, "sc", "k11", "one"),   // 15 duplicate of 14
        send(w.other, b, "sb", "k12", "not in other"), // 16 not a member
        send(w.group, a, "sa", "k0", "the parent again"), // 17 key from before the batch: duplicate
        send(w.other, c, "sc", "k13", "two"),   // 18 new
    ]
}

/// What a store holds afterwards: each conversation's log and messages.
async fn contents(s: &Arc<dyn Store>, w: &World) -> String {
    let mut out = String::new();
    for conv in [w.group, w.direct, w.other, w.announce] {
        let log = s.events_after(conv, 0, 1000).await.expect("log");
        let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=log.len() as i64).collect::<Vec<_>>(), "gapless log of {conv}");
        let messages = s.history(conv, w.users[0], None, None, 1000).await.expect("history");
        out.push_str(&format!("{log:?}\n{messages:?}\n"));
    }
    out
}

async fn batch_equals_one_at_a_time(batched: Arc<dyn Store>, single: Arc<dyn Store>) {
    let wb = world(&batched).await;
    let ws = world(&single).await;
    let ops = script(&wb);
    assert_eq!(format!("{ops:?}"), format!("{:?}", script(&ws)), "both stores start alike");

    let together = batched.apply(&ops).await.expect("batch");
    let mut apart = Vec::new();
    for op in ops {
        apart.push(one(&single, op).await);
    }
    assert_eq!(together.len(), apart.len());
    for (i, (t, a)) in together.iter().zip(&apart).enumerate() {
        assert_eq!(format!("{t:?}"), format!("{a:?}"), "op {i}");
    }

    // The outcomes themselves, so that both paths cannot agree on a wrong answer.
    let r = &together;
    let (m0, s0, d0) = sent(&r[0]);
    assert!(!d0);
    assert_eq!(sent(&r[2]), (m0, s0, true));
    assert_eq!(
        r[3].as_ref().err(),
        Some(&OpError::Invalid("send_message.client_msg_id", "already used for another conversation"))
    );
    assert_eq!(r[4].as_ref().err(), Some(&OpError::NotFound("no such conversation")));
    assert!(matches!(r[5], Err(OpError::PermissionDenied(_))), "{:?}", r[5]);
    assert!(!sent(&r[6]).2);
    assert!(matches!(r[7], Err(OpError::PermissionDenied(_))), "{:?}", r[7]);
    assert!(!sent(&r[8]).2);
    assert!(matches!(r[9], Err(OpError::Invalid("send_message.reply_to_message_id", _))), "{:?}", r[9]);
    let mentioned = r[10].as_ref().expect("mention send");
    assert_eq!(mentioned.notifications.iter().map(|n| n.user_id).collect::<Vec<_>>(), vec![wb.users[2]]);
    assert_eq!(r[11].as_ref().err(), Some(&OpError::NotFound("no such conversation")));
    assert_eq!(sent(&r[13]), (m0, s0, true));
    assert_eq!(sent(&r[15]), (sent(&r[14]).0, sent(&r[14]).1, true));
    assert_eq!(r[16].as_ref().err(), Some(&OpError::NotFound("no such conversation")));
    assert_eq!(sent(&r[17]), (wb.parent, 1 + 2, true), "the parent was the group's third entry");
    // Group seqs: Created, MembersAdded, parent, then 0, 1, 10, the edit, 14.
    let group_seqs: Vec<i64> = [0, 1, 10, 14].iter().map(|i| sent(&r[*i]).1).collect();
    assert_eq!(group_seqs, vec![4, 5, 6, 8]);
    let live = r[0].as_ref().expect("send");
    assert_eq!(live.events.len(), 1);
    assert_eq!(live.audience, vec![wb.users[0], wb.users[1], wb.users[2]]);

    assert_eq!(contents(&batched, &wb).await, contents(&single, &ws).await);

    // A long run across conversations: gapless seqs and one message per send.
    let [a, b, c, _] = wb.users;
    let long: Vec<WriteOp> = (0..400)
        .map(|i| {
            let (conv, who) = [(wb.group, a), (wb.direct, b), (wb.other, c)][i % 3];
            send(conv, who, "long", &format!("l{i}"), "x")
        })
        .collect();
    let results = batched.apply(&long).await.expect("long batch");
    let mut seqs: std::collections::HashMap<ConvId, Vec<i64>> = Default::default();
    for (i, r) in results.iter().enumerate() {
        let (_, seq, dup) = sent(r);
        assert!(!dup);
        seqs.entry([wb.group, wb.direct, wb.other][i % 3]).or_default().push(seq);
    }
    for (conv, s) in seqs {
        assert!(s.windows(2).all(|w| w[1] == w[0] + 1), "consecutive seqs in {conv}: {s:?}");
        let head = batched.events_after(conv, 0, 2000).await.expect("log").last().map(|e| e.seq);
        assert_eq!(head, s.last().copied());
    }
    let view = batched.conversation(a, wb.group).await.expect("view").expect("member");
    let last = view.last_message.expect("a last message");
    assert_eq!(last.client_msg_id, "l399", "the last message is the run's last in that conversation");
}

#[tokio::test]
async fn sqlite_batch_equals_one_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig::default();
    let batched = store::open_sqlite(&dir.path().join("b.db"), &cfg).await.expect("open");
    let single = store::open_sqlite(&dir.path().join("s.db"), &cfg).await.expect("open");
    batch_equals_one_at_a_time(batched, single).await;
}

#[tokio::test]
async fn postgres_batch_equals_one_at_a_time() {
    let db_b = TestDatabase::create().await.expect("test database (see scripts/test)");
    let db_s = TestDatabase::create().await.expect("test database");
    let cfg = StoreConfig::default();
    let batched = store::open_postgres(&db_b.url, &cfg).await.expect("open");
    let single = store::open_postgres(&db_s.url, &cfg).await.expect("open");
    batch_equals_one_at_a_time(batched.clone(), single.clone()).await;
    batched.close().await;
    single.close().await;
    db_b.drop_db().await.expect("drop");
    db_s.drop_db().await.expect("drop");
}

fn ack(conv: ConvId, user: UserId, session: &str, seq: i64) -> WriteOp {
    WriteOp::Ack { conversation_id: conv, user, session_id: session.into(), seq }
}

fn read(conv: ConvId, user: UserId, seq: i64) -> WriteOp {
    WriteOp::MarkRead { conversation_id: conv, user, seq, now_ms: NOW + 3 }
}

/// Every case the receipt path decides, in runs split by an edit.
fn receipts_script(w: &World) -> Vec<WriteOp> {
    let [a, b, c, d] = w.users;
    vec![
        ack(w.group, b, "sb1", 4),        // 0 moves ben's delivered 0 → 4
        ack(w.group, b, "sb2", 3),        // 1 a second device behind it: moves nothing
        read(w.group, b, 5),              // 2 moves read and delivered to 5, reads the mention at 4
        read(w.group, b, 4),              // 3 behind the marker: Seq(5)
        ack(w.group, b, "sb1", 6),        // 4 delivered 5 → 6
        read(w.group, c, 6),              // 5 cyd (who hides read receipts) reads everything
        ack(w.group, d, "sd", 1),         // 6 not a member: not found
        ack(ConvId(999_999), a, "sa", 1), // 7 no such conversation
        read(w.group, a, 99),             // 8 beyond the head: invalid
        read(w.direct, b, 2),             // 9 ben's second user-log entry of the run
        ack(w.group, b, "sb1", 5),        // 10 behind the device's cursor and the member's
        WriteOp::Edit {
            conversation_id: w.group,
            actor: a,
            message_id: w.parent,
            text: "edited".into(),
            now_ms: NOW + 2,
        },
        read(w.group, b, 7),         // 12 the edit's entry is readable now
        ack(w.group, b, "sb2", 7),   // 13 the read already moved delivered: nothing
        read(w.announce, b, 1),      // 14 another conversation
        read(w.announce, b, 1),      // 15 the same again: Seq(1)
        ack(w.announce, a, "sa", 2), // 16 the owner's device
    ]
}

/// What a store holds of receipts afterwards: watermarks, device cursors, user logs, mentions.
async fn receipt_contents(s: &Arc<dyn Store>, w: &World) -> String {
    let mut out = String::new();
    for conv in [w.group, w.direct, w.announce] {
        out.push_str(&format!("{:?}\n", s.watermarks(conv).await.expect("watermarks")));
        for session in ["sa", "sb1", "sb2", "sd"] {
            out.push_str(&format!("{session}@{conv}={} ", s.acked(session, conv).await.expect("acked")));
        }
    }
    for u in w.users {
        out.push_str(&format!("\n{:?}", s.user_updates_after(u, 0, 1000).await.expect("user log")));
        out.push_str(&format!("\n{:?}", s.notifications(u, i64::MAX, 100, false).await.expect("inbox")));
    }
    out
}

async fn receipts_equal_one_at_a_time(batched: Arc<dyn Store>, single: Arc<dyn Store>) {
    let mut worlds = Vec::new();
    for s in [&batched, &single] {
        let w = world(s).await;
        let [a, b, c, _] = w.users;
        // Group entries 4-6; the first two mention ben (by cyd: ben blocks ana) and cyd.
        one(s, with(send(w.group, c, "sc", "m1", "@ben"), None, &[b])).await.expect("mention");
        one(s, with(send(w.group, a, "sa", "m2", "@cyd"), None, &[c])).await.expect("mention");
        one(s, send(w.group, a, "sa", "m3", "plain")).await.expect("send");
        s.set_privacy(c, Some(false), None).await.expect("cyd hides read receipts");
        worlds.push(w);
    }
    let (wb, ws) = (&worlds[0], &worlds[1]);
    let ops = receipts_script(wb);
    assert_eq!(format!("{ops:?}"), format!("{:?}", receipts_script(ws)), "both stores start alike");

    let together = batched.apply(&ops).await.expect("batch");
    let mut apart = Vec::new();
    for op in ops {
        apart.push(one(&single, op).await);
    }
    for (i, (t, a)) in together.iter().zip(&apart).enumerate() {
        assert_eq!(format!("{t:?}"), format!("{a:?}"), "op {i}");
    }
    assert_eq!(receipt_contents(&batched, wb).await, receipt_contents(&single, ws).await);

    // The outcomes themselves.
    let [a, b, c, _] = wb.users;
    let r = &together;
    let receipt = |i: usize| {
        let applied = r[i].as_ref().expect("applied");
        assert_eq!(applied.receipts.len(), 1, "op {i} moved a watermark");
        let rec = &applied.receipts[0];
        (rec.user_id, rec.delivered_seq, rec.read_seq)
    };
    let unmoved = |i: usize| {
        let applied = r[i].as_ref().expect("applied");
        assert!(applied.receipts.is_empty() && applied.user_updates.is_empty(), "op {i} moved nothing: {applied:?}");
        applied.result.clone()
    };
    assert_eq!(receipt(0), (b, 4, 0));
    assert_eq!(unmoved(1), Some(OpResult::Done));
    assert_eq!(receipt(2), (b, 5, 5));
    assert_eq!(unmoved(3), Some(OpResult::Seq(5)));
    assert_eq!(receipt(4), (b, 6, 5));
    assert_eq!(receipt(5), (c, 6, 0), "cyd's read is hidden, her delivered is not");
    assert_eq!(r[6].as_ref().err(), Some(&OpError::NotFound("no such conversation")));
    assert_eq!(r[7].as_ref().err(), Some(&OpError::NotFound("no such conversation")));
    assert_eq!(r[8].as_ref().err(), Some(&OpError::Invalid("mark_read.seq", "beyond the conversation's head")));
    assert_eq!(receipt(9), (b, 2, 2));
    assert_eq!(unmoved(10), Some(OpResult::Done));
    assert_eq!(receipt(12), (b, 7, 7));
    assert_eq!(unmoved(13), Some(OpResult::Done));
    assert_eq!(receipt(14), (b, 1, 1));
    assert_eq!(unmoved(15), Some(OpResult::Seq(1)));
    assert_eq!(receipt(16), (a, 2, 0));
    let ben_log: Vec<i64> =
        [2, 9, 12, 14].iter().map(|i| r[*i].as_ref().expect("read").user_updates[0].user_seq).collect();
    assert!(ben_log.windows(2).all(|p| p[1] == p[0] + 1), "ben's log entries follow each other: {ben_log:?}");
    assert_eq!(r[2].as_ref().expect("read").audience, vec![a, b, c]);
    assert_eq!(batched.acked("sb1", wb.group).await.expect("acked"), 6, "a device's cursor never moves back");
    assert_eq!(batched.acked("sb2", wb.group).await.expect("acked"), 7);
    for u in [b, c] {
        let (inbox, _) = batched.notifications(u, i64::MAX, 100, false).await.expect("inbox");
        let mentions: Vec<bool> =
            inbox.iter().filter(|n| n.kind == NotificationKind::Mentioned).map(|n| n.read).collect();
        assert_eq!(mentions, vec![true], "reading read the mention of {u}");
    }
}

#[tokio::test]
async fn sqlite_receipts_equal_one_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig::default();
    let batched = store::open_sqlite(&dir.path().join("b.db"), &cfg).await.expect("open");
    let single = store::open_sqlite(&dir.path().join("s.db"), &cfg).await.expect("open");
    receipts_equal_one_at_a_time(batched, single).await;
}

#[tokio::test]
async fn postgres_receipts_equal_one_at_a_time() {
    let db_b = TestDatabase::create().await.expect("test database (see scripts/test)");
    let db_s = TestDatabase::create().await.expect("test database");
    let cfg = StoreConfig::default();
    let batched = store::open_postgres(&db_b.url, &cfg).await.expect("open");
    let single = store::open_postgres(&db_s.url, &cfg).await.expect("open");
    receipts_equal_one_at_a_time(batched.clone(), single.clone()).await;
    batched.close().await;
    single.close().await;
    db_b.drop_db().await.expect("drop");
    db_s.drop_db().await.expect("drop");
}

/// Two nodes on one PostgreSQL moving one member's read marker at once (§14.2): each receipt run
/// decides on the member's row locked, so the user log's read entries only go forward and the
/// marker ends at the highest seq, however the two nodes' transactions interleave.
#[tokio::test]
async fn postgres_read_markers_from_two_nodes_only_go_forward() {
    let db = TestDatabase::create().await.expect("test database (see scripts/test)");
    let cfg = StoreConfig::default();
    let node_a = store::open_postgres(&db.url, &cfg).await.expect("open");
    let node_b = store::open_postgres(&db.url, &cfg).await.expect("open");
    let w = world(&node_a).await;
    let [a, b, _, _] = w.users;
    let sends: Vec<WriteOp> = (0..60).map(|i| send(w.group, a, "sa", &format!("r{i}"), "x")).collect();
    node_a.apply(&sends).await.expect("sends");
    let head = node_a.events_after(w.group, 0, 1000).await.expect("log").len() as i64;

    // Node A reads odd seqs, node B even ones, both upward, each in batches of two reads.
    let reader = |s: Arc<dyn Store>, first: i64| async move {
        let mut results = Vec::new();
        let mut seq = first;
        while seq < head {
            let ops = vec![read(w.group, b, seq), read(w.group, b, (seq + 2).min(head))];
            results.extend(s.apply(&ops).await.expect("reads"));
            seq += 4;
        }
        results
    };
    let (ra, rb) = tokio::join!(reader(node_a.clone(), 1), reader(node_b.clone(), 2));
    let mut moved = 0;
    for r in ra.iter().chain(&rb) {
        let applied = r.as_ref().expect("a member's read within the head");
        moved += applied.user_updates.len();
    }
    let (log, _) = node_a.user_updates_after(b, 0, 10_000).await.expect("user log");
    let reads: Vec<i64> = log
        .iter()
        .filter(|e| e.kind == store::UpdateKind::Read && e.conversation_id == w.group)
        .filter_map(|e| e.seq)
        .collect();
    assert_eq!(reads.len(), moved, "one user-log entry per moved marker");
    assert!(reads.windows(2).all(|p| p[1] > p[0]), "read entries only go forward: {reads:?}");
    let marks = node_a.watermarks(w.group).await.expect("watermarks");
    let ben = marks.iter().find(|m| m.user_id == b).expect("ben");
    assert_eq!((ben.read_seq, reads.last().copied()), (head, Some(head)));
    node_a.close().await;
    node_b.close().await;
    db.drop_db().await.expect("drop");
}
