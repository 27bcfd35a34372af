//! Prometheus metrics: connections, frames and bytes by transport, request latency by kind,
//! errors by code, connection closes by reason, store latency by operation. Served on /metrics.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~13 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

/// Counters of one transport, resolved once so the hot path only bumps atomics.
#[derive(Clone, Debug)]
pub struct TransportMetrics {
    pub connections: Gauge,
    pub accepted: Counter,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

/// Counters of the cluster link (docs/operations.md "Several nodes").
#[derive(Clone, Debug, Default)]
pub struct ClusterMetrics {
    /// Events this node published to the other nodes.
    pub published: Counter,
    /// Events received from the other nodes.
    pub received: Counter,
    /// Events this node could not hand to NATS at once (queue full or link down); the other
    /// nodes get them by replay.
    pub publish_queue_full: Counter,
    /// Log entries dropped because they had been delivered already (by (conversation, seq) or
    /// (user, seq)), and cluster events received twice.
    pub duplicates_dropped: Counter,
    /// Log entries read from the database to fill a gap before delivering what followed.
    pub gap_filled: Counter,
    /// Cluster events fetched again from the node that published them after a gap.
    pub replayed: Counter,
    /// Times this node could not prove its live delivery complete and closed the affected
    /// connections (4003) so their clients resync.
    pub resyncs: Counter,
    /// 1 while the NATS link is up (always 0 on a single node).
    pub link_up: Gauge,
    /// Other nodes heard from within the node timeout.
    pub peers: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabel {
    provider: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: &'static str,
}

#[derive(Debug)]
struct Inner {
    pushes: Family<PushLabel, Counter>,
    push_latency: Family<ProviderLabel, Histogram, fn() -> Histogram>,
    push_delay: Histogram,
    registry: Registry,
    requests: Family<KindLabel, Histogram, fn() -> Histogram>,
    errors: Family<CodeLabel, Counter>,
    closes: Family<ReasonLabel, Counter>,
    store: Family<OpLabel, Histogram, fn() -> Histogram>,
    ws: TransportMetrics,
    quic: TransportMetrics,
    cluster: ClusterMetrics,
}

/// Cheap-clone handle to the server's metrics.
#[derive(Clone, Debug)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("confab");
        let connections = Family::<TransportLabel, Gauge>::default();
        let accepted = Family::<TransportLabel, Counter>::default();
        let frames_in = Family::<TransportLabel, Counter>::default();
        let frames_out = Family::<TransportLabel, Counter>::default();
        let bytes_in = Family::<TransportLabel, Counter>::default();
        let bytes_out = Family::<TransportLabel, Counter>::default();
        let requests = Family::<KindLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let errors = Family::<CodeLabel, Counter>::default();
        let closes = Family::<ReasonLabel, Counter>::default();
        let store = Family::<OpLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let pushes = Family::<PushLabel, Counter>::default();
        let push_latency =
            Family::<ProviderLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let push_delay = latency_histogram();
        registry.register(
            "pushes",
            "Push deliveries that reached a final state or were retried, by provider and state (sent, failed, dropped, expired, retried)",
            pushes.clone(),
        );
        registry.register(
            "push_provider_duration_seconds",
            "Time a push provider took to answer",
            push_latency.clone(),
        );
        registry.register(
            "push_delay_seconds",
            "From a delivery's planning to its provider accepting it (the ack window of connected devices included)",
            push_delay.clone(),
        );
        registry.register("connections", "Open connections by transport", connections.clone());
        registry.register("connections_accepted", "Connections accepted by transport", accepted.clone());
        registry.register("frames_in", "Frames received by transport", frames_in.clone());
        registry.register("frames_out", "Frames sent by transport", frames_out.clone());
        registry.register("bytes_in", "Frame bytes received by transport", bytes_in.clone());
        registry.register("bytes_out", "Frame bytes sent by transport", bytes_out.clone());
        registry.register("request_duration_seconds", "Request handling time by request kind", requests.clone());
        registry.register("errors", "Error responses by code", errors.clone());
        registry.register("connections_closed", "Connections closed by reason", closes.clone());
        registry.register("store_duration_seconds", "Store operation time by operation", store.clone());
        let resolve = |t: &'static str| {
            let l = TransportLabel { transport: t };
            TransportMetrics {
                connections: connections.get_or_create(&l).clone(),
                accepted: accepted.get_or_create(&l).clone(),
                frames_in: frames_in.get_or_create(&l).clone(),
                frames_out: frames_out.get_or_create(&l).clone(),
                bytes_in: bytes_in.get_or_create(&l).clone(),
                bytes_out: bytes_out.get_or_create(&l).clone(),
            }
        };
        let ws = resolve("websocket");
        let quic = resolve("quic");
        let cluster = ClusterMetrics::default();
        let c = registry.sub_registry_with_prefix("cluster");
        c.register("published", "Events published to the other nodes", cluster.published.clone());
        c.register("received", "Events received from the other nodes", cluster.received.clone());
        c.register(
            "publish_queue_full",
            "Events not handed to NATS at once (the others replay them)",
            cluster.publish_queue_full.clone(),
        );
        c.register(
            "duplicates_dropped",
            "Entries and events dropped as already delivered",
            cluster.duplicates_dropped.clone(),
        );
        c.register("gap_filled", "Log entries read from the database to fill a gap", cluster.gap_filled.clone());
        c.register("replayed", "Events fetched again from their node after a gap", cluster.replayed.clone());
        c.register(
            "resyncs",
            "Times connections were closed (4003) to resync after an unprovable gap",
            cluster.resyncs.clone(),
        );
        c.register("link_up", "1 while the NATS link is up", cluster.link_up.clone());
        c.register("peers", "Other nodes heard from within the node timeout", cluster.peers.clone());
        Self(Arc::new(Inner {
            pushes,
            push_latency,
            push_delay,
            registry,
            requests,
            errors,
            closes,
            store,
            ws,
            quic,
            cluster,
        }))
    }

    /// The counters of one transport, by its label (`"websocket"` or `"quic"`; anything else
    /// counts as QUIC, the only other transport).
    pub fn transport(&self, label: &str) -> &TransportMetrics {
        if label == "websocket" { &self.0.ws } else { &self.0.quic }
    }

    /// The cluster link's counters.
    pub fn cluster(&self) -> &ClusterMetrics {
        &self.0.cluster
    }

    pub fn request(&self, kind: &'static str, took: Duration) {
        self.0.requests.get_or_create(&KindLabel { kind }).observe(took.as_secs_f64());
    }

    pub fn error(&self, code: confab_protocol::ErrorCode) {
        self.0.errors.get_or_create(&CodeLabel { code: code.as_str_name() }).inc();
    }

    pub fn closed(&self, reason: &'static str) {
        self.0.closes.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn store_op(&self, op: &'static str, took: Duration) {
        self.0.store.get_or_create(&OpLabel { op }).observe(took.as_secs_f64());
    }

    /// A push delivery reached `state` (or was retried) at `provider`.
    pub fn push(&self, provider: &'static str, state: &'static str) {
        self.0.pushes.get_or_create(&PushLabel { provider, state }).inc();
    }

    /// A push provider answered in `took`.
    pub fn push_provider(&self, provider: &'static str, took: Duration) {
        self.0.push_latency.get_or_create(&ProviderLabel { provider }).observe(took.as_secs_f64());
    }

    /// A push was accepted by its provider `delay` after it was planned.
    pub fn push_delay(&self, delay: Duration) {
        self.0.push_delay.observe(delay.as_secs_f64());
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.0.registry).is_err() {
            out.clear();
        }
        out
    }
}
