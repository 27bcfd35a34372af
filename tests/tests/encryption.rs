//! Encryption at rest (docs/operations.md "Encryption at rest") on both stores: canaries from
//! messages, edits, file names and file bytes never reach the database files, a `pg_dump` or the
//! blob store; a ciphertext moved to another row or altered is an error, never other text; after
//! `rotate-kek`, `rotate-data` and the re-encryption job everything still reads, searches and
//! downloads, and nothing is left under the old keys; turning encryption on seals what was
//! stored before; and a server refuses to start without the key (or with another one).

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use base64::Engine as _;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::media::{download, spec, upload};
use confab_conformance::pg::TestDatabase;
use confab_conformance::util::{User, err_code, group, new_user, send, unique};
use confab_protocol::v1;
use confab_protocol::v1::MediaPurpose;
use sqlx::{Connection as _, Row as _};
use tokio_util::sync::CancellationToken;

/// A key file of 32 random bytes (`base64`: written base64-encoded, as operators may).
fn key_file(dir: &Path, name: &str, base64: bool) -> anyhow::Result<PathBuf> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let path = dir.join(name);
    if base64 {
        std::fs::write(&path, format!("{}\n", base64::engine::general_purpose::STANDARD.encode(k)))?;
    } else {
        std::fs::write(&path, k)?;
    }
    Ok(path)
}

/// Where a test's server keeps its data: a directory (SQLite file, media) and, for PostgreSQL, a
/// database that outlives restarts.
struct Place {
    kind: StoreKind,
    dir: tempfile::TempDir,
    db: Option<TestDatabase>,
}

impl Place {
    async fn new(kind: StoreKind) -> anyhow::Result<Self> {
        let db = match kind {
            StoreKind::Postgres => Some(TestDatabase::create().await?),
            StoreKind::Sqlite => None,
        };
        Ok(Self { kind, dir: tempfile::tempdir()?, db })
    }

    async fn start(&self, key: Option<&Path>, previous: &[PathBuf]) -> anyhow::Result<TestServer> {
        self.start_with(key, previous, true).await
    }

    /// `background`: whether the server runs the re-encryption job on its own.
    async fn start_with(
        &self,
        key: Option<&Path>,
        previous: &[PathBuf],
        background: bool,
    ) -> anyhow::Result<TestServer> {
        let (dir, key, previous) = (self.dir.path().join("data"), key.map(Path::to_path_buf), previous.to_vec());
        let tweak = move |c: &mut confab_server::config::Config| {
            c.data_dir = dir;
            c.store.encryption_key_file = key;
            c.store.encryption_previous_key_files = previous;
            c.store.background_reencryption = background;
        };
        match &self.db {
            Some(db) => TestServer::start_on(&db.url, tweak).await,
            None => TestServer::start_with(self.kind, tweak).await,
        }
    }

    fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("data").join("confab.db")
    }

    /// Runs one statement on the database, beside the server.
    async fn sql(&self, q: &str) -> anyhow::Result<()> {
        match &self.db {
            Some(db) => {
                let mut c = sqlx::PgConnection::connect(&db.url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(q.to_string())).execute(&mut c).await?;
            }
            None => {
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite:{}", self.sqlite_path().display())).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(q.to_string())).execute(&mut c).await?;
            }
        }
        Ok(())
    }

    /// The first column of every row of `q`, as text.
    async fn texts(&self, q: &str) -> anyhow::Result<Vec<String>> {
        Ok(match &self.db {
            Some(db) => {
                let mut c = sqlx::PgConnection::connect(&db.url).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(q.to_string())).fetch_all(&mut c).await?;
                rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?
            }
            None => {
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite:{}", self.sqlite_path().display())).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(q.to_string())).fetch_all(&mut c).await?;
                rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?
            }
        })
    }

    /// Every byte the database keeps where an operator or a thief could read it: the SQLite
    /// database file and its WAL, or a `pg_dump` of the PostgreSQL database.
    async fn database_bytes(&self) -> anyhow::Result<Vec<u8>> {
        match &self.db {
            Some(db) => {
                let (bin, url) = (pg_dump()?, db.url.clone());
                let out = tokio::task::spawn_blocking(move || {
                    std::process::Command::new(bin).arg("--no-owner").arg(url).output()
                })
                .await??;
                ensure!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
                Ok(out.stdout)
            }
            None => {
                let mut all = Vec::new();
                for suffix in ["", "-wal"] {
                    let p = PathBuf::from(format!("{}{suffix}", self.sqlite_path().display()));
                    if p.exists() {
                        all.extend(std::fs::read(&p)?);
                    }
                }
                Ok(all)
            }
        }
    }

    /// Every byte in the blob store (the media directory).
    fn blob_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let mut all = Vec::new();
        let mut dirs = vec![self.dir.path().join("data").join("media")];
        while let Some(d) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries {
                let p = e?.path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    all.extend(std::fs::read(&p)?);
                }
            }
        }
        Ok(all)
    }
}

/// `pg_dump` beside the server binaries this machine's PostgreSQL runs from.
fn pg_dump() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("CONFAB_TEST_PG_DUMP") {
        return Ok(PathBuf::from(p));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join("pg_dump")))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    if let Some(p) = found.pop() {
        return Ok(p);
    }
    Ok(PathBuf::from("pg_dump"))
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// What a run left that the canaries must not be found in.
async fn assert_no_canary(p: &Place, canaries: &[String]) -> anyhow::Result<()> {
    let db = p.database_bytes().await?;
    let blobs = p.blob_bytes()?;
    ensure!(!db.is_empty(), "the database was read");
    for c in canaries {
        for form in [c.clone(), c.to_lowercase()] {
            ensure!(!contains(&db, &form), "{form:?} is in the database ({:?})", p.kind);
            ensure!(!contains(&blobs, &form), "{form:?} is in the blob store ({:?})", p.kind);
        }
    }
    Ok(())
}

/// Content written by [`write_content`], to check after.
struct Content {
    conv: u64,
    texts: Vec<String>,
    edited: String,
    file_name: String,
    file: Vec<u8>,
    media_id: String,
    canaries: Vec<String>,
}

/// Sends, edits, uploads a file of several segments with a canary inside, attaches it, and
/// searches; every canary is a word of its own.
async fn write_content(a: &User, b: &User) -> anyhow::Result<Content> {
    let tag = unique("k").replace('-', "");
    let (msg, edit, name, bytes) = (
        format!("CanaryMsg{tag}"),
        format!("CanaryEdit{tag}"),
        format!("CanaryName{tag}"),
        format!("CanaryBytes{tag}"),
    );
    let conv = call!(a.client, CreateConversation, group("encrypted", &[b.id]))?.conversation_id;
    let mut texts = Vec::new();
    let mut first = 0;
    for i in 0..5 {
        let t = format!("{msg} number {i} élodie");
        let r = call!(a.client, SendMessage, send(conv, &unique("em"), &t))?;
        if i == 0 {
            first = r.message_id;
        }
        texts.push(t);
    }
    let edited = format!("{edit} after the edit");
    call!(a.client, EditMessage, v1::EditMessage { conversation_id: conv, message_id: first, text: edited.clone() })?;
    texts[0] = edited.clone();
    let mut file = confab_conformance::media::random_bytes(200_000);
    for at in [0, 70_000, 199_000 - bytes.len()] {
        file[at..at + bytes.len()].copy_from_slice(bytes.as_bytes());
    }
    let file_name = format!("{name}.bin");
    let info =
        upload(&a.client, &file, &spec("application/octet-stream", MediaPurpose::Attachment, &file_name)).await?;
    let at = v1::Attachment { media_id: info.media_id.clone(), ..Default::default() };
    let with_file = format!("{msg} with a file");
    call!(a.client, SendMessage, v1::SendMessage { attachments: vec![at], ..send(conv, &unique("em"), &with_file) })?;
    texts.push(with_file);
    Ok(Content {
        conv,
        texts,
        edited,
        file_name,
        file,
        media_id: info.media_id,
        canaries: vec![msg, edit, name, bytes],
    })
}

/// Everything in `c` reads back as written: history, the log (edits), the attachment's name and
/// bytes, and search by a canary word.
async fn assert_readable(u: &User, c: &Content) -> anyhow::Result<()> {
    let h = call!(u.client, GetHistory, v1::GetHistory { conversation_id: c.conv, limit: 100, ..Default::default() })?;
    let got: Vec<&str> = h.messages.iter().map(|m| m.text.as_str()).collect();
    for t in &c.texts {
        ensure!(got.contains(&t.as_str()), "{t:?} reads back: {got:?}");
    }
    let names: Vec<&str> = h.messages.iter().flat_map(|m| m.attachments.iter().map(|a| a.file_name.as_str())).collect();
    ensure!(names == [c.file_name.as_str()], "the attachment's name: {names:?}");
    let cursor = v1::SyncCursor { conversation_id: c.conv, seq: 0 };
    let sync = call!(
        u.client,
        Sync,
        v1::Sync { conversations: vec![cursor], limit_per_conversation: 1000, ..Default::default() }
    )?;
    ensure!(format!("{sync:?}").contains(&c.edited), "the log holds the edit");
    let bytes = download(&u.client, &c.media_id, "", 0).await?;
    ensure!(bytes == c.file, "the file downloads whole ({} bytes of {})", bytes.len(), c.file.len());
    let part = download(&u.client, &c.media_id, "", 69_990).await?;
    ensure!(part[..] == c.file[69_990..], "a download from an offset inside a segment");
    let word = &c.canaries[0];
    let hits = u
        .client
        .search_all(
            v1::SearchMessages {
                query: word.clone(),
                limit: 100,
                conversation_ids: vec![c.conv],
                ..Default::default()
            },
            100,
        )
        .await?;
    ensure!(hits.len() == c.texts.len() - 1, "search finds every message but the edited one: {}", hits.len());
    let edit_hits = u
        .client
        .search_all(
            v1::SearchMessages {
                query: c.canaries[1].to_lowercase(),
                conversation_ids: vec![c.conv],
                ..Default::default()
            },
            100,
        )
        .await?;
    ensure!(edit_hits.len() == 1, "search finds the edit: {}", edit_hits.len());
    let accent = u
        .client
        .search_all(
            v1::SearchMessages {
                query: "\"NUMBER 3 Élodie\"".into(),
                conversation_ids: vec![c.conv],
                ..Default::default()
            },
            100,
        )
        .await?;
    ensure!(accent.len() == 1, "folding and phrases still work: {}", accent.len());
    Ok(())
}

async fn canaries_never_reach_disk(kind: StoreKind) -> anyhow::Result<()> {
    let p = Place::new(kind).await?;
    let key = key_file(p.dir.path(), "kek", true)?;
    let s = p.start(Some(&key), &[]).await?;
    let a = new_user(&s, Transport::WebSocket, "encA").await?;
    let b = new_user(&s, Transport::Quic, "encB").await?;
    let c = write_content(&a, &b).await?;
    assert_readable(&b, &c).await?;
    assert_readable(&a, &c).await?;
    s.stop().await?;
    assert_no_canary(&p, &c.canaries).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_canaries_never_reach_disk() {
    canaries_never_reach_disk(StoreKind::Sqlite).await.expect("no canary on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_canaries_never_reach_disk() {
    canaries_never_reach_disk(StoreKind::Postgres).await.expect("no canary on disk");
}

/// Flips one base64 character of a sealed text, keeping it base64.
fn altered(sealed: &str) -> String {
    let mut chars: Vec<char> = sealed.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

async fn tampering_is_an_error(kind: StoreKind) -> anyhow::Result<()> {
    let p = Place::new(kind).await?;
    let key = key_file(p.dir.path(), "kek", false)?;
    let s = p.start(Some(&key), &[]).await?;
    let a = new_user(&s, Transport::WebSocket, "tamA").await?;
    let b = new_user(&s, Transport::WebSocket, "tamB").await?;
    let c = write_content(&a, &b).await?;
    let history = v1::GetHistory { conversation_id: c.conv, limit: 100, ..Default::default() };
    call!(b.client, GetHistory, history)?;
    let rows = p.texts(&format!("SELECT text FROM messages WHERE conversation_id = {} ORDER BY seq", c.conv)).await?;
    ensure!(rows.len() >= 2 && rows.iter().all(|t| t.starts_with('\u{1}')), "stored sealed: {rows:?}");
    let set = |t: &str, seq_rank: usize| {
        format!(
            "UPDATE messages SET text = '{t}' WHERE id = (SELECT id FROM messages WHERE conversation_id = {} ORDER BY seq LIMIT 1 OFFSET {seq_rank})",
            c.conv
        )
    };
    // Swapped between two rows: neither opens.
    p.sql(&set(&rows[1], 0)).await?;
    ensure!(err_code(call!(b.client, GetHistory, history))? == v1::ErrorCode::Internal, "a moved ciphertext");
    // One character altered: it does not open either.
    p.sql(&set(&altered(&rows[0]), 0)).await?;
    ensure!(err_code(call!(b.client, GetHistory, history))? == v1::ErrorCode::Internal, "an altered ciphertext");
    // Restored: readable again.
    p.sql(&set(&rows[0], 0)).await?;
    let h = call!(b.client, GetHistory, history)?;
    ensure!(h.messages.iter().any(|m| m.text == c.edited), "restored");
    // The same for a log entry and an attachment's name.
    let log = p
        .texts(&format!(
            "SELECT text FROM conversation_events WHERE conversation_id = {} AND kind = 2 ORDER BY seq",
            c.conv
        ))
        .await?;
    let seqs = p
        .texts(&format!(
            "SELECT CAST(seq AS TEXT) FROM conversation_events WHERE conversation_id = {} AND kind = 2 ORDER BY seq",
            c.conv
        ))
        .await?;
    let set_log = |t: &str| {
        format!("UPDATE conversation_events SET text = '{t}' WHERE conversation_id = {} AND seq = {}", c.conv, seqs[0])
    };
    p.sql(&set_log(&log[1])).await?;
    let cursor = v1::SyncCursor { conversation_id: c.conv, seq: 0 };
    let sync = v1::Sync { conversations: vec![cursor], limit_per_conversation: 1000, ..Default::default() };
    ensure!(err_code(call!(b.client, Sync, sync.clone()))? == v1::ErrorCode::Internal, "a moved log text");
    p.sql(&set_log(&log[0])).await?;
    call!(b.client, Sync, sync)?;
    let names = p.texts("SELECT file_name FROM message_attachments").await?;
    p.sql(&format!("UPDATE message_attachments SET file_name = '{}'", altered(&names[0]))).await?;
    ensure!(err_code(call!(b.client, GetHistory, history))? == v1::ErrorCode::Internal, "an altered file name");
    p.sql(&format!("UPDATE message_attachments SET file_name = '{}'", names[0])).await?;
    call!(b.client, GetHistory, history)?;
    s.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tampering_is_an_error() {
    tampering_is_an_error(StoreKind::Sqlite).await.expect("tampering");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tampering_is_an_error() {
    tampering_is_an_error(StoreKind::Postgres).await.expect("tampering");
}

/// The data key each stored sealed value names, with the generation of that key.
async fn key_generations(p: &Place) -> anyhow::Result<Vec<(String, i64)>> {
    let keys = p.texts("SELECT CAST(id AS TEXT) || ':' || CAST(generation AS TEXT) FROM data_keys").await?;
    let generation_of = |id: i64| -> i64 {
        keys.iter()
            .find_map(|k| {
                let (i, g) = k.split_once(':')?;
                (i.parse::<i64>().ok()? == id).then(|| g.parse().ok())?
            })
            .unwrap_or(-1)
    };
    let mut out = Vec::new();
    for (what, q) in [
        ("message", "SELECT text FROM messages WHERE text <> ''"),
        ("log", "SELECT text FROM conversation_events WHERE kind IN (2, 3) AND text <> ''"),
        ("attachment", "SELECT file_name FROM message_attachments WHERE file_name <> ''"),
        ("media", "SELECT file_name FROM media WHERE file_name <> ''"),
        ("upload", "SELECT file_name FROM uploads WHERE file_name <> ''"),
    ] {
        for t in p.texts(q).await? {
            let sealed = t.strip_prefix('\u{1}').context(format!("{what} sealed: {t:?}"))?;
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(sealed)?;
            let id = i64::from_be_bytes(bytes[..8].try_into()?);
            out.push((what.to_string(), generation_of(id)));
        }
    }
    for k in p.texts("SELECT CAST(key_id AS TEXT) FROM blobs").await? {
        out.push(("blob".into(), generation_of(k.parse()?)));
    }
    Ok(out)
}

/// `name` signed in again on a new connection.
async fn login(s: &TestServer, name: &str) -> anyhow::Result<User> {
    let (client, events) = s.connect(Transport::WebSocket).await?;
    let auth = client.login(name, confab_conformance::util::PASSWORD, "again").await?;
    let id = auth.me.as_ref().context("me")?.user_id;
    Ok(User { client, events, id, name: name.to_string(), auth })
}

async fn rotation_keeps_everything_readable(kind: StoreKind) -> anyhow::Result<()> {
    let p = Place::new(kind).await?;
    let kek1 = key_file(p.dir.path(), "kek1", false)?;
    let kek2 = key_file(p.dir.path(), "kek2", true)?;
    let s = p.start(Some(&kek1), &[]).await?;
    let a = new_user(&s, Transport::WebSocket, "rotA").await?;
    let b = new_user(&s, Transport::WebSocket, "rotB").await?;
    let before = write_content(&a, &b).await?;
    let (a_name, b_name) = (a.name.clone(), b.name.clone());
    drop((a, b));
    s.stop().await?;

    // rotate-kek: the new key current, the old one to unwrap until everything is re-wrapped.
    // (The job in the foreground below, so the test sees both generations before it.)
    let s = p.start_with(Some(&kek2), std::slice::from_ref(&kek1), false).await?;
    let rewrapped = s.store().rewrap_keys().await?;
    ensure!(rewrapped >= 3, "conversation, media and search keys re-wrapped: {rewrapped}");
    let status = s.store().key_status().await?;
    let kek2_id = s.store().sealer().current_kek_id().context("on")?;
    ensure!(status.keys.iter().all(|k| k.kek_id == kek2_id), "every key under the new KEK: {:?}", status.keys);
    // rotate-data: new contents under new keys; the job re-seals the old ones.
    let generation = s.store().rotate_data_keys(confab_protocol::frames::now_ms() as i64).await?;
    ensure!(generation == 2, "generation {generation}");
    let a = login(&s, &a_name).await?;
    let b = login(&s, &b_name).await?;
    let after = write_content(&a, &b).await?;
    let mixed = key_generations(&p).await?;
    ensure!(
        mixed.iter().any(|(_, g)| *g == 1) && mixed.iter().any(|(_, g)| *g == 2),
        "both generations in use: {mixed:?}"
    );
    let done = s.reencryption.run_once(&CancellationToken::new(), None, |_| {}).await?;
    ensure!(done.iter().all(|p| p.finished), "the job finished: {done:?}");
    ensure!(done.iter().map(|p| p.rewritten).sum::<u64>() > 0, "it re-sealed something: {done:?}");
    let left = key_generations(&p).await?;
    ensure!(left.iter().all(|(_, g)| *g == 2), "nothing under the old data keys: {left:?}");
    for what in ["message", "log", "attachment", "media", "upload", "blob"] {
        ensure!(left.iter().any(|(w, _)| w == what), "{what} checked: {left:?}");
    }
    assert_readable(&b, &before).await?;
    assert_readable(&b, &after).await?;
    let status = s.store().key_status().await?;
    ensure!(status.plaintext.iter().all(|(_, n)| *n == 0), "{:?}", status.plaintext);
    ensure!(status.remaining.iter().all(|(_, n)| *n == 0), "{:?}", status.remaining);
    drop((a, b));
    s.stop().await?;
    let mut all = before.canaries.clone();
    all.extend(after.canaries.clone());
    assert_no_canary(&p, &all).await?;

    // The old KEK retired: the new one alone opens everything; the old one alone does not start.
    let s = p.start(Some(&kek2), &[]).await?;
    let b = login(&s, &b_name).await?;
    assert_readable(&b, &before).await?;
    drop(b);
    s.stop().await?;
    let e = p.start(Some(&kek1), &[]).await.err().context("the old KEK alone is refused")?;
    ensure!(format!("{e:#}").contains("not configured"), "{e:#}");
    let e = p.start(None, &[]).await.err().context("no key is refused")?;
    ensure!(format!("{e:#}").contains("encrypted at rest"), "{e:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rotation_keeps_everything_readable() {
    Box::pin(rotation_keeps_everything_readable(StoreKind::Sqlite)).await.expect("rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rotation_keeps_everything_readable() {
    Box::pin(rotation_keeps_everything_readable(StoreKind::Postgres)).await.expect("rotation");
}

/// A database written in clear, then started with a key: readable at once, sealed by the job,
/// and nothing in clear left on disk.
async fn turning_it_on_seals_what_is_there(kind: StoreKind) -> anyhow::Result<()> {
    let p = Place::new(kind).await?;
    let s = p.start(None, &[]).await?;
    let a = new_user(&s, Transport::WebSocket, "onA").await?;
    let b = new_user(&s, Transport::WebSocket, "onB").await?;
    let c = write_content(&a, &b).await?;
    assert_readable(&b, &c).await?;
    let clear = p.texts("SELECT text FROM messages WHERE text <> ''").await?;
    ensure!(clear.iter().any(|t| t.contains(&c.canaries[0])), "stored in clear before");
    let (a_name, b_name) = (a.name.clone(), b.name.clone());
    drop((a, b));
    s.stop().await?;

    let key = key_file(p.dir.path(), "kek", false)?;
    let s = p.start(Some(&key), &[]).await?;
    let b = login(&s, &b_name).await?;
    // Readable while (or before) the job runs: plaintext and sealed rows side by side.
    let h = call!(b.client, GetHistory, v1::GetHistory { conversation_id: c.conv, limit: 100, ..Default::default() })?;
    ensure!(h.messages.iter().any(|m| m.text == c.edited), "readable at once");
    let a = login(&s, &a_name).await?;
    call!(a.client, SendMessage, send(c.conv, &unique("on"), "written after turning it on"))?;
    s.reencryption.run_once(&CancellationToken::new(), None, |_| {}).await?;
    let status = s.store().key_status().await?;
    ensure!(status.state.is_some(), "on");
    ensure!(status.plaintext.iter().all(|(_, n)| *n == 0), "nothing left in clear: {:?}", status.plaintext);
    assert_readable(&b, &c).await?;
    drop((a, b));
    s.stop().await?;
    assert_no_canary(&p, &c.canaries).await?;
    let e = p.start(None, &[]).await.err().context("turning it off is refused")?;
    ensure!(format!("{e:#}").contains("cannot be turned off"), "{e:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_turning_it_on_seals_what_is_there() {
    Box::pin(turning_it_on_seals_what_is_there(StoreKind::Sqlite)).await.expect("turning it on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_turning_it_on_seals_what_is_there() {
    Box::pin(turning_it_on_seals_what_is_there(StoreKind::Postgres)).await.expect("turning it on");
}

/// The whole conformance suite on a server with encryption at rest on: no feature notices it.
async fn every_case_with_encryption(kind: StoreKind, transport: Transport) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = key_file(dir.path(), "kek", false)?;
    let server = TestServer::start_with(kind, move |c| {
        confab_conformance::harness::conformance_config(c);
        c.store.encryption_key_file = Some(key);
    })
    .await?;
    let run = confab_conformance::cases::run_every_case(&server.target(transport), false).await;
    server.stop().await?;
    ensure!(run.skipped.is_empty(), "cases would be skipped: {:?}", run.skipped);
    ensure!(run.ran >= 70, "only {} cases ran", run.ran);
    ensure!(
        run.failures.is_empty(),
        "{} of {} cases failed:\n{}",
        run.failures.len(),
        run.ran,
        run.failures.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_conformance_case_with_encryption() {
    every_case_with_encryption(StoreKind::Sqlite, Transport::Quic).await.expect("conformance, encrypted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_conformance_case_with_encryption() {
    every_case_with_encryption(StoreKind::Postgres, Transport::WebSocket).await.expect("conformance, encrypted");
}

/// Two nodes on one PostgreSQL database: when one starts with the key, the other (without it)
/// refuses writes within seconds, and what it wrote in clear meanwhile is sealed by the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_node_without_the_key_stops_writing_once_another_turns_it_on() {
    async fn run() -> anyhow::Result<()> {
        let db = TestDatabase::create().await?;
        let old = TestServer::start_on(&db.url, |_| {}).await?;
        let a = new_user(&old, Transport::WebSocket, "nkA").await?;
        let conv = call!(a.client, CreateConversation, group("two nodes", &[]))?.conversation_id;
        call!(a.client, SendMessage, send(conv, &unique("nk"), "before"))?;
        let dir = tempfile::tempdir()?;
        let key = key_file(dir.path(), "kek", false)?;
        let new = TestServer::start_on(&db.url, |c| c.store.encryption_key_file = Some(key)).await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let mut written_in_clear = 0;
        loop {
            match call!(a.client, SendMessage, send(conv, &unique("nk"), "CanaryWhileTurningOn")) {
                Ok(_) => written_in_clear += 1,
                Err(e) => {
                    // The writer takes it for the store failing: UNAVAILABLE (another node serves).
                    let code = err_code::<()>(Err(e))?;
                    ensure!(code == v1::ErrorCode::Unavailable, "refused as unavailable, not {code:?}");
                    break;
                }
            }
            ensure!(std::time::Instant::now() < deadline, "the node without the key kept writing");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        ensure!(written_in_clear > 0, "it wrote before it knew");
        let done = new.reencryption.run_once(&CancellationToken::new(), None, |_| {}).await?;
        ensure!(done.iter().all(|p| p.finished), "{done:?}");
        let status = new.store().key_status().await?;
        ensure!(status.plaintext.iter().all(|(_, n)| *n == 0), "nothing left in clear: {:?}", status.plaintext);
        let b = login(&new, &a.name).await?;
        let h =
            call!(b.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 100, ..Default::default() })?;
        ensure!(h.messages.len() == 1 + written_in_clear, "every message reads: {}", h.messages.len());
        drop((a, b));
        old.stop().await?;
        new.stop().await?;
        Ok(())
    }
    run().await.expect("two nodes");
}
