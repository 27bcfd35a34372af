//! The batched writer with batches in flight side by side (PostgreSQL: two lanes, server/src/
//! writer): many senders in conversations that share members, mentioning each other, all through
//! one `Writer` at once. Every send commits; each conversation's seqs are gapless; each sender's
//! messages keep its order; the bus sees each conversation's commits in seq order. On SQLite (one
//! lane) the same holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use confab_conformance::pg::TestDatabase;
use confab_server::bus::{Bus, DomainEvent, LocalBus, Subscriber};
use confab_server::config::StoreConfig;
use confab_server::store::{self, ConvId, ConvKind, MessageId, NewUser, OpResult, Store, UserId, WriteOp};
use confab_server::writer::Writer;

const NOW: i64 = 1_700_000_000_000;
const USERS: usize = 12;
const CONVERSATIONS: usize = 6;
const SENDS_PER_USER: usize = 40;

/// Records the message ids of committed sends, in publish order.
#[derive(Default)]
struct Order(Mutex<Vec<MessageId>>);

impl Subscriber for Order {
    fn name(&self) -> &'static str {
        "order"
    }
    fn handle(&self, event: &DomainEvent) {
        if let DomainEvent::Committed(c) = event
            && let Some(a) = &c.applied
            && let Some(OpResult::Sent { message_id, .. }) = &a.result
        {
            self.0.lock().unwrap().push(*message_id);
        }
    }
}

async fn check(store: Arc<dyn Store>) {
    let bus = Arc::new(LocalBus::default());
    let order = Arc::new(Order::default());
    bus.subscribe(order.clone());
    let writer = Writer::start(store.clone(), bus.clone() as Arc<dyn Bus>);
    let mut users = Vec::new();
    for i in 0..USERS {
        let name = format!("overlap{i}");
        let u = store
            .create_user(NewUser {
                username: name.clone(),
                username_key: name.clone(),
                display_name: name,
                email: None,
                email_key: None,
                phone: None,
                password_hash: None,
                created_at_ms: NOW,
            })
            .await
            .expect("user");
        users.push(u.id);
    }
    // Conversation k holds users k, k+2, k+4, k+6 (mod 12): every user is in two conversations,
    // and neighbouring conversations share members.
    let mut members: Vec<Vec<UserId>> = Vec::new();
    let mut convs: Vec<ConvId> = Vec::new();
    for k in 0..CONVERSATIONS {
        let m: Vec<UserId> = (0..4).map(|j| users[(k + 2 * j) % USERS]).collect();
        let op = WriteOp::Create {
            kind: ConvKind::Group,
            title: format!("c{k}"),
            description: String::new(),
            creator: m[0],
            members: m[1..].to_vec(),
            now_ms: NOW,
        };
        match writer.submit(op).await.expect("create").result {
            Some(OpResult::Conversation(c)) => convs.push(c),
            other => panic!("{other:?}"),
        }
        members.push(m);
    }
    let mut tasks = Vec::new();
    for (i, &u) in users.iter().enumerate() {
        let mine: Vec<(ConvId, Vec<UserId>)> =
            (0..CONVERSATIONS).filter(|k| members[*k].contains(&u)).map(|k| (convs[k], members[k].clone())).collect();
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in 0..SENDS_PER_USER {
                let (conv, m) = &mine[n % mine.len()];
                // Every third message mentions a member of the conversation.
                let mentions = if n % 3 == 0 { vec![m[(i + n) % m.len()]] } else { vec![] };
                let op = WriteOp::Send {
                    conversation_id: *conv,
                    sender: u,
                    session_id: format!("s{i}"),
                    client_msg_id: format!("m{i}-{n}"),
                    text: format!("message {n} of {i}"),
                    reply_to: None,
                    mentions,
                    attachments: vec![],
                    written_at_ms: 0,
                    now_ms: NOW + n as i64,
                };
                match writer.submit(op).await.expect("send commits").result {
                    Some(OpResult::Sent { message_id, seq, duplicate: false, .. }) => {
                        sent.push((*conv, seq, message_id))
                    }
                    other => panic!("{other:?}"),
                }
            }
            sent
        }));
    }
    let mut seqs: BTreeMap<ConvId, Vec<i64>> = BTreeMap::new();
    let mut conv_of: HashMap<MessageId, (ConvId, i64)> = HashMap::new();
    for t in tasks {
        let sent = t.await.expect("sender");
        let mut last: HashMap<ConvId, i64> = HashMap::new();
        for (conv, seq, id) in sent {
            let prev = last.insert(conv, seq).unwrap_or(0);
            assert!(seq > prev, "a sender's messages keep their order in {conv:?}: {seq} after {prev}");
            seqs.entry(conv).or_default().push(seq);
            conv_of.insert(id, (conv, seq));
        }
    }
    assert_eq!(conv_of.len(), USERS * SENDS_PER_USER, "every send committed once");
    for (conv, mut s) in seqs {
        s.sort_unstable();
        let first = s[0];
        assert!(s.iter().enumerate().all(|(i, v)| *v == first + i as i64), "gapless seqs in {conv:?}: {s:?}");
    }
    let published = order.0.lock().unwrap().clone();
    assert_eq!(published.len(), USERS * SENDS_PER_USER);
    let mut last: HashMap<ConvId, i64> = HashMap::new();
    for id in published {
        let (conv, seq) = conv_of[&id];
        let prev = last.insert(conv, seq).unwrap_or(0);
        assert!(seq > prev, "the bus sees {conv:?} in seq order: {seq} after {prev}");
    }
}

#[tokio::test]
async fn postgres_overlapping_batches_keep_every_order() {
    let db = TestDatabase::create().await.expect("test database (see scripts/test)");
    let s = store::open_postgres(&db.url, &StoreConfig::default()).await.expect("open");
    check(s.clone()).await;
    s.close().await;
    db.drop_db().await.expect("drop");
}

#[tokio::test]
async fn sqlite_batches_keep_every_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store::open_sqlite(&dir.path().join("confab.db"), &StoreConfig::default()).await.expect("open");
    check(s).await;
}
