//! Search with encryption at rest (docs/operations.md "Search with encryption at rest") on both
//! stores: the blind index finds what the folding rules of §23.2 find — words inside words, one-
//! and two-character words, phrases, exclusions, OR, accents, Han without spaces, and messages
//! too long or too repetitive for a PostgreSQL tsvector to keep their positions — with the same
//! order (newest first and by relevance), pages and highlights as the index in clear; and the
//! index tables then hold tokens only, never a word of the messages.

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::pg::TestDatabase;
use confab_conformance::util::{User, group, new_user, send, unique};
use confab_protocol::v1;
use confab_server::search::normalize::Folded;
use confab_server::search::query::Query;
use sqlx::{Connection as _, Row as _};

/// Longest message text these servers take: room for a message of more than the 16,383 word
/// positions a tsvector keeps.
const MAX_TEXT: u32 = 64 * 1024;

/// A long message: made-up words (consonant, vowel, …: no query below occurs in one by chance),
/// `deploy` and `release candidate` early, `zebracorn tail` and the canary past 30,000 characters.
fn long_text(canary: &str) -> String {
    let (cons, vows) = (b"klmnprstv", b"aeiou");
    let mut x: u32 = 12_345;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut t = String::from("deploy notes: release candidate");
    while t.len() < 30_000 {
        t.push(' ');
        for _ in 0..2 + next() % 3 {
            t.push(char::from(cons[(next() % 9) as usize]));
            t.push(char::from(vows[(next() % 5) as usize]));
        }
    }
    t.push_str(&format!(" zebracorn tail {canary}"));
    t
}

/// The messages: each search behaviour has its texts; `canary` is a word of several of them.
fn corpus(canary: &str) -> Vec<String> {
    vec![
        format!("Deploying parseConfigFile to prod {canary}"),
        "deploy the release candidate today".into(),
        "Rendez-vous avec Élodie: naïve café".into(),
        "我们明天讨论中文文档，会议在三点".into(),
        "ok a b ab x".into(),
        "the release of the candidate, deploy deploy".into(),
        format!("ELODIE 👍🏽 straße {canary}"),
        long_text(canary),
        // "ha " 400 times: more positions for one token than a tsvector keeps.
        format!("{}hoho {canary}", "ha ".repeat(400)),
        "ha ha hoho".into(),
        "HAHA e-mail".into(),
        "deployment candidates released".into(),
    ]
}

const QUERIES: &[&str] = &[
    "zebracorn",
    "\"zebracorn tail\"",
    "tail -ha",
    "\"ha hoho\"",
    "ha -hoho",
    "hoho -zebracorn",
    "deploy",
    "deploy -candidate",
    "\"release candidate\"",
    "release OR élodie -café",
    "candidate OR hoho",
    "config",
    "ConfigFile",
    "a",
    "ab",
    "x",
    "中文",
    "会议",
    "讨论中文",
    "elodie",
    "NAIVE",
    "👍",
    "strasse",
    "mail",
    "e",
    "\"candidate today\"",
    "release candidate deploy",
];

/// One hit: the message's place in the corpus and its highlights.
type Hit = (usize, Vec<(u32, u32)>);

/// Every query's hits, newest first then by relevance, read in pages of 3.
async fn run_queries(a: &User, conv: u64, ids: &[u64]) -> anyhow::Result<Vec<Vec<Hit>>> {
    let mut out = Vec::new();
    for q in QUERIES {
        for order in [v1::SearchOrder::Newest, v1::SearchOrder::Relevance] {
            let r = v1::SearchMessages {
                query: (*q).into(),
                conversation_ids: vec![conv],
                limit: 3,
                order: order as i32,
                ..Default::default()
            };
            let hits = a.client.search_all(r, 1000).await.with_context(|| format!("{q:?}"))?;
            let mut found = Vec::new();
            for h in hits {
                let m = h.message.context("a hit has its message")?;
                let i = ids.iter().position(|&id| id == m.message_id).context("a message of the corpus")?;
                found.push((i, h.highlights.iter().map(|r| (r.start, r.end)).collect()));
            }
            out.push(found);
        }
    }
    Ok(out)
}

/// The search index's rows as text: SQLite's `search_docs.body`; PostgreSQL's `body` and
/// `tokens`. Also the bytes of SQLite's FTS5 index pages.
struct IndexRows {
    docs: Vec<(String, String)>,
    fts_pages: Vec<u8>,
}

async fn index_rows(kind: StoreKind, db: Option<&TestDatabase>, s: &TestServer) -> anyhow::Result<IndexRows> {
    match (kind, db) {
        (StoreKind::Postgres, Some(db)) => {
            let mut c = sqlx::PgConnection::connect(&db.url).await?;
            let rows =
                sqlx::query("SELECT body, COALESCE(tokens::text, '') FROM search_docs").fetch_all(&mut c).await?;
            let docs = rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<anyhow::Result<_>>()?;
            Ok(IndexRows { docs, fts_pages: Vec::new() })
        }
        _ => {
            let url = format!("sqlite://{}", s.data_dir().join("confab.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await?;
            let rows = sqlx::query("SELECT body FROM search_docs").fetch_all(&mut c).await?;
            let docs = rows.iter().map(|r| Ok((r.try_get(0)?, String::new()))).collect::<anyhow::Result<_>>()?;
            let mut fts_pages = Vec::new();
            for t in ["search_blind_data", "search_trigrams_data"] {
                let q = format!("SELECT block FROM {t}");
                for r in sqlx::query(sqlx::AssertSqlSafe(q)).fetch_all(&mut c).await? {
                    fts_pages.extend(r.try_get::<Vec<u8>, _>(0)?);
                }
            }
            Ok(IndexRows { docs, fts_pages })
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// With encryption on, the index holds tokens (letters `a`..`p`), no canary: SQLite in FTS5 only,
/// PostgreSQL in tsvectors, or as text the documents a tsvector cannot hold whole. In clear, the canary is there (so the
/// check can fail).
fn check_index(kind: StoreKind, encrypted: bool, rows: &IndexRows, canary: &str, n: usize) -> anyhow::Result<()> {
    ensure!(rows.docs.len() == n, "{kind:?}: every message is indexed: {}", rows.docs.len());
    let all: String = rows.docs.iter().flat_map(|(b, t)| [b.as_str(), t.as_str()]).collect();
    let folded = canary.to_lowercase();
    if !encrypted {
        ensure!(all.contains(&folded), "{kind:?}: in clear the index holds the folded text");
        return Ok(());
    }
    for form in [canary, folded.as_str()] {
        ensure!(!all.contains(form), "{kind:?}: {form:?} is in search_docs");
        ensure!(!contains(&rows.fts_pages, form), "{kind:?}: {form:?} is in the FTS5 index");
    }
    for (body, tokens) in &rows.docs {
        ensure!(body.chars().all(|c| c == ' ' || ('a'..='p').contains(&c)), "{kind:?}: a body of tokens only");
        let tokens_ok = tokens.chars().all(|c| matches!(c, 'a'..='p' | ' ' | '\'' | ':' | ',') || c.is_ascii_digit());
        ensure!(tokens_ok, "{kind:?}: a tsvector of tokens only");
    }
    if kind == StoreKind::Sqlite {
        ensure!(rows.docs.iter().all(|(b, _)| b.is_empty()), "SQLite: the documents are in search_blind only");
    }
    if kind == StoreKind::Postgres {
        let as_text = rows.docs.iter().filter(|(b, t)| !b.is_empty() && t.is_empty()).count();
        let as_tsvector = rows.docs.iter().filter(|(b, t)| b.is_empty() && !t.is_empty()).count();
        ensure!((as_text, as_tsvector) == (2, n - 2), "{kind:?}: the long and the repetitive message as text");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_search_the_blind_index_as_the_clear_one() {
    let keys = tempfile::tempdir().expect("dir");
    let key = keys.path().join("kek");
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).expect("random");
    std::fs::write(&key, k).expect("key file");
    let canary = format!("Canary{}", unique("s").replace('_', ""));
    let texts = corpus(&canary);
    let runs = [
        (StoreKind::Sqlite, false),
        (StoreKind::Sqlite, true),
        (StoreKind::Postgres, false),
        (StoreKind::Postgres, true),
    ];
    let mut answers = Vec::new();
    for (kind, encrypted) in runs {
        let key = encrypted.then(|| key.clone());
        let tweak = move |c: &mut confab_server::config::Config| {
            c.store.encryption_key_file = key;
            c.limits.max_message_text_bytes = MAX_TEXT;
        };
        let db = match kind {
            StoreKind::Postgres => Some(TestDatabase::create().await.expect("database")),
            StoreKind::Sqlite => None,
        };
        let s = match &db {
            Some(db) => TestServer::start_on(&db.url, tweak).await,
            None => TestServer::start_with(kind, tweak).await,
        }
        .expect("start");
        let a = new_user(&s, Transport::WebSocket, "seA").await.expect("user");
        let conv = call!(a.client, CreateConversation, group("blind", &[])).expect("group").conversation_id;
        let mut ids = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let r = call!(a.client, SendMessage, send(conv, &unique(&format!("se{i}")), t)).expect("send");
            ids.push(r.message_id);
        }
        answers.push(run_queries(&a, conv, &ids).await.unwrap_or_else(|e| panic!("{kind:?} {encrypted}: {e:#}")));
        let rows = index_rows(kind, db.as_ref(), &s).await.expect("index rows");
        check_index(kind, encrypted, &rows, &canary, texts.len()).expect("the index");
        s.stop().await.expect("stop");
    }
    for (qi, q) in QUERIES.iter().enumerate() {
        let m = Query::parse(q).expect("parses").matching.expect("words");
        let expected: Vec<usize> = (0..texts.len()).filter(|&i| m.matches(&Folded::new(&texts[i]).text)).collect();
        for (o, order) in ["newest", "relevance"].iter().enumerate() {
            let at = qi * 2 + o;
            let mut found: Vec<usize> = answers[0][at].iter().map(|h| h.0).collect();
            found.sort_unstable();
            assert_eq!(found, expected, "SQLite in clear, {q:?} {order}");
            for (run, (kind, encrypted)) in runs.iter().enumerate().skip(1) {
                assert_eq!(answers[run][at], answers[0][at], "{kind:?} encrypted {encrypted}, {q:?} {order}");
            }
        }
    }
    // `deploy` inside a longer word (0, 11) counts for less than the whole word (1, 5, 7).
    let deploy = QUERIES.iter().position(|q| *q == "deploy").expect("deploy") * 2;
    let order = |at: usize| answers[0][at].iter().map(|h| h.0).collect::<Vec<_>>();
    assert_eq!(order(deploy), [11, 7, 5, 1, 0], "newest first");
    assert_eq!(order(deploy + 1), [7, 5, 1, 11, 0], "whole words first, then newest");
}
