//! `TestServer`: a real server in-process on port 0 (WebSocket and QUIC), with a fresh database
//! per test on either store, or one node of a [`crate::cluster::TestCluster`] on the cluster's
//! database. Listeners are bound before the server runs, so tests never sleep waiting for
//! readiness.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use confab_protocol::client::{Client, ConnectOptions, Events, RawConnection, ServerUrl, Trust};
use confab_server::store::Store;
use confab_server::{Config, Listeners, Server, StartError};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::inbox::CodeInbox;
use crate::pg::TestDatabase;
use confab_server::config::{CodeSenderKind, RateLimit, RateLimits, Secret};

/// Which store a test server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// Which transport a test client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Quic,
}

/// A running in-process server.
#[derive(Debug)]
pub struct TestServer {
    pub ws_addr: SocketAddr,
    pub quic_addr: SocketAddr,
    pub cert: CertificateDer<'static>,
    pub store_kind: StoreKind,
    store: Arc<dyn Store>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), StartError>>>,
    /// The database this server made for itself, dropped when it stops (None on SQLite and for
    /// cluster nodes, whose database the cluster owns).
    db: Option<TestDatabase>,
    /// The PostgreSQL database it runs on, owned or shared.
    db_url: Option<String>,
    /// Receives the one-time codes the server sends (its webhook sender points here).
    pub inbox: Arc<CodeInbox>,
    /// The media service, to run a collector pass now (docs/operations.md "Media").
    pub media: confab_server::media::Media,
    /// The re-encryption job (encryption at rest), to run a pass now.
    pub reencryption: confab_server::keys::Reencryption,
    data_dir: tempfile::TempDir,
}

/// Installs a test log subscriber once (RUST_LOG controls it; quiet by default).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// The configuration for conformance runs: the rate limits that cases check (login attempts per
/// account, code requests per phone number) at their documented defaults; the others stay open.
pub fn conformance_config(config: &mut Config) {
    let defaults = RateLimits::default();
    config.auth.rate_limits.login_per_account = defaults.login_per_account;
    config.auth.rate_limits.code_request_per_destination = defaults.code_request_per_destination;
}

/// What the nodes of a [`crate::cluster::TestCluster`] share instead of making their own: the
/// PostgreSQL database and the inbox their one-time codes go to.
#[derive(Clone, Debug)]
pub(crate) struct SharedNode {
    pub database_url: String,
    pub inbox: Arc<CodeInbox>,
}

impl TestServer {
    pub async fn start(store: StoreKind) -> anyhow::Result<Self> {
        Self::start_with(store, |_| {}).await
    }

    /// Starts a server after `tweak` adjusts its configuration.
    pub async fn start_with(store: StoreKind, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        Self::start_inner(store, None, tweak).await
    }

    /// Starts one node of a cluster on the cluster's database and code inbox; `tweak` sets the
    /// rest (its NATS URL, node id, shared keys). Stopping it leaves the database alone.
    pub(crate) async fn start_node(shared: &SharedNode, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        Self::start_inner(StoreKind::Postgres, Some(shared), tweak).await
    }

    /// Starts a server on the PostgreSQL database at `database_url`, which other servers may share
    /// (like the nodes of a cluster, without NATS), after `tweak`, with a code inbox of its own.
    /// The caller owns the database (e.g. a [`TestDatabase`]) and drops it after the servers stop.
    pub async fn start_on(database_url: &str, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let shared = SharedNode { database_url: database_url.to_string(), inbox: Arc::new(CodeInbox::start().await?) };
        Self::start_inner(StoreKind::Postgres, Some(&shared), tweak).await
    }

    async fn start_inner(
        store: StoreKind,
        shared: Option<&SharedNode>,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        init_logging();
        let data_dir = tempfile::tempdir()?;
        let mut config = Config {
            ws_listen: "127.0.0.1:0".parse()?,
            quic_listen: "127.0.0.1:0".parse()?,
            data_dir: data_dir.path().to_path_buf(),
            ..Config::default()
        };
        config.shutdown_timeout = std::time::Duration::from_secs(5);
        let inbox = match shared {
            Some(n) => n.inbox.clone(),
            None => Arc::new(CodeInbox::start().await?),
        };
        config.auth.code_sender = CodeSenderKind::Webhook;
        config.auth.webhook_url = Some(inbox.url());
        config.auth.webhook_secret = inbox.secret.clone().map(Secret::new);
        // Tests share one IP and open many accounts: limits stay out of the way unless a test sets them.
        let open = RateLimit::new(100_000, std::time::Duration::from_millis(1));
        config.auth.rate_limits = RateLimits {
            login_per_account: open,
            login_per_ip: open,
            code_request_per_destination: open,
            code_request_per_ip: open,
            code_verify_per_ip: open,
            register_per_ip: open,
        };
        let (db, db_url) = match (store, shared) {
            (_, Some(n)) => (None, Some(n.database_url.clone())),
            (StoreKind::Sqlite, None) => (None, None),
            (StoreKind::Postgres, None) => {
                let db = TestDatabase::create().await?;
                let url = db.url.clone();
                (Some(db), Some(url))
            }
        };
        if let Some(url) = &db_url {
            config.database_url = Some(confab_server::config::DatabaseUrl::new(url.clone()));
        }
        tweak(&mut config);
        let listeners = Listeners::bind(&config).await?;
        let ws_addr = listeners.ws_addr()?;
        let quic_addr = listeners.quic_addr()?;
        let server = Server::build(config).await.context("building server")?;
        let cert = server.certificate();
        let store_handle = server.store();
        let media = server.media();
        let reencryption = server.reencryption();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(listeners, async move {
            let _ = rx.await;
        }));
        Ok(Self {
            ws_addr,
            quic_addr,
            cert,
            store_kind: store,
            store: store_handle,
            shutdown: Some(tx),
            handle: Some(handle),
            db,
            db_url,
            inbox,
            media,
            reencryption,
            data_dir,
        })
    }

    /// Runs `sql` (one statement) directly on the server's database, beside the server: for tests
    /// that must make the database itself refuse something (e.g. a trigger), whatever the store.
    pub async fn execute_sql(&self, sql: &'static str) -> anyhow::Result<()> {
        use sqlx::Connection as _;
        match &self.db_url {
            Some(url) => {
                let mut c = sqlx::PgConnection::connect(url).await?;
                sqlx::raw_sql(sql).execute(&mut c).await?;
            }
            None => {
                let url = format!("sqlite://{}", self.data_dir.path().join("confab.db").display());
                let mut c = sqlx::SqliteConnection::connect(&url).await?;
                sqlx::raw_sql(sql).execute(&mut c).await?;
            }
        }
        Ok(())
    }

    /// The server's URL for a transport.
    pub fn url(&self, t: Transport) -> String {
        match t {
            Transport::WebSocket => format!("ws://{}/v1/ws", self.ws_addr),
            Transport::Quic => format!("quic://{}", self.quic_addr),
        }
    }

    /// Trust that pins this server's certificate.
    pub fn trust(&self) -> Trust {
        Trust::Pinned(self.cert.clone())
    }

    /// A conformance target for this server.
    pub fn target(&self, t: Transport) -> crate::cases::Target {
        crate::cases::Target::new(self.url(t), self.trust(), Some(self.inbox.clone()))
    }

    /// Client options that trust this server.
    pub fn options(&self) -> ConnectOptions {
        let mut o = ConnectOptions { client_name: "confab-tests".into(), ..Default::default() };
        o.transport.trust = self.trust();
        o
    }

    pub async fn connect(&self, t: Transport) -> anyhow::Result<(Client, Events)> {
        Ok(Client::connect(&self.url(t), self.options()).await?)
    }

    /// A raw, un-handshaken connection.
    pub async fn raw(&self, t: Transport) -> anyhow::Result<RawConnection> {
        let url = ServerUrl::parse(&self.url(t))?;
        Ok(RawConnection::connect(&url, &self.options().transport).await?)
    }

    /// The server's data directory (generated keys live here).
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// The server's store handle.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Makes `user` a server administrator as `confab-server admin grant` does (docs/protocol.md
    /// §26), recorded in the audit log with the command line's address.
    pub async fn grant_server_admin(&self, user: u64) -> anyhow::Result<()> {
        use confab_server::store::{AuditAction, NewAudit, UserId};
        let entry = NewAudit {
            target_user: Some(UserId(user as i64)),
            client_addr: "cli".into(),
            ..NewAudit::new(AuditAction::AdminGranted, confab_protocol::frames::now_ms() as i64)
        };
        anyhow::ensure!(self.store().set_server_admin(UserId(user as i64), true, &entry).await?, "not granted");
        Ok(())
    }

    /// A minimal HTTP/1.1 GET on the WebSocket port: (status, body).
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        self.http_request(&format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")).await
    }

    /// GET `path` from source address `source` (loopback has all of 127.0.0.0/8), for tests
    /// where 127.0.0.1 is at its connection cap.
    pub async fn http_get_from(&self, source: std::net::IpAddr, path: &str) -> anyhow::Result<(u16, String)> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        self.http_exchange(Some(source), &request).await
    }

    /// Sends a raw HTTP request and reads the whole response: (status, body).
    pub async fn http_request(&self, request: &str) -> anyhow::Result<(u16, String)> {
        self.http_exchange(None, request).await
    }

    async fn http_exchange(&self, source: Option<std::net::IpAddr>, request: &str) -> anyhow::Result<(u16, String)> {
        let mut s = match source {
            None => tokio::net::TcpStream::connect(self.ws_addr).await?,
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(std::net::SocketAddr::new(ip, 0))?;
                socket.connect(self.ws_addr).await?
            }
        };
        s.write_all(request.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("no status line in {text:?}"))?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Ok((status, body))
    }

    /// Triggers graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down gracefully, waits for `run` to return, and drops the test database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        let result = match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        };
        if let Some(db) = self.db.take() {
            db.drop_db().await?;
        }
        if let Err(e) = result {
            bail!("server run failed: {e}");
        }
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
        if let Some(db) = self.db.take() {
            // Best effort when a test failed before stop().
            db.drop_blocking();
        }
    }
}

/// A named integration test that runs against a shared server on one transport.
pub type TestFn =
    for<'a> fn(&'a TestServer, Transport) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// Runs every test against one server on `store` and `transport`, then reports all failures at once.
pub async fn run_named(store: StoreKind, transport: Transport, tests: &[(&str, TestFn)], tweak: fn(&mut Config)) {
    let server = TestServer::start_with(store, tweak).await.expect("start server");
    let mut failures = Vec::new();
    for (name, test) in tests {
        if let Err(e) = test(&server, transport).await {
            failures.push(format!("{name}: {e:#}"));
        }
    }
    server.stop().await.expect("stop");
    assert!(
        failures.is_empty(),
        "{} of {} failed on {store:?}/{transport:?}:\n{}",
        failures.len(),
        tests.len(),
        failures.join("\n")
    );
}

/// The list of named tests for [`run_named`]: `named_tests![a, b]`.
#[macro_export]
macro_rules! named_tests {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), (|s, t| Box::pin($name(s, t))) as $crate::harness::TestFn)),*]
    };
}

/// Four `#[tokio::test]`s running `$tests` on WebSocket and QUIC, SQLite and PostgreSQL.
#[macro_export]
macro_rules! matrix_tests {
    ($tests:expr) => {
        $crate::matrix_tests!($tests, |_| {});
    };
    ($tests:expr, $tweak:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn websocket_sqlite() {
            use $crate::harness::{StoreKind, Transport, run_named};
            run_named(StoreKind::Sqlite, Transport::WebSocket, $tests, $tweak).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn quic_sqlite() {
            use $crate::harness::{StoreKind, Transport, run_named};
            run_named(StoreKind::Sqlite, Transport::Quic, $tests, $tweak).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn websocket_postgres() {
            use $crate::harness::{StoreKind, Transport, run_named};
            run_named(StoreKind::Postgres, Transport::WebSocket, $tests, $tweak).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn quic_postgres() {
            use $crate::harness::{StoreKind, Transport, run_named};
            run_named(StoreKind::Postgres, Transport::Quic, $tests, $tweak).await;
        }
    };
}
