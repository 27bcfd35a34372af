//! Prometheus metrics: connections, frames and bytes by transport, request latency by kind,
//! errors by code, connection closes by reason, store latency by operation, live deliveries, the
//! writer's batches, the SFU's rooms, pushes and the cluster link. Served on /metrics; every name
//! is listed in docs/operations.md "Health and metrics" (server/tests/dashboard.rs checks it).

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
    /// Open connections.
    pub connections: Gauge,
    /// Connections that reached the connection loop.
    pub accepted: Counter,
    /// Frames received.
    pub frames_in: Counter,
    /// Frames sent.
    pub frames_out: Counter,
    /// Frame bytes received.
    pub bytes_in: Counter,
    /// Frame bytes sent.
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

/// Histograms of the batched writer (`crate::writer`), observed once per committed batch.
#[derive(Clone, Debug)]
pub struct WriterMetrics {
    /// Writes committed together in one transaction.
    pub batch_size: Histogram,
    /// Time to apply and commit one batch.
    pub batch_duration: Histogram,
}

impl Default for WriterMetrics {
    /// Histograms registered nowhere (a writer started without the server's metrics).
    fn default() -> Self {
        // 1 .. 512 writes: the writer's largest batch.
        Self { batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)), batch_duration: latency_histogram() }
    }
}

/// Gauges of the integrated SFU on this node (`crate::calls::sfu`), kept by the room actors.
#[derive(Clone, Debug, Default)]
pub struct SfuMetrics {
    /// Rooms (group calls and meeting rooms' calls) whose SFU session runs on this node, empty
    /// ones included until they expire.
    pub rooms: Gauge,
    /// Participants of those rooms.
    pub participants: Gauge,
    /// Tracks published in those rooms that the SFU receives and forwards (one per published
    /// track, whatever the number of subscribers).
    pub forwarded_tracks: Gauge,
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
    deliveries: Counter,
    writer: WriterMetrics,
    sfu: SfuMetrics,
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
    /// A fresh registry with every family registered (prefix `confab`).
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
        let deliveries = Counter::default();
        registry.register(
            "deliveries",
            "Frames queued to live connections on this node (one per frame per connection)",
            deliveries.clone(),
        );
        let writer = WriterMetrics::default();
        let w = registry.sub_registry_with_prefix("writer");
        w.register("batch_size", "Writes committed together in one transaction", writer.batch_size.clone());
        w.register("batch_duration_seconds", "Time to apply and commit one write batch", writer.batch_duration.clone());
        let sfu = SfuMetrics::default();
        let f = registry.sub_registry_with_prefix("sfu");
        f.register("rooms", "Rooms whose SFU session runs on this node", sfu.rooms.clone());
        f.register("participants", "Participants of this node's SFU rooms", sfu.participants.clone());
        f.register(
            "forwarded_tracks",
            "Published tracks this node's SFU receives and forwards",
            sfu.forwarded_tracks.clone(),
        );
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
            deliveries,
            writer,
            sfu,
        }))
    }

    /// Frames queued to live connections (`confab_deliveries_total`), bumped by the hub.
    pub fn deliveries(&self) -> &Counter {
        &self.0.deliveries
    }

    /// The batched writer's histograms.
    pub fn writer(&self) -> &WriterMetrics {
        &self.0.writer
    }

    /// The SFU's gauges.
    pub fn sfu(&self) -> &SfuMetrics {
        &self.0.sfu
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

    /// A request of `kind` was handled in `took`.
    pub fn request(&self, kind: &'static str, took: Duration) {
        self.0.requests.get_or_create(&KindLabel { kind }).observe(took.as_secs_f64());
    }

    /// An error response with `code` was sent.
    pub fn error(&self, code: confab_protocol::ErrorCode) {
        self.0.errors.get_or_create(&CodeLabel { code: code.as_str_name() }).inc();
    }

    /// A connection closed for `reason`.
    pub fn closed(&self, reason: &'static str) {
        self.0.closes.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Store operation `op` took `took`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_delivery_writer_and_sfu_render_by_their_names() {
        let m = Metrics::new();
        m.deliveries().inc_by(3);
        m.writer().batch_size.observe(4.0);
        m.writer().batch_duration.observe(0.002);
        m.sfu().rooms.inc();
        m.sfu().participants.inc_by(2);
        m.sfu().forwarded_tracks.inc_by(5);
        let text = m.render();
        for line in [
            "confab_deliveries_total 3",
            "confab_writer_batch_size_count 1",
            "confab_writer_batch_size_sum 4.0",
            "confab_writer_batch_duration_seconds_count 1",
            "confab_sfu_rooms 1",
            "confab_sfu_participants 2",
            "confab_sfu_forwarded_tracks 5",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }
}
