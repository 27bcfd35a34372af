//! The push sender (docs/protocol.md §24.5): claims due ledger rows with a lease (so each push is
//! sent by one node, and a node dying mid-send loses none: its lease runs out and another node,
//! or this one restarted, sends it again), decides each (`rules::push::verdict`), hands it to its
//! provider, and records the outcome: SENT, a retry with backoff (Retry-After honoured), FAILED,
//! or — when the provider says the token is gone — the target disabled and its device told.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::PushConfig;
use crate::metrics::Metrics;
use crate::store::rules::push::{Verdict, verdict};
use crate::store::{DeliveryState, DeliveryUpdate, DueDelivery, PushKind, Store, now_ms};

use super::providers::http::cut;
use super::providers::{Notification, Outcome, Preview, Priority, Providers, Target};

/// Longest preview text put in a notification, in bytes (providers cut further to fit 4 KB).
const PREVIEW_BYTES: usize = 1000;
/// Longest a sender sleeps without looking at the ledger (other nodes' rows, leases running out).
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// How long deliveries in flight get to finish when the server stops.
const DRAIN: Duration = Duration::from_secs(2);
/// After this long without a receipt, a sent delivery's receipt is no longer asked for.
const RECEIPT_GIVE_UP: Duration = Duration::from_secs(24 * 3600);
/// How often ended deliveries past `push.ledger_retention` are deleted, and how many at a time.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_ROWS: u32 = 10_000;
/// Receipts asked for at once.
const RECEIPTS_BATCH: u32 = 100;

/// A delivery decided: its ledger update, and the target to disable when the token is gone.
struct Finished {
    update: DeliveryUpdate,
    gone: Option<(i64, String)>,
}

/// Outcomes waiting for the finisher, and the most it records in one transaction.
const FINISH_QUEUE: usize = 4096;
const FINISH_BATCH: usize = 256;

/// Wakes the sender: new rows are due.
#[derive(Clone, Debug, Default)]
pub(super) struct Wake(Arc<Notify>);

impl Wake {
    pub(super) fn wake(&self) {
        self.0.notify_one();
    }
}

/// Called with a target whose provider said its token is gone: `(target id, reason)`.
pub(super) type Invalidate = Arc<dyn Fn(i64, String) + Send + Sync>;

pub(super) struct Sender {
    pub store: Arc<dyn Store>,
    pub providers: Providers,
    pub config: PushConfig,
    pub metrics: Metrics,
    pub encrypted: bool,
    pub holder: String,
    pub wake: Wake,
    pub invalidated: Invalidate,
}

impl Sender {
    /// Claims and sends until `shutdown`: up to `push.concurrency` deliveries in flight, a slot
    /// refilled as soon as one ends (a slow provider holds only its own deliveries up). On
    /// shutdown, what is in flight gets `DRAIN` to finish; the rest is sent again once its lease
    /// runs out.
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let receipts_every = this.config.expo.receipt_delay.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut next_receipts = Instant::now() + receipts_every;
        let capacity = this.config.concurrency as usize;
        let lease = this.config.lease.as_millis() as i64;
        let providers = this.providers.kinds();
        let mut next_prune = Instant::now() + PRUNE_EVERY / 60;
        // Deliveries run as tasks of their own: they go on while this loop awaits the store. Their
        // outcomes are recorded by one finisher, many to a transaction.
        let mut inflight = tokio::task::JoinSet::new();
        let (done, outcomes) = mpsc::channel::<Finished>(FINISH_QUEUE);
        let finisher = tokio::spawn(this.clone().finisher(outcomes));
        loop {
            while inflight.try_join_next().is_some() {}
            if shutdown.is_cancelled() {
                let _ = tokio::time::timeout(DRAIN, async { while inflight.join_next().await.is_some() {} }).await;
                drop(done);
                let _ = tokio::time::timeout(DRAIN, finisher).await;
                return;
            }
            let room = capacity - inflight.len();
            let mut claimed_all = false;
            if room > 0 {
                match this.store.claim_push_deliveries(&this.holder, &providers, now_ms(), lease, room as u32).await {
                    Ok(batch) => {
                        claimed_all = batch.len() == room;
                        for d in batch {
                            let (one, done) = (this.clone(), done.clone());
                            inflight.spawn(async move {
                                let finished = one.deliver(d).await;
                                let _ = done.send(finished).await;
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming push deliveries"),
                }
            }
            if Instant::now() >= next_receipts {
                this.receipts().await;
                next_receipts = Instant::now() + receipts_every;
            }
            if Instant::now() >= next_prune {
                let before = now_ms() - this.config.ledger_retention.as_millis() as i64;
                match this.store.prune_push_ledger(before, PRUNE_ROWS).await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "push ledger pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning the push ledger"),
                }
                next_prune = Instant::now() + PRUNE_EVERY;
            }
            // More may be due: claim again as soon as a slot frees.
            let wait = if claimed_all {
                Duration::ZERO
            } else if room == 0 {
                // Full: a slot freeing is what matters.
                IDLE_CHECK
            } else {
                match this.store.next_push_due().await {
                    Ok(Some(at)) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(IDLE_CHECK),
                    Ok(None) | Err(_) => IDLE_CHECK,
                }
                .min(next_receipts.saturating_duration_since(Instant::now()))
                // Due now but held by another node's lease: do not spin.
                .max(Duration::from_millis(20))
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
                () = this.wake.0.notified(), if inflight.len() < capacity => {}
                () = tokio::time::sleep(wait), if !claimed_all || inflight.is_empty() => {}
            }
        }
    }

    /// How long one delivery may take with its provider: well inside its lease, so the lease
    /// never runs out while it is in flight (a provider may make several requests: FCM's token
    /// exchange, a retry after 401).
    fn send_budget(&self) -> Duration {
        let lease = self.config.lease;
        lease.saturating_sub((lease / 5).max(Duration::from_secs(1)))
    }

    /// Records outcomes as they come, each batch (what is queued, up to `FINISH_BATCH`) in one
    /// transaction; then tells the targets whose token is gone (after their row is final:
    /// disabling a target drops its queued rows).
    async fn finisher(self: Arc<Self>, mut outcomes: mpsc::Receiver<Finished>) {
        let mut batch = Vec::with_capacity(FINISH_BATCH);
        while outcomes.recv_many(&mut batch, FINISH_BATCH).await > 0 {
            let updates: Vec<DeliveryUpdate> = batch.iter().map(|f| f.update.clone()).collect();
            match self.store.finish_push_deliveries(&self.holder, &updates).await {
                Ok(recorded) => {
                    for (f, ok) in batch.iter().zip(recorded) {
                        if !ok {
                            tracing::warn!(
                                delivery = f.update.id,
                                "push delivery lease lost before its outcome was recorded"
                            );
                        }
                    }
                }
                // Left to their leases: the rows are claimed and decided again.
                Err(e) => tracing::warn!(error = %e, rows = batch.len(), "recording push deliveries"),
            }
            for f in batch.drain(..) {
                if let Some((target, reason)) = f.gone {
                    (self.invalidated)(target, reason);
                }
            }
        }
    }

    async fn deliver(&self, d: DueDelivery) -> Finished {
        let now = now_ms();
        let provider_name = d.target.provider.as_str();
        let update = |state: DeliveryState, status: i64, detail: String| DeliveryUpdate {
            id: d.id,
            fence: d.fence,
            state,
            provider_status: status,
            detail,
            due_at_ms: now,
            sent_at_ms: None,
            provider_ref: None,
            receipt_pending: false,
            now_ms: now,
        };
        let mut gone = None;
        let u = match verdict(&d, now) {
            Verdict::Drop(reason) => update(DeliveryState::Dropped, 0, reason.to_string()),
            Verdict::Expire => update(DeliveryState::Expired, 0, "not delivered before it expired".into()),
            Verdict::Send => match self.providers.get(d.target.provider) {
                None => update(DeliveryState::Failed, 0, format!("{provider_name} is not configured on this server")),
                Some(p) => {
                    let n = self.notification(&d).await;
                    let target = Target {
                        id: d.target.id,
                        provider: d.target.provider,
                        token: d.target.token.clone(),
                        app_id: d.target.app_id.clone(),
                        voip: d.target.voip,
                    };
                    let started = Instant::now();
                    let budget = self.send_budget();
                    let outcome = tokio::time::timeout(budget, p.send(&target, &n)).await.unwrap_or_else(|_| {
                        Outcome::Retry { status: 0, after: None, reason: format!("no answer within {budget:?}") }
                    });
                    self.metrics.push_provider(provider_name, started.elapsed());
                    if let Outcome::TokenGone { status, reason } = &outcome {
                        gone = Some(format!("{status} {reason}"));
                    }
                    self.outcome(&d, outcome)
                }
            },
        };
        let state = if u.state == DeliveryState::Queued { "retried" } else { u.state.as_str() };
        self.metrics.push(provider_name, state);
        Finished { update: u, gone: gone.map(|reason| (d.target.id, reason)) }
    }

    /// The ledger update for a provider's answer.
    fn outcome(&self, d: &DueDelivery, outcome: Outcome) -> DeliveryUpdate {
        let now = now_ms();
        let mut u = DeliveryUpdate {
            id: d.id,
            fence: d.fence,
            state: DeliveryState::Failed,
            provider_status: 0,
            detail: String::new(),
            due_at_ms: now,
            sent_at_ms: None,
            provider_ref: None,
            receipt_pending: false,
            now_ms: now,
        };
        match outcome {
            Outcome::Sent { status, provider_ref, receipt_pending } => {
                u.state = DeliveryState::Sent;
                u.provider_status = i64::from(status);
                u.sent_at_ms = Some(now);
                u.provider_ref = provider_ref;
                u.receipt_pending = receipt_pending;
                self.metrics.push_delay(Duration::from_millis(u64::try_from(now - d.created_at_ms).unwrap_or(0)));
            }
            Outcome::Retry { status, after, reason } => {
                u.provider_status = i64::from(status);
                if d.attempts >= i64::from(self.config.max_attempts) {
                    u.detail = format!("gave up after {} attempts: {reason}", d.attempts);
                } else {
                    let delay = backoff(&self.config, d.attempts).max(after.unwrap_or_default());
                    u.state = DeliveryState::Queued;
                    u.due_at_ms = now + delay.as_millis() as i64;
                    u.detail = reason;
                }
            }
            Outcome::TokenGone { status, reason } => {
                u.provider_status = i64::from(status);
                u.detail = format!("the token is gone: {reason}");
            }
            Outcome::Failed { status, reason } => {
                u.provider_status = i64::from(status);
                u.detail = reason;
            }
        }
        u
    }

    /// What the push says (§24.4): ids, counts and kind; the text only with the user's preview
    /// setting and never while the server encrypts at rest.
    async fn notification(&self, d: &DueDelivery) -> Notification {
        let mut data = BTreeMap::new();
        data.insert("v".to_string(), "1".to_string());
        data.insert("kind".to_string(), kind_name(d.kind).to_string());
        data.insert("conversation_id".to_string(), d.conversation.0.to_string());
        data.insert("sender_id".to_string(), d.sender.0.to_string());
        data.insert("unread_count".to_string(), d.unread.to_string());
        if d.seq > 0 {
            data.insert("seq".to_string(), d.seq.to_string());
        }
        if let Some(m) = d.message_id {
            data.insert("message_id".to_string(), m.0.to_string());
        }
        if !d.call_id.is_empty() {
            data.insert("call_id".to_string(), d.call_id.clone());
        }
        let preview = if d.preview && !self.encrypted { self.preview(d).await } else { None };
        let call = d.kind == PushKind::CallInvite;
        Notification {
            delivery_id: d.id,
            data,
            priority: if call { Priority::High } else { Priority::Normal },
            collapse_key: if call {
                format!("call-{}", d.conversation.0)
            } else {
                format!("conv-{}", d.conversation.0)
            },
            expires_at_ms: d.expires_at_ms,
            preview,
        }
    }

    async fn preview(&self, d: &DueDelivery) -> Option<Preview> {
        let title = match self.store.user(d.sender).await {
            Ok(Some(u)) if !u.display_name.is_empty() => u.display_name,
            Ok(Some(u)) => u.username,
            _ => return None,
        };
        let body = match (d.kind, d.message_id) {
            (PushKind::CallInvite, _) => "Incoming call".to_string(),
            (PushKind::AddedToConversation, _) => "Added you to a conversation".to_string(),
            (_, Some(m)) => match self.store.message(d.conversation, m).await {
                Ok(Some(m)) if !m.deleted => cut(&m.text, PREVIEW_BYTES).to_string(),
                _ => return None,
            },
            (_, None) => return None,
        };
        Some(Preview { title, body })
    }

    /// Asks providers that answer later (Expo) for the receipts of what they accepted.
    async fn receipts(&self) {
        let before = now_ms() - self.config.expo.receipt_delay.as_millis() as i64;
        let kinds = self.providers.kinds();
        let pending = match self.store.pending_push_receipts(&kinds, before, RECEIPTS_BATCH).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading pending push receipts");
                return;
            }
        };
        let mut by_provider: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for p in pending {
            by_provider.entry(p.provider).or_default().push(p);
        }
        for (provider, rows) in by_provider {
            let Some(p) = self.providers.get(provider) else { continue };
            let refs: Vec<String> = rows.iter().map(|r| r.provider_ref.clone()).collect();
            let answers: BTreeMap<String, Outcome> = p.receipts(&refs).await.into_iter().collect();
            let give_up = now_ms() - RECEIPT_GIVE_UP.as_millis() as i64;
            for row in rows {
                let failed = match answers.get(&row.provider_ref) {
                    // Not answered (yet): asked again next time, until the provider has
                    // surely forgotten it (Expo keeps receipts a day); then it stays SENT.
                    None | Some(Outcome::Retry { .. }) if row.sent_at_ms > give_up => continue,
                    None | Some(Outcome::Sent { .. } | Outcome::Retry { .. }) => None,
                    Some(Outcome::TokenGone { status, reason }) => {
                        (self.invalidated)(row.target_id, format!("{status} {reason}"));
                        Some((i64::from(*status), format!("the token is gone: {reason}")))
                    }
                    Some(Outcome::Failed { status, reason }) => Some((i64::from(*status), reason.clone())),
                };
                if failed.is_some() {
                    self.metrics.push(provider.as_str(), "failed");
                }
                let failed = failed.as_ref().map(|(s, d)| (*s, d.as_str()));
                if let Err(e) = self.store.settle_push_receipt(row.id, failed, now_ms()).await {
                    tracing::warn!(error = %e, "recording a push receipt");
                }
            }
        }
    }
}

/// The delay before attempt `attempts + 1`: `initial_backoff` doubled per attempt made, capped
/// at `max_backoff`, with ±20% jitter so retries of many rows spread out.
pub(super) fn backoff(config: &PushConfig, attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let base = config.initial_backoff.saturating_mul(1 << doublings).min(config.max_backoff);
    let mut b = [0u8; 2];
    let jitter =
        if getrandom::fill(&mut b).is_ok() { f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) } else { 0.5 };
    base.mul_f64(0.8 + 0.4 * jitter)
}

fn kind_name(k: PushKind) -> &'static str {
    match k {
        PushKind::Message => "message",
        PushKind::Mention => "mention",
        PushKind::CallInvite => "call_invite",
        PushKind::AddedToConversation => "added_to_conversation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap_with_jitter() {
        let c = PushConfig::default();
        for (attempts, base) in [(1, 1), (2, 2), (3, 4), (4, 8), (12, 300), (40, 300)] {
            let b = backoff(&c, attempts).as_secs_f64();
            let base = f64::from(base);
            assert!(b >= base * 0.8 - 1e-9 && b <= base * 1.2 + 1e-9, "attempt {attempts}: {b} not near {base}");
        }
    }

    #[test]
    fn a_preview_is_cut_on_a_character_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }
}
