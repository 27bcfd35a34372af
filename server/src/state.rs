//! Shared server state: a cheap-clone handle around `Arc<Inner>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, event};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::auth::AuthService;
use crate::bus::Bus;
use crate::calls::Calls;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::conversations::Conversations;
use crate::hub::Hub;
use crate::keys::Reencryption;
use crate::limits::{ConnectionLimiter, DescriptorLimit, effective_max_connections};
use crate::media::Media;
use crate::metrics::Metrics;
use crate::push::Push;
use crate::rooms::Rooms;
use crate::search::Search;
use crate::social::Social;
use crate::store::Store;

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Arc<dyn Store>,
    metrics: Metrics,
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    auth: AuthService,
    conversations: Conversations,
    social: Social,
    calls: Calls,
    rooms: Rooms,
    admin: Admin,
    media: Media,
    search: Search,
    push: Push,
    reencryption: Reencryption,
    cluster: Option<Arc<Cluster>>,
    limiter: ConnectionLimiter,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    next_conn: AtomicU64,
    conn_prefix: String,
    go_away: Bytes,
}

/// The services handlers call, built before the state.
#[derive(Debug)]
pub struct Services {
    pub auth: AuthService,
    pub conversations: Conversations,
    pub social: Social,
    pub calls: Calls,
    pub rooms: Rooms,
    pub admin: Admin,
    pub media: Media,
    pub search: Search,
    pub push: Push,
    pub reencryption: Reencryption,
}

/// Everything handlers and transports share.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        metrics: Metrics,
        hub: Arc<Hub>,
        bus: Arc<dyn Bus>,
        services: Services,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let Services { auth, conversations, social, calls, rooms, admin, media, search, push, reencryption } = services;
        let max_total = effective_max_connections(
            config.limits.max_connections,
            DescriptorLimit::current(),
            config.descriptor_reserve(),
        );
        let limiter = ConnectionLimiter::new(max_total, config.limits.max_connections_per_ip);
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        let go_away = encode_server(&event_frame(event::Event::GoAway(v1::GoAway {
            reason: v1::GoAwayReason::Shutdown as i32,
            message: "server shutting down".into(),
            reconnect_after_ms: 1000,
        })));
        Self(Arc::new(Inner {
            config,
            store,
            metrics,
            hub,
            bus,
            auth,
            conversations,
            social,
            calls,
            rooms,
            admin,
            media,
            search,
            push,
            reencryption,
            cluster,
            limiter,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
            conn_prefix: format!("{:08x}", u32::from_le_bytes(r)),
            go_away,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn limiter(&self) -> &ConnectionLimiter {
        &self.0.limiter
    }

    /// Cancelled when the server begins shutting down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    /// Tracks connection tasks so shutdown can wait for them.
    pub fn tasks(&self) -> &TaskTracker {
        &self.0.tasks
    }

    /// Live connections by session.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.0.hub
    }

    /// The domain-event bus.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.0.bus
    }

    /// The accounts service.
    pub fn auth(&self) -> &AuthService {
        &self.0.auth
    }

    /// The conversations service.
    pub fn conversations(&self) -> &Conversations {
        &self.0.conversations
    }

    /// The calls service.
    pub fn calls(&self) -> &Calls {
        &self.0.calls
    }

    /// The push service (§24).
    pub fn rooms(&self) -> &Rooms {
        &self.0.rooms
    }

    pub fn admin(&self) -> &Admin {
        &self.0.admin
    }

    pub fn push(&self) -> &Push {
        &self.0.push
    }

    /// The search service.
    pub fn search(&self) -> &Search {
        &self.0.search
    }

    /// The re-encryption job (encryption at rest).
    pub fn reencryption(&self) -> &Reencryption {
        &self.0.reencryption
    }

    pub fn media(&self) -> &Media {
        &self.0.media
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.0.cluster.as_ref()
    }

    /// The social service.
    pub fn social(&self) -> &Social {
        &self.0.social
    }

    /// A new connection number and id, unique per server process.
    pub fn next_connection_id(&self) -> (u64, String) {
        let n = self.0.next_conn.fetch_add(1, Ordering::Relaxed);
        (n, format!("{}-{n}", self.0.conn_prefix))
    }

    /// The GoAway event, encoded once and shared by every connection.
    pub fn go_away_frame(&self) -> Bytes {
        self.0.go_away.clone()
    }
}
