//! Message search beyond the conformance cases (docs/protocol.md §23): the index catching up
//! with writes it never saw (a node that does not index, then a restart with indexing on — as a
//! database from before migration 0012 is indexed), a search on one node of a cluster finding what
//! another committed, and the membership spans migration 0012 builds from the logs agreeing with
//! those the write path keeps — on both stores.

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::cluster::TestCluster;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::pg::TestDatabase;
use confab_conformance::util::{group, new_user, register, send, unique};
use confab_protocol::v1;
use sqlx::Connection as _;

fn query(q: &str) -> v1::SearchMessages {
    v1::SearchMessages { query: q.into(), limit: 100, ..Default::default() }
}

/// Starts a server on `dir` (and `db` for PostgreSQL) with indexing on or off.
async fn start(
    kind: StoreKind,
    db: Option<&TestDatabase>,
    dir: &std::path::Path,
    indexing: bool,
) -> anyhow::Result<TestServer> {
    let dir = dir.to_path_buf();
    let tweak = move |c: &mut confab_server::config::Config| {
        c.data_dir = dir;
        c.search.indexing = indexing;
    };
    match (kind, db) {
        (StoreKind::Postgres, Some(db)) => TestServer::start_on(&db.url, tweak).await,
        _ => TestServer::start_with(kind, tweak).await,
    }
}

/// §23.6: what a node that does not index committed is reported as lag, not found; the indexer
/// of the next start reads it from the logs (its start-up sweep, or the search's flush).
async fn indexing_catches_up_after_a_restart(kind: StoreKind) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = match kind {
        StoreKind::Postgres => Some(TestDatabase::create().await?),
        StoreKind::Sqlite => None,
    };
    let s = start(kind, db.as_ref(), dir.path(), false).await?;
    let a = new_user(&s, Transport::WebSocket, "ixA").await?;
    let conv = call!(a.client, CreateConversation, group("unindexed", &[]))?.conversation_id;
    let word = unique("ix");
    for i in 0..30 {
        call!(a.client, SendMessage, send(conv, &unique("ixm"), &format!("{word} {i}")))?;
    }
    let res = call!(a.client, SearchMessages, query(&word))?;
    ensure!(res.hits.is_empty(), "nothing was indexed: {:?}", res.hits.len());
    let lag = res.index_lag.first().context("the lag is reported")?;
    ensure!(lag.conversation_id == conv && lag.indexed_seq < lag.head_seq && lag.head_seq >= 31, "{lag:?}");
    let name = a.name.clone();
    drop(a);
    s.stop().await?;

    let s = start(kind, db.as_ref(), dir.path(), true).await?;
    let (client, _events) = s.connect(Transport::Quic).await?;
    client.login(&name, confab_conformance::util::PASSWORD, "after restart").await?;
    let all = client.search_all(query(&word), 100).await?;
    ensure!(all.len() == 30, "every message is found after the restart: {}", all.len());
    let res = call!(client, SearchMessages, query(&word))?;
    ensure!(res.index_lag.is_empty(), "{:?}", res.index_lag);
    s.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_indexing_catches_up_after_a_restart() {
    indexing_catches_up_after_a_restart(StoreKind::Sqlite).await.expect("catch up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_indexing_catches_up_after_a_restart() {
    indexing_catches_up_after_a_restart(StoreKind::Postgres).await.expect("catch up");
}

/// §23.6 in a cluster: node-0 does not index; what it commits is found at once on node-1 (whose
/// search flushes the conversation from the log), and then on node-0 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_on_one_node_finds_what_another_committed() {
    let cluster = TestCluster::start_with(2, |c| {
        c.search.indexing = c.cluster.node_id.as_deref() != Some("node-0");
    })
    .await
    .expect("start cluster");
    let run = async {
        let (on0, _e0) = cluster.connect(0, Transport::WebSocket).await?;
        let (on1, _e1) = cluster.connect(1, Transport::Quic).await?;
        let name = unique("cxA");
        on0.register(register(&name)).await?;
        on1.login(&name, confab_conformance::util::PASSWORD, "node 1").await?;
        let conv = call!(on0, CreateConversation, group("cluster", &[]))?.conversation_id;
        let word = unique("cx");
        call!(on0, SendMessage, send(conv, &unique("cxm"), &format!("{word} across nodes")))?;
        let res = call!(on1, SearchMessages, query(&word))?;
        ensure!(res.hits.len() == 1 && res.index_lag.is_empty(), "found on the other node: {res:?}");
        let res = call!(on0, SearchMessages, query(&word))?;
        ensure!(res.hits.len() == 1 && res.index_lag.is_empty(), "and on the node that does not index: {res:?}");
        anyhow::Ok(())
    }
    .await;
    cluster.stop().await.expect("stop cluster");
    run.expect("search across nodes");
}

/// The first statement of migration 0012 that writes `membership_spans`, writing `target` instead.
fn backfill_statement(kind: StoreKind, target: &str) -> anyhow::Result<String> {
    let dir = match kind {
        StoreKind::Postgres => "postgres",
        StoreKind::Sqlite => "sqlite",
    };
    let path = format!("{}/../migrations/{dir}/0012_search.sql", env!("CARGO_MANIFEST_DIR"));
    let sql = std::fs::read_to_string(&path)?;
    let start = sql.find("INSERT").context("the migration inserts spans")?;
    let end = start + sql[start..].find(';').context("the statement ends")?;
    Ok(sql[start..end].replacen("membership_spans", target, 1))
}

/// The (user, message) pairs a span table lets users find.
const VISIBLE: &str = "SELECT s.user_id, m.id FROM {t} s JOIN messages m ON m.conversation_id = s.conversation_id \
                       AND m.seq > s.from_seq AND (s.until_seq IS NULL OR m.seq <= s.until_seq)";

/// Migration 0012 builds spans from the logs; the write path keeps them from then on. Both must
/// let the same users find the same messages, through creations, additions, removals, leaving,
/// joining, re-adding and account deletion.
async fn spans_from_the_logs_match_the_kept_ones(kind: StoreKind) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = match kind {
        StoreKind::Postgres => Some(TestDatabase::create().await?),
        StoreKind::Sqlite => None,
    };
    let s = start(kind, db.as_ref(), dir.path(), true).await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "bfA").await?;
    let b = new_user(&s, t, "bfB").await?;
    let c = new_user(&s, t, "bfC").await?;
    let g = call!(a.client, CreateConversation, group("g", &[b.id, c.id]))?.conversation_id;
    let ch = call!(
        a.client,
        CreateConversation,
        v1::CreateConversation {
            kind: v1::ConversationKind::Channel as i32,
            title: unique("bf"),
            ..Default::default()
        }
    )?
    .conversation_id;
    let dm = call!(
        b.client,
        CreateConversation,
        v1::CreateConversation {
            kind: v1::ConversationKind::Direct as i32,
            member_ids: vec![c.id],
            ..Default::default()
        }
    )?
    .conversation_id;
    let say = |n: u32| format!("m{n}");
    let mut n = 0;
    for step in 0..6 {
        for (who, conv) in [(&a, g), (&a, ch), (&b, dm)] {
            n += 1;
            let _ = call!(who.client, SendMessage, send(conv, &unique("bfm"), &say(n)));
        }
        match step {
            0 => drop(call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: g, user_id: b.id })?),
            1 => drop(call!(b.client, JoinChannel, v1::JoinChannel { conversation_id: ch })?),
            2 => drop(call!(a.client, AddMembers, v1::AddMembers { conversation_id: g, user_ids: vec![b.id] })?),
            3 => drop(call!(c.client, LeaveConversation, v1::LeaveConversation { conversation_id: g })?),
            4 => drop(call!(
                b.client,
                DeleteAccount,
                v1::DeleteAccount { password: confab_conformance::util::PASSWORD.into() }
            )?),
            _ => {}
        }
    }
    s.stop().await?;
    let rebuild = backfill_statement(kind, "spans_rebuilt")?;
    let create = "CREATE TABLE spans_rebuilt (user_id BIGINT NOT NULL, conversation_id BIGINT NOT NULL, \
                  from_seq BIGINT NOT NULL, until_seq BIGINT, PRIMARY KEY (user_id, conversation_id, from_seq))";
    let kept = VISIBLE.replace("{t}", "membership_spans");
    let rebuilt = VISIBLE.replace("{t}", "spans_rebuilt");
    let counts = [
        format!("SELECT COUNT(*) FROM ({kept}) x"),
        format!("SELECT COUNT(*) FROM ({kept} EXCEPT {rebuilt}) x"),
        format!("SELECT COUNT(*) FROM ({rebuilt} EXCEPT {kept}) x"),
    ];
    let mut got = Vec::new();
    match &db {
        Some(db) => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&mut conn).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(rebuild)).execute(&mut conn).await?;
            for q in &counts {
                got.push(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(q.clone())).fetch_one(&mut conn).await?);
            }
        }
        None => {
            let url = format!("sqlite://{}", dir.path().join("confab.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&mut conn).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(rebuild)).execute(&mut conn).await?;
            for q in &counts {
                got.push(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(q.clone())).fetch_one(&mut conn).await?);
            }
        }
    }
    ensure!(got[0] > 20, "the spans let users find messages: {got:?}");
    ensure!(got[1] == 0 && got[2] == 0, "kept and rebuilt spans differ: {got:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_spans_from_the_logs_match_the_kept_ones() {
    spans_from_the_logs_match_the_kept_ones(StoreKind::Sqlite).await.expect("spans");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_spans_from_the_logs_match_the_kept_ones() {
    spans_from_the_logs_match_the_kept_ones(StoreKind::Postgres).await.expect("spans");
}

/// A small random generator (xorshift), seeded per run and printed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// Pieces messages and queries are made of: accents in both forms, case, ligatures, CJK, kana,
/// emoji with modifiers, identifiers, punctuation, one- and two-character words.
const PIECES: &[&str] = &[
    "Élodie",
    "elodie",
    "E\u{301}LODIE",
    "straße",
    "STRASSE",
    "ﬁle",
    "file",
    "parseConfigFile",
    "config",
    "中文",
    "我们",
    "讨论中文文档",
    "ひらがな",
    "が",
    "か",
    "👍🏽",
    "👍",
    "❤\u{fe0f}",
    "a",
    "ab",
    "x",
    "σοφία",
    "ΣΟΦΊΑ",
    "e-mail",
    "mail",
    "C++",
    "50%",
    "_under_",
    "naïve",
    "NAIVE",
    "ok",
    "okay",
];

/// The same query gives the same hits on both stores, in clear and with encryption at rest (the
/// blind index), and the hits the folding rules of §23.2 give (checked with the server's own
/// folding over the texts): random messages and queries, including needles of one and two
/// characters (scanned, or single tokens) and of three or more (trigram indexes, token runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_give_the_hits_the_folding_rules_give() {
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let texts: Vec<String> = (0..120)
        .map(|_| {
            let n = 1 + rng.next() % 5;
            let seps = [" ", " ", "", ", ", "-", "。"];
            (0..n).map(|_| format!("{}{}", rng.pick(PIECES), rng.pick(&seps))).collect::<String>().trim().to_string()
        })
        .filter(|t| !t.trim().is_empty())
        .collect();
    let queries: Vec<String> = (0..60)
        .map(|i| match i % 4 {
            0 => rng.pick(PIECES).to_string(),
            1 => format!("{} {}", rng.pick(PIECES), rng.pick(PIECES)),
            2 => format!("\"{} {}\"", rng.pick(PIECES), rng.pick(PIECES)),
            _ => format!("{} OR {} -{}", rng.pick(PIECES), rng.pick(PIECES), rng.pick(PIECES)),
        })
        .collect();
    let mut answers = Vec::new();
    let keys = tempfile::tempdir().expect("dir");
    let key = keys.path().join("kek");
    std::fs::write(&key, [7u8; 32]).expect("key file");
    let runs = [
        (StoreKind::Sqlite, false),
        (StoreKind::Postgres, false),
        (StoreKind::Sqlite, true),
        (StoreKind::Postgres, true),
    ];
    for (kind, encrypted) in runs {
        let key = encrypted.then(|| key.clone());
        let s = TestServer::start_with(kind, |c| c.store.encryption_key_file = key).await.expect("start");
        let a = new_user(&s, Transport::WebSocket, "pxA").await.expect("user");
        let conv = call!(a.client, CreateConversation, group("property", &[])).expect("group").conversation_id;
        let mut ids = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            ids.push(call!(a.client, SendMessage, send(conv, &unique(&format!("px{i}")), t)).expect("send").message_id);
        }
        let mut per_query = Vec::new();
        for q in &queries {
            let r = v1::SearchMessages { query: q.clone(), conversation_ids: vec![conv], ..query("") };
            let hits = a.client.search_all(r, 1000).await.unwrap_or_else(|e| panic!("{kind:?} {q:?}: {e}"));
            let mut found: Vec<usize> = hits
                .iter()
                .filter_map(|h| h.message.as_ref())
                .filter_map(|m| ids.iter().position(|&id| id == m.message_id))
                .collect();
            found.sort_unstable();
            per_query.push(found);
        }
        s.stop().await.expect("stop");
        answers.push(per_query);
    }
    let with_hits = answers[0].iter().filter(|a| !a.is_empty() && a.len() < texts.len()).count();
    assert!(with_hits >= queries.len() / 4, "the queries find some messages and not others: {with_hits}");
    for (i, q) in queries.iter().enumerate() {
        let parsed = confab_server::search::query::Query::parse(q).expect("parses");
        let Some(m) = parsed.matching else {
            assert!(answers[0][i].len() == texts.len(), "{q:?} has no word: the conversation filter alone");
            continue;
        };
        let expected: Vec<usize> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| m.matches(&confab_server::search::normalize::Folded::new(t).text))
            .map(|(i, _)| i)
            .collect();
        for (run, (kind, encrypted)) in runs.iter().enumerate() {
            assert_eq!(answers[run][i], expected, "{kind:?}, encrypted {encrypted}, query {q:?} (seed {seed})");
        }
    }
}
