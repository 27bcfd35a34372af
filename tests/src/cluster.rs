//! `TestCluster`: several Confab nodes on one PostgreSQL test database, linked by one real
//! [`NatsServer`]. The nodes run in-process ([`TestServer`]s, node ids `node-0`, `node-1`, …) and
//! share what a real cluster shares: the database, the token signing key and code secret (a
//! token issued by one node signs in on another), one QUIC certificate (one trust for all nodes)
//! and the inbox their one-time codes go to. Out-of-process nodes for SIGKILL tests come from
//! [`TestCluster::spawn_process`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use confab_protocol::client::{Client, ConnectOptions, Events, Trust};
use confab_server::Config;
use rustls_pki_types::CertificateDer;

use crate::cases::Target;
use crate::harness::{SharedNode, TestServer, Transport, init_logging};
use crate::inbox::CodeInbox;
use crate::nats::NatsServer;
use crate::node_process::NodeProcess;
use crate::pg::TestDatabase;

/// Adjusts every node's configuration, after the cluster's own settings.
type Tweak = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// The key, secret and certificate files every node is pointed at.
#[derive(Debug)]
struct SharedFiles {
    dir: tempfile::TempDir,
    signing_key: PathBuf,
    auth_secret: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    cert_der: CertificateDer<'static>,
}

impl SharedFiles {
    /// Generates the pair of auth files and a self-signed certificate (localhost, 127.0.0.1, ::1)
    /// with the server's own generators, as each node would into its data dir.
    fn generate() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let signing_key = dir.path().join("jwt-ed25519.pem");
        let auth_secret = dir.path().join("auth-secret.key");
        confab_server::auth::tokens::load_or_generate_key(&signing_key)?;
        confab_server::auth::codes::load_or_generate_secret(&auth_secret)?;
        let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        let cert_der = confab_server::tls::load_or_generate(&config)?.leaf().clone();
        let (cert, key) = (dir.path().join("quic-cert.pem"), dir.path().join("quic-key.pem"));
        anyhow::ensure!(cert.exists() && key.exists(), "the generated certificate is not where expected");
        Ok(Self { dir, signing_key, auth_secret, cert, key, cert_der })
    }
}

/// One node's slot: its id and addresses outlive a stop, so a restart serves the same URLs.
#[derive(Debug)]
struct Node {
    id: String,
    server: Option<TestServer>,
    ws: std::net::SocketAddr,
    quic: std::net::SocketAddr,
}

/// N nodes, one database, one NATS server. Dropping it stops everything (best effort); call
/// [`TestCluster::stop`] to see errors.
pub struct TestCluster {
    nats: NatsServer,
    db: Option<TestDatabase>,
    shared: SharedNode,
    files: SharedFiles,
    nodes: Vec<Node>,
    tweak: Tweak,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster").field("nats", &self.nats).field("nodes", &self.nodes).finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Starts a NATS server, a fresh PostgreSQL database (`CONFAB_TEST_DATABASE_URL`) and `n`
    /// in-process nodes with the test defaults of [`TestServer`].
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        Self::start_with(n, |_| {}).await
    }

    /// As [`TestCluster::start`], with `tweak` applied to every node's configuration after the
    /// cluster's settings (at every start, restarts included).
    pub async fn start_with(n: usize, tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> anyhow::Result<Self> {
        init_logging();
        let nats = NatsServer::start().await?;
        let db = TestDatabase::create().await?;
        let shared = SharedNode { database_url: db.url.clone(), inbox: Arc::new(CodeInbox::start().await?) };
        let mut cluster = Self {
            nats,
            db: Some(db),
            shared,
            files: SharedFiles::generate()?,
            nodes: Vec::with_capacity(n),
            tweak: Arc::new(tweak),
        };
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        // One after the other: the first node migrates the database, the others find it done.
        for i in 0..n {
            cluster.nodes.push(Node { id: format!("node-{i}"), server: None, ws: any, quic: any });
            cluster.run_node(i).await.with_context(|| format!("starting node-{i}"))?;
        }
        Ok(cluster)
    }

    /// How many in-process nodes it has, running or stopped.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no in-process node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s id, `node-{i}`. Panics when `i` is out of range.
    pub fn node_id(&self, i: usize) -> &str {
        &self.nodes[i].id
    }

    /// Node `i` while it runs (None while stopped). Panics when `i` is out of range.
    pub fn node(&self, i: usize) -> Option<&TestServer> {
        self.nodes[i].server.as_ref()
    }

    /// Node `i`'s URL for a transport, the same across a stop and restart.
    pub fn url(&self, i: usize, t: Transport) -> String {
        let n = &self.nodes[i];
        match t {
            Transport::WebSocket => format!("ws://{}/v1/ws", n.ws),
            Transport::Quic => format!("quic://{}", n.quic),
        }
    }

    /// Every node's URL for a transport, in node order.
    pub fn urls(&self, t: Transport) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i, t)).collect()
    }

    /// Trust for every node: they all serve the cluster's one certificate.
    pub fn trust(&self) -> Trust {
        Trust::Pinned(self.files.cert_der.clone())
    }

    /// Client options that trust every node.
    pub fn options(&self) -> ConnectOptions {
        let mut o = ConnectOptions { client_name: "confab-tests".into(), ..Default::default() };
        o.transport.trust = self.trust();
        o
    }

    /// A client connected to node `i`.
    pub async fn connect(&self, i: usize, t: Transport) -> anyhow::Result<(Client, Events)> {
        Ok(Client::connect(&self.url(i, t), self.options()).await?)
    }

    /// A conformance target over every node: each connection a case opens goes to the next node,
    /// round robin.
    pub fn target(&self, t: Transport) -> anyhow::Result<Target> {
        Target::over_nodes(self.urls(t), self.trust(), Some(self.shared.inbox.clone()))
    }

    /// The inbox every node sends its one-time codes to.
    pub fn inbox(&self) -> &Arc<CodeInbox> {
        &self.shared.inbox
    }

    /// The NATS server, e.g. to stop it and start it again.
    pub fn nats(&mut self) -> &mut NatsServer {
        &mut self.nats
    }

    /// The shared database's URL.
    pub fn database_url(&self) -> &str {
        &self.shared.database_url
    }

    /// Stops node `i` gracefully (its clients see it go away) and waits until it has. Stopping a
    /// stopped node does nothing.
    pub async fn stop_node(&mut self, i: usize) -> anyhow::Result<()> {
        match self.nodes[i].server.take() {
            Some(s) => s.stop().await.with_context(|| format!("stopping {}", self.nodes[i].id)),
            None => Ok(()),
        }
    }

    /// Starts stopped node `i` again, with its id and on its addresses. Errors when it runs.
    pub async fn restart_node(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes[i].server.is_none(), "{} is running", self.nodes[i].id);
        self.run_node(i).await.with_context(|| format!("restarting {}", self.nodes[i].id))
    }

    async fn run_node(&mut self, i: usize) -> anyhow::Result<()> {
        // A stopped node's sockets close when its last connection task ends, which may be a
        // moment after it stopped: its addresses are tried again for up to 5 s.
        let mut tries = 0;
        loop {
            match self.try_run_node(i).await {
                Err(e) if tries < 100 && format!("{e:#}").contains("Address already in use") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_run_node(&mut self, i: usize) -> anyhow::Result<()> {
        let (id, ws, quic) = (self.nodes[i].id.clone(), self.nodes[i].ws, self.nodes[i].quic);
        let (nats_url, files, tweak) = (self.nats.url(), &self.files, self.tweak.clone());
        let server = TestServer::start_node(&self.shared, |c| {
            c.ws_listen = ws;
            c.quic_listen = quic;
            c.cluster.nats_url = Some(confab_server::config::NatsUrl::new(nats_url));
            c.cluster.node_id = Some(id);
            c.auth.signing_key_path = Some(files.signing_key.clone());
            c.auth.secret_path = Some(files.auth_secret.clone());
            c.tls.cert_path = Some(files.cert.clone());
            c.tls.key_path = Some(files.key.clone());
            // One media directory for every node, as a shared mount would be (docs/operations.md
            // "Media"): a file uploaded through one node downloads through another.
            c.media.dir = Some(files.dir.path().join("media"));
            tweak(c);
        })
        .await?;
        let node = &mut self.nodes[i];
        (node.ws, node.quic) = (server.ws_addr, server.quic_addr);
        node.server = Some(server);
        Ok(())
    }

    /// The flags of an out-of-process node `node_id` of this cluster (for `confab-test-server`,
    /// which adds the listen addresses and data dir): the shared database, NATS server, keys,
    /// certificate and code inbox, the rate limits of [`TestServer`] (open), and errors-only logs.
    pub fn process_args(&self, node_id: &str) -> Vec<OsString> {
        let path = |p: &Path| p.as_os_str().to_owned();
        let mut args: Vec<OsString> = vec![
            "--database-url".into(),
            self.shared.database_url.clone().into(),
            "--nats-url".into(),
            self.nats.url().into(),
            "--node-id".into(),
            node_id.into(),
            "--auth-signing-key".into(),
            path(&self.files.signing_key),
            "--auth-secret".into(),
            path(&self.files.auth_secret),
            "--tls-cert".into(),
            path(&self.files.cert),
            "--tls-key".into(),
            path(&self.files.key),
            "--media-dir".into(),
            path(&self.files.dir.path().join("media")),
            "--code-sender".into(),
            "webhook".into(),
            "--webhook-url".into(),
            self.shared.inbox.url().into(),
            "--log-filter".into(),
            "error".into(),
            "--shutdown-timeout".into(),
            "5s".into(),
        ];
        if let Some(secret) = &self.shared.inbox.secret {
            args.extend(["--webhook-secret".into(), secret.into()]);
        }
        for flag in [
            "--rate-login-per-account",
            "--rate-login-per-ip",
            "--rate-code-request-per-destination",
            "--rate-code-request-per-ip",
            "--rate-code-verify-per-ip",
            "--rate-register-per-ip",
        ] {
            args.extend([flag.into(), "100000/1ms".into()]);
        }
        args
    }

    /// Starts an out-of-process node `node_id` of this cluster from `bin` (the
    /// `confab-test-server` binary: `env!("CARGO_BIN_EXE_confab-test-server")` in an integration
    /// test) and waits until it is ready.
    pub async fn spawn_process(&self, bin: impl Into<PathBuf>, node_id: &str) -> anyhow::Result<NodeProcess> {
        NodeProcess::spawn(bin, node_id, self.process_args(node_id)).await
    }

    /// The directory with the shared key, secret and certificate files.
    pub fn shared_dir(&self) -> &Path {
        self.files.dir.path()
    }

    /// The PEM certificate every node serves over QUIC (for a runner's `--cert`).
    pub fn cert_path(&self) -> &Path {
        &self.files.cert
    }

    /// Stops every node gracefully, then drops the database and stops NATS; the first error wins.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let mut first = Ok(());
        for i in 0..self.nodes.len() {
            let r = self.stop_node(i).await;
            if first.is_ok() {
                first = r;
            }
        }
        if let Some(db) = self.db.take() {
            let r = db.drop_db().await;
            if first.is_ok() {
                first = r;
            }
        }
        self.nats.stop()?;
        first
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Nodes first (TestServer's drop aborts them), then the database they used.
        for n in &mut self.nodes {
            drop(n.server.take());
        }
        if let Some(db) = self.db.take() {
            db.drop_blocking();
        }
    }
}
