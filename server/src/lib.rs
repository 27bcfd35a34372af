//! Confab server library. The binary is a thin wrapper: parse config, bind, call [`run`].
//!
//! Data path: bytes (`transport`) → frames (`confab_protocol::framing`) → envelopes
//! (`connection`) → dispatch and handlers (`handlers`) → services (`auth`, `conversations`,
//! `social`, `calls`) → the batched writer (`writer`) → store (`store`); committed changes come
//! back as domain events on the bus (`bus`), whose subscribers (`fanout`, presence, calls) reach
//! connections through the hub (`hub`) and the session layer (`session`). The layers, and the
//! check that keeps imports pointing down, are in docs/architecture.md.

pub mod access;
pub mod admin;
pub mod auth;
pub mod blobs;
pub mod bus;
pub mod calls;
pub mod cluster;
pub mod config;
mod connection;
pub mod conversations;
pub mod crypto;
pub mod error;
pub mod fanout;
#[doc(hidden)]
pub mod fuzzing;
mod handlers;
pub mod hub;
pub mod keys;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod page;
pub mod push;
pub mod ratelimit;
pub mod rooms;
pub mod search;
pub mod session;
pub mod social;
pub mod state;
pub mod store;
pub mod tls;
pub mod transport;
pub mod wire;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

pub use config::Config;
use metrics::Metrics;
pub use session::Session;
use state::AppState;

/// Errors that stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error(transparent)]
    Blobs(#[from] blobs::BlobError),
    #[error(transparent)]
    Push(#[from] push::providers::ProviderSetupError),
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
}

/// Already-bound sockets for the server to serve on. Tests bind port 0.
#[derive(Debug)]
pub struct Listeners {
    /// WebSocket and HTTP.
    pub ws: tokio::net::TcpListener,
    /// QUIC.
    pub quic: std::net::UdpSocket,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let ws = tokio::net::TcpListener::bind(config.ws_listen)
            .await
            .map_err(|e| StartError::Io("binding ws_listen", e))?;
        let quic =
            std::net::UdpSocket::bind(config.quic_listen).map_err(|e| StartError::Io("binding quic_listen", e))?;
        Ok(Self { ws, quic })
    }

    pub fn ws_addr(&self) -> std::io::Result<SocketAddr> {
        self.ws.local_addr()
    }

    pub fn quic_addr(&self) -> std::io::Result<SocketAddr> {
        self.quic.local_addr()
    }
}

/// A server ready to run: store opened and migrated, certificate loaded.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    cert: tls::ServerCert,
}

impl Server {
    /// Opens the store (applying migrations) and loads or generates the certificate.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| StartError::Io("creating data_dir", e))?;
        let metrics = Metrics::new();
        let store = store::open(&config, metrics.clone()).await?;
        let cert = tls::load_or_generate(&config)?;
        let hub = Arc::new(hub::Hub::new(&metrics));
        let cluster = match &config.cluster.nats_url {
            Some(_) => Some(Arc::new(
                cluster::Cluster::connect(&config.cluster, hub.clone(), metrics.cluster().clone()).await?,
            )),
            None => None,
        };
        match Self::assemble(config, store, metrics, hub, cluster.clone()).await {
            Ok(state) => Ok(Self { state, cert }),
            Err(e) => {
                // A node that did not start must not go on sending heartbeats.
                if let Some(c) = cluster {
                    c.close().await;
                }
                Err(e)
            }
        }
    }

    /// The services, the bus's subscribers and the state, on an opened store (and cluster link).
    async fn assemble(
        config: Config,
        store: Arc<dyn store::Store>,
        metrics: Metrics,
        hub: Arc<hub::Hub>,
        cluster: Option<Arc<cluster::Cluster>>,
    ) -> Result<AppState, StartError> {
        let bus: Arc<dyn bus::Bus> = match &cluster {
            Some(c) => c.bus(),
            None => Arc::new(bus::LocalBus::default()),
        };
        let writer = writer::Writer::start_with_metrics(store.clone(), bus.clone(), &metrics);
        let auth =
            auth::AuthService::new(&config.auth, &config.data_dir, store.clone(), bus.clone(), writer.clone()).await?;
        let conversations = conversations::Conversations::new(store.clone(), writer.clone(), &config.limits)
            .await
            .map_err(|e| StartError::Io("starting conversations", std::io::Error::other(e.to_string())))?;
        let social = social::Social::new(store.clone(), hub.clone(), bus.clone(), config.limits.typing_ttl);
        let role = cluster.as_ref().map(|c| calls::sfu::ClusterRole {
            rpc: c.rpc(),
            holder: c.holder(),
            lease_ttl: config.cluster.node_timeout,
            renew_every: config.cluster.heartbeat_interval,
        });
        let calls = calls::Calls::new(
            config.calls.clone(),
            store.clone(),
            hub.clone(),
            bus.clone(),
            writer.clone(),
            role,
            &metrics,
        );
        // Subscribers, in the order each event reaches them: live delivery first, then the
        // features that follow from it.
        let fanout = match &cluster {
            Some(_) => fanout::Fanout::clustered(hub.clone(), store.clone(), metrics.cluster().clone()),
            None => fanout::Fanout::single(hub.clone()),
        };
        bus.subscribe(Arc::new(fanout));
        bus.subscribe(Arc::new(social.clone()));
        bus.subscribe(Arc::new(calls.clone()));
        let rooms =
            rooms::Rooms::new(config.calls.clone(), store.clone(), calls.sfu().clone(), auth.clone(), bus.clone());
        bus.subscribe(Arc::new(rooms.clone()));
        if cluster.is_some() && config.media.store == config::BlobBackend::Fs {
            tracing::warn!(
                "media.store is fs on a node of a cluster: every node must see the same media directory (a shared \
                 mount), or use media.store = s3"
            );
        }
        let blob_store = blobs::open(&config.media, &config.data_dir).await?;
        let mut media_config = config.media.clone();
        media_config.chunk_bytes = media_config.chunk_size(config.limits.max_frame_bytes);
        let reencryption = keys::Reencryption::new(store.clone(), blob_store.clone());
        let media = media::Media::new(store.clone(), blob_store, media_config);
        mend_deleted_accounts(store.as_ref(), &writer).await?;
        let refolded = store.refold_keys().await?;
        if refolded > 0 {
            tracing::info!(rows = refolded, "wrote search keys of names and titles from before migration 0008");
        }
        if let Some(c) = &cluster {
            c.start_receiving(metrics.cluster().clone()).await?;
        }
        let indexer = config.search.indexing.then(search::Indexer::new);
        if let Some(i) = &indexer {
            bus.subscribe(Arc::new(i.clone()));
        }
        let search = search::Search::new(store.clone(), indexer, config.search.clone());
        let providers = push::providers::Providers::from_config(&config.push)?;
        let push =
            push::Push::new(config.push.clone(), providers, store.clone(), hub.clone(), bus.clone(), metrics.clone());
        bus.subscribe(Arc::new(push.clone()));
        let admin = admin::Admin::new(store.clone(), auth.clone(), hub.clone(), writer.clone());
        let services =
            state::Services { auth, conversations, social, calls, rooms, admin, media, search, push, reencryption };
        let state = AppState::new(config, store, metrics, hub, bus, services, cluster.clone());
        if let Some(c) = &cluster {
            c.serve(cluster::forward::SERVICE, Arc::new(handlers::forward::Forwarder(state.clone()))).await?;
        }
        Ok(state)
    }

    /// The QUIC certificate clients can pin.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.cert.leaf().clone()
    }

    /// Live connections by session, for tests.
    pub fn hub(&self) -> Arc<hub::Hub> {
        self.state.hub().clone()
    }

    /// The media service, for tools and tests (a collector pass now: `media().collect_once()`).
    pub fn media(&self) -> media::Media {
        self.state.media().clone()
    }

    /// The re-encryption job, for tools and tests (`reencryption().run_once(…)`).
    pub fn reencryption(&self) -> keys::Reencryption {
        self.state.reencryption().clone()
    }

    /// The push service, for tests.
    pub fn push(&self) -> push::Push {
        self.state.push().clone()
    }

    /// The store, for tools and tests.
    pub fn store(&self) -> Arc<dyn store::Store> {
        self.state.store().clone()
    }

    /// Serves until `shutdown` resolves, then drains: stop accepting, send GoAway, finish
    /// in-flight requests, close connections, close the store.
    pub async fn run(self, listeners: Listeners, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let state = self.state;
        let quic_config = tls::quic_server_config(&self.cert, state.config())?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| StartError::Io("quic runtime", std::io::Error::other("no async runtime found")))?;
        let endpoint =
            quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(quic_config), listeners.quic, runtime)
                .map_err(|e| StartError::Io("starting QUIC endpoint", e))?;
        tracing::info!(
            ws = %listeners.ws.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            quic = %endpoint.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            store = ?state.store().backend(),
            "serving"
        );
        let nofile = limits::DescriptorLimit::current();
        let (configured, in_force) = (state.config().limits.max_connections, state.limiter().max_total());
        tracing::info!(
            max_connections = in_force,
            configured_max_connections = configured,
            max_connections_per_ip = state.config().limits.max_connections_per_ip,
            nofile_soft = ?nofile.soft,
            nofile_hard = ?nofile.hard,
            descriptor_reserve = state.config().descriptor_reserve(),
            "connection admission"
        );
        if in_force < configured {
            tracing::warn!(
                max_connections = in_force,
                configured_max_connections = configured,
                "max_connections lowered to stay below the open-file limit (raise `ulimit -n` / LimitNOFILE)"
            );
        }
        let holder = state.cluster().map_or_else(|| "local".to_string(), |c| c.holder());
        state.tasks().spawn(media::Collector::run(state.media().clone(), holder.clone(), state.shutdown().clone()));
        state.tasks().spawn(state.search().clone().run_indexer(state.shutdown().clone()));
        state.tasks().spawn(state.push().clone().run(holder.clone(), state.shutdown().clone()));
        if state.config().store.background_reencryption {
            state.tasks().spawn(state.reencryption().clone().run(holder.clone(), state.shutdown().clone()));
        }
        state.tasks().spawn(keys::Reencryption::refresh_keys(
            state.store().clone(),
            keys::REFRESH_EVERY,
            state.shutdown().clone(),
        ));
        let http = tokio::spawn(transport::http::serve(listeners.ws, state.clone()));
        let quic = tokio::spawn(transport::quic::serve(endpoint.clone(), state.clone()));

        shutdown.await;
        tracing::info!("shutting down: draining connections");
        state.shutdown().cancel();
        let _ = http.await;
        let _ = quic.await;
        state.tasks().close();
        state.calls().sfu().expire_leases().await;
        state.calls().sfu().shutdown();
        let timeout = state.config().shutdown_timeout;
        if tokio::time::timeout(timeout, state.tasks().wait()).await.is_err() {
            tracing::warn!(remaining = state.tasks().len(), "drain timed out; closing remaining connections");
        }
        endpoint.close((confab_protocol::CloseCode::GoingAway as u32).into(), b"server shutting down");
        if let Some(c) = state.cluster() {
            c.close().await;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), endpoint.wait_idle()).await;
        state.auth().flush_touches().await;
        state.store().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Accounts deleted before deletion left their groups (data from earlier versions) stay members,
/// owners among them: each leaves its groups and channels now, through the same write as a
/// deletion (docs/protocol.md §21; applying it again changes nothing else).
async fn mend_deleted_accounts(store: &dyn store::Store, writer: &writer::Writer) -> Result<(), StartError> {
    let failed =
        |e: error::ServerError| StartError::Io("mending deleted accounts", std::io::Error::other(e.to_string()));
    let users = store.deleted_members().await?;
    if !users.is_empty() {
        tracing::info!(accounts = users.len(), "deleted accounts still in groups or channels: leaving them");
    }
    for user in users {
        writer
            .submit(store::WriteOp::DeleteAccount { user, now_ms: store::now_ms(), by: None })
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// Builds and runs a server: the whole life of `confab-server`.
pub async fn run(config: Config, listeners: Listeners, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    Server::build(config).await?.run(listeners, shutdown).await
}
