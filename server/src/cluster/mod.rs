//! The cluster link: several nodes on one PostgreSQL, their domain events carried over core NATS
//! (docs/architecture.md "Several nodes"). [`ClusterBus`] is the [`Bus`] of a node in a cluster:
//! every event goes to this node's subscribers as on a single node, and (but for session events)
//! is published once on the cluster's events subject, where every other node hands it to its own
//! subscribers. Each node numbers what it publishes (`pub_seq`, gapless per start); a receiver that
//! sees a number skipped asks the publisher to replay it from a bounded ring, so a message NATS
//! dropped costs latency, not an event. Heartbeats tell who is alive: a node not heard from within
//! `node_timeout` is down (its devices go offline, `DomainEvent::NodeDown`).

mod codec;
pub mod forward;
mod publish;
mod receive;
pub mod rpc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, DomainEvent, LocalBus, Subscriber};
use crate::config::ClusterConfig;
use crate::hub::Hub;
use crate::metrics::ClusterMetrics;
use publish::Outbound;
pub use rpc::{Rpc, RpcError, Service};

/// Why the cluster link could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("connecting to NATS: {0}")]
    Connect(String),
    #[error("subscribing on NATS: {0}")]
    Subscribe(String),
}

/// The NATS subjects of one cluster.
#[derive(Clone, Debug)]
struct Subjects {
    /// Every node's events and heartbeats.
    events: String,
    prefix: String,
}

impl Subjects {
    fn new(prefix: &str) -> Self {
        Self { events: format!("{prefix}.events"), prefix: prefix.to_string() }
    }

    /// Where node `node` answers replay requests.
    fn replay(&self, node: &str) -> String {
        format!("{}.replay.{node}", self.prefix)
    }
}

/// Whether the NATS link is up, and since when (for /healthz and for judging other nodes: a
/// node is not declared down while this one could not have heard it).
#[derive(Debug)]
struct LinkState {
    up: AtomicBool,
    since: Mutex<Instant>,
    metrics: ClusterMetrics,
}

impl LinkState {
    fn set(&self, up: bool) {
        if self.up.swap(up, Ordering::SeqCst) != up {
            *self.since.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
            self.metrics.link_up.set(i64::from(up));
        }
    }

    /// `Some(how long)` the link has been up; `None` while down.
    fn up_for(&self) -> Option<Duration> {
        let since = *self.since.lock().unwrap_or_else(PoisonError::into_inner);
        self.up.load(Ordering::SeqCst).then(|| since.elapsed())
    }
}

/// The bus of a node in a cluster.
#[derive(Debug)]
pub struct ClusterBus {
    local: LocalBus,
    out: Outbound,
    hub: Arc<Hub>,
}

impl ClusterBus {
    /// Hands an event from another node to this node's subscribers (it is not published again).
    fn deliver_local(&self, event: DomainEvent) {
        self.local.publish(event);
    }

    /// This node's presence table and sessions, read and numbered under one lock.
    fn send_table(&self) {
        self.out.send_many(|| publish::Outbound::table(self.hub.local_presence_table(), self.hub.local_sessions()));
    }
}

impl Bus for ClusterBus {
    /// Published to the other nodes first (so an event a subscriber publishes in reaction follows
    /// this one there too), then handed to this node's subscribers.
    fn publish(&self, event: DomainEvent) {
        self.out.send_many(|| codec::body_of(&event, |u| self.hub.local_presence(u)).into_iter().collect());
        self.local.publish(event);
    }

    fn subscribe(&self, subscriber: Arc<dyn Subscriber>) {
        self.local.subscribe(subscriber);
    }
}

/// A running cluster link: its bus, its tasks, and what /healthz reports.
#[derive(Debug)]
pub struct Cluster {
    bus: Arc<ClusterBus>,
    client: async_nats::Client,
    node: String,
    incarnation: u64,
    config: ClusterConfig,
    link: Arc<LinkState>,
    shutdown: CancellationToken,
    publisher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    rpc: Rpc,
}

/// The name of one run of a node in the store's room leases: `NODE@INCARNATION` (hex).
pub fn holder_name(node: &str, incarnation: u64) -> String {
    format!("{node}@{incarnation:016x}")
}

/// The node of a holder name ([`holder_name`]).
pub fn node_of(holder: &str) -> &str {
    holder.split_once('@').map_or(holder, |(node, _)| node)
}

/// A node's name when none is configured: `node-` and 8 random hex digits.
pub fn random_node_id() -> String {
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).expect("system randomness");
    format!("node-{}", hex::encode(r))
}

impl Cluster {
    /// Connects to NATS (in the background when it is not reachable yet: the node serves its own
    /// connections meanwhile and /healthz says so) and starts publishing. Receiving starts with
    /// [`start_receiving`](Self::start_receiving), once the bus has its subscribers.
    pub async fn connect(config: &ClusterConfig, hub: Arc<Hub>, metrics: ClusterMetrics) -> Result<Self, ClusterError> {
        let node = config.node_id.clone().unwrap_or_else(random_node_id);
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).expect("system randomness");
        let incarnation = u64::from_le_bytes(r) | 1;
        let url = config.nats_url.as_ref().map(|u| u.expose().to_string()).unwrap_or_default();
        let link = Arc::new(LinkState {
            up: AtomicBool::new(false),
            since: Mutex::new(Instant::now()),
            metrics: metrics.clone(),
        });
        let events = link.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("confab {node}"))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .subscription_capacity(1 << 16)
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(rpc::TIMEOUT))
            .event_callback(move |ev| {
                let link = events.clone();
                async move {
                    match ev {
                        async_nats::Event::Connected => {
                            tracing::info!("NATS link up");
                            link.set(true);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("NATS link down: live events from other nodes wait (replayed on return)");
                            link.set(false);
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            tracing::warn!("NATS dropped events for this node (slow consumer): replaying them");
                        }
                        other => tracing::info!(event = %other, "NATS"),
                    }
                }
            })
            .connect(url.split(',').map(str::trim).collect::<Vec<_>>().as_slice())
            .await
            .map_err(|e| ClusterError::Connect(e.to_string()))?;
        if client.connection_state() == async_nats::connection::State::Connected {
            link.set(true);
        }
        let subjects = Subjects::new(&config.subject_prefix);
        let (out, rx) = Outbound::new(node.clone(), incarnation, metrics.clone());
        let bus = Arc::new(ClusterBus { local: LocalBus::default(), out, hub });
        let shutdown = CancellationToken::new();
        let publisher = tokio::spawn(publish::publish_loop(
            client.clone(),
            subjects.clone(),
            rx,
            bus.clone(),
            config.heartbeat_interval,
            shutdown.clone(),
        ));
        let replies =
            client.subscribe(subjects.replay(&node)).await.map_err(|e| ClusterError::Subscribe(e.to_string()))?;
        tokio::spawn(publish::answer_replays(client.clone(), replies, bus.clone(), incarnation, shutdown.clone()));
        tracing::info!(node = %node, nats = ?config.nats_url, "cluster link started");
        let rpc = Rpc::new(client.clone(), config.subject_prefix.clone(), node.clone());
        Ok(Self {
            rpc,
            bus,
            client,
            node,
            incarnation,
            config: config.clone(),
            link,
            shutdown,
            publisher: Mutex::new(Some(publisher)),
        })
    }

    /// The bus to publish on and subscribe to.
    pub fn bus(&self) -> Arc<ClusterBus> {
        self.bus.clone()
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// This run of the node (`NODE@INCARNATION`).
    pub fn holder(&self) -> String {
        holder_name(&self.node, self.incarnation)
    }

    /// A handle for calling services on other nodes.
    pub fn rpc(&self) -> Rpc {
        self.rpc.clone()
    }

    /// Serves `service` to the other nodes until shutdown.
    pub async fn serve(&self, service: &str, handler: Arc<dyn Service>) -> Result<(), ClusterError> {
        self.rpc
            .serve(service, handler, self.shutdown.clone())
            .await
            .map_err(|e| ClusterError::Subscribe(e.to_string()))
    }

    /// Starts handing the other nodes' events to this node's subscribers.
    pub async fn start_receiving(&self, metrics: ClusterMetrics) -> Result<(), ClusterError> {
        let subjects = Subjects::new(&self.config.subject_prefix);
        let sub =
            self.client.subscribe(subjects.events.clone()).await.map_err(|e| ClusterError::Subscribe(e.to_string()))?;
        let receiver = receive::Receiver::new(receive::Setup {
            client: self.client.clone(),
            subjects,
            node: self.node.clone(),
            bus: self.bus.clone(),
            metrics,
            link: self.link.clone(),
            node_timeout: self.config.node_timeout,
            check_every: self.config.heartbeat_interval,
        });
        tokio::spawn(receiver.run(sub, self.shutdown.clone()));
        // The others sent their tables when they first heard this node's heartbeat, maybe before
        // it listened: ask again, now that it does.
        self.bus.out.send(codec::Body::TableWanted(codec::TableWantedMsg {}));
        Ok(())
    }

    /// One line for /healthz: the link's state and how many other nodes are heard.
    pub fn health(&self) -> (bool, String) {
        let peers = self.link.metrics.peers.get();
        match self.link.up_for() {
            Some(_) => (true, format!("nats: connected, node {}, {peers} other node(s) heard", self.node)),
            None => (false, format!("nats: disconnected, node {} (events from other nodes wait)", self.node)),
        }
    }

    /// Says goodbye (the other nodes take this node's devices offline at once) and stops.
    pub async fn close(&self) {
        self.shutdown.cancel();
        let publisher = self.publisher.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(p) = publisher {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
        tracing::debug!(incarnation = self.incarnation, "cluster link closed");
    }
}
