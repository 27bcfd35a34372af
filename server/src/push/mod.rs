//! Push notifications (docs/protocol.md §24): devices' push targets, the users' notification
//! settings, the planner that turns committed log entries into ledger rows, and the sender that
//! hands them to the providers and keeps the ledger. A subscriber of the domain events: commits
//! wake the planner, ringing calls are planned at once, a device that connects is told about
//! targets its provider dropped, ended sessions and deleted accounts lose their targets.

mod convert;
mod planner;
pub mod providers;
mod sender;

use std::sync::Arc;

use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, event};
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, DomainEvent, Subscriber};
use crate::config::PushConfig;
use crate::error::ServerError;
use crate::hub::{Audience, Hub};
use crate::metrics::Metrics;
use crate::session::Caller;
use crate::store::{
    CallInvitePlan, ConvPushSetting, NewTarget, PushLevel, PushProvider, SESSION_ENDED, Store, TargetRec,
    TargetSelector, now_ms,
};
pub use planner::Planner;
use providers::Providers;

/// Longest token or endpoint accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 4096;
/// Longest app id accepted, in bytes.
const MAX_APP_ID_BYTES: usize = 256;
/// Most deliveries one ListPushDeliveries answers.
const MAX_PAGE: u32 = 100;

/// The push service: a cheap-clone handle.
#[derive(Clone, Debug)]
pub struct Push(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    config: PushConfig,
    providers: Providers,
    metrics: Metrics,
    /// With encryption at rest no push ever carries content (§24.4).
    encrypted: bool,
    planner: Planner,
    sender: sender::Wake,
}

impl Push {
    /// The service on `store`, sending through `providers`; subscribe it to `bus` and start
    /// [`Push::run`]. Pushes carry no content when `store` encrypts at rest.
    pub fn new(
        config: PushConfig,
        providers: Providers,
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        bus: Arc<dyn Bus>,
        metrics: Metrics,
    ) -> Self {
        let encrypted = store.sealer().is_on();
        Self(Arc::new(Inner {
            store,
            hub,
            bus,
            config,
            providers,
            metrics,
            encrypted,
            planner: Planner::new(),
            sender: sender::Wake::default(),
        }))
    }

    /// Runs the planner and the sender until `shutdown` (at once when `push.enabled` is off).
    /// `holder` names this node in the ledger's leases.
    pub async fn run(self, holder: String, shutdown: CancellationToken) {
        if !self.0.config.enabled {
            return;
        }
        let connected = {
            let hub = self.0.hub.clone();
            Arc::new(move |session: &str| hub.connected_anywhere(session)) as planner::Connected
        };
        let planner = self.0.planner.clone().run(
            self.0.store.clone(),
            self.0.config.clone(),
            connected,
            self.0.sender.clone(),
            shutdown.clone(),
        );
        let sender = sender::Sender {
            store: self.0.store.clone(),
            providers: self.0.providers.clone(),
            config: self.0.config.clone(),
            metrics: self.0.metrics.clone(),
            encrypted: self.0.encrypted,
            holder,
            wake: self.0.sender.clone(),
            invalidated: {
                let this = self.clone();
                Arc::new(move |target: i64, reason: String| this.token_gone(target, reason))
            },
        }
        .run(shutdown);
        tokio::join!(planner, sender);
    }

    /// The providers configured here.
    pub fn providers(&self) -> &Providers {
        &self.0.providers
    }

    /// §24.1
    pub async fn register(&self, a: &Caller, r: &v1::RegisterPushTarget) -> Result<v1::PushTarget, ServerError> {
        let provider = convert::provider(r.provider)
            .ok_or_else(|| ServerError::invalid("register_push_target.provider", "WEBPUSH, FCM, APNS or EXPO"))?;
        check_text("register_push_target.token", &r.token, 1, MAX_TOKEN_BYTES)?;
        check_text("register_push_target.app_id", &r.app_id, 0, MAX_APP_ID_BYTES)?;
        if r.voip && provider != PushProvider::Apns {
            return Err(ServerError::invalid("register_push_target.voip", "VoIP targets are APNs PushKit tokens"));
        }
        let Some(p) = self.0.providers.get(provider) else {
            return Err(ServerError::FailedPrecondition(format!(
                "this server sends no pushes through {} (ListPushTargets names those it does)",
                provider.as_str()
            )));
        };
        p.check_target(&r.token, &r.app_id, r.voip)
            .map_err(|e| ServerError::invalid("register_push_target.token", e.to_string()))?;
        let max = self.0.config.max_targets_per_device;
        let t = NewTarget {
            user: a.user_id,
            session: a.session_id.clone(),
            provider,
            token: r.token.clone(),
            app_id: r.app_id.clone(),
            voip: r.voip,
            now_ms: now_ms(),
            max_per_device: max,
        };
        match self.0.store.register_push_target(&t).await? {
            Some(rec) => Ok(convert::target(&rec, &a.session_id)),
            None => Err(ServerError::FailedPrecondition(format!(
                "this device already has {max} push targets: unregister one first"
            ))),
        }
    }

    /// §24.1
    pub async fn unregister(&self, a: &Caller, r: &v1::UnregisterPushTarget) -> Result<(), ServerError> {
        let not_found = || ServerError::NotFound("no such push target".into());
        let id = i64::try_from(r.target_id).map_err(|_| not_found())?;
        if !self.0.store.unregister_push_target(a.user_id, id, now_ms()).await? {
            return Err(not_found());
        }
        Ok(())
    }

    /// §24.1
    pub async fn list_targets(
        &self,
        a: &Caller,
        r: &v1::ListPushTargets,
    ) -> Result<v1::ListPushTargetsResult, ServerError> {
        let session = (!r.all_devices).then_some(a.session_id.as_str());
        let targets = self.0.store.push_targets(a.user_id, session).await?;
        Ok(v1::ListPushTargetsResult {
            targets: targets.iter().map(|t| convert::target(t, &a.session_id)).collect(),
            providers: self.0.providers.kinds().into_iter().map(|k| convert::provider_wire(k) as i32).collect(),
        })
    }

    /// §24.5
    pub async fn deliveries(
        &self,
        a: &Caller,
        r: &v1::ListPushDeliveries,
    ) -> Result<v1::ListPushDeliveriesResult, ServerError> {
        if r.limit > MAX_PAGE {
            return Err(ServerError::invalid("list_push_deliveries.limit", "at most 100"));
        }
        let limit = if r.limit == 0 { 50 } else { r.limit };
        let before = i64::try_from(r.before_id).unwrap_or(i64::MAX);
        let mut rows = self.0.store.push_deliveries(a.user_id, before, limit + 1).await?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Ok(v1::ListPushDeliveriesResult { deliveries: rows.iter().map(convert::delivery).collect(), has_more })
    }

    /// §24.3
    pub async fn settings(&self, a: &Caller) -> Result<v1::PushSettings, ServerError> {
        let s = self.0.store.push_settings(a.user_id, now_ms()).await?;
        Ok(convert::settings(&s))
    }

    /// §24.3
    pub async fn set_settings(&self, a: &Caller, r: &v1::SetPushSettings) -> Result<v1::PushSettings, ServerError> {
        let level = match r.level {
            0 => None,
            v => Some(convert::level(v).ok_or_else(|| ServerError::invalid("set_push_settings.level", "a PushLevel"))?),
        };
        self.0.store.set_push_settings(a.user_id, level, r.preview).await?;
        self.settings(a).await
    }

    /// §24.3
    pub async fn set_conversation(
        &self,
        a: &Caller,
        r: &v1::SetConversationPushSettings,
    ) -> Result<v1::ConversationPushSetting, ServerError> {
        let conversation = crate::access::id("set_conversation_push_settings.conversation_id", r.conversation_id)?;
        let level = match r.level {
            0 => None,
            v => Some(
                convert::level(v)
                    .ok_or_else(|| ServerError::invalid("set_conversation_push_settings.level", "a PushLevel"))?,
            ),
        };
        let now = now_ms();
        let until_ms = i64::try_from(r.until_ms).unwrap_or(i64::MAX);
        if until_ms != 0 && until_ms <= now {
            return Err(ServerError::invalid("set_conversation_push_settings.until_ms", "0 or a time in the future"));
        }
        let setting = ConvPushSetting { conversation, level: level.unwrap_or(PushLevel::All), until_ms };
        if !self.0.store.set_conversation_push(a.user_id, setting, level.is_none()).await? {
            return Err(ServerError::NotFound("no such conversation".into()));
        }
        Ok(v1::ConversationPushSetting {
            conversation_id: crate::wire::conv(conversation),
            level: level.map_or(0, |l| convert::level_wire(l) as i32),
            until_ms: if level.is_some() { r.until_ms } else { 0 },
        })
    }

    /// Tells the devices of `targets` (disabled by their provider) on their connections,
    /// wherever they are; a device not connected is told when it next authenticates.
    fn announce(&self, targets: Vec<TargetRec>) {
        let frames: Vec<(Audience, bytes::Bytes)> = targets
            .iter()
            .map(|t| {
                let ev = event::Event::PushTargetInvalidated(v1::PushTargetInvalidated {
                    target: Some(convert::target(t, &t.session)),
                });
                (Audience::Session(t.session.clone()), encode_server(&event_frame(ev)))
            })
            .collect();
        if !frames.is_empty() {
            self.0.bus.publish(DomainEvent::Frames { frames, droppable: false });
        }
    }

    /// A provider said a target's token is gone: the target is disabled, and its device told now
    /// when it is connected (else at its next authentication).
    fn token_gone(&self, target: i64, reason: String) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.0.store.disable_push_targets(TargetSelector::Ids(&[target]), &reason, false, now_ms()).await {
                Ok(disabled) => {
                    for t in disabled {
                        if this.0.hub.connected_anywhere(&t.session) {
                            this.attached(t.session);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "disabling a push target"),
            }
        });
    }

    /// A device authenticated: what its provider dropped since it last heard.
    fn attached(&self, session: String) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.0.store.take_untold_push_targets(&session, now_ms()).await {
                Ok(targets) => this.announce(targets),
                Err(e) => tracing::warn!(error = %e, "reading push targets to announce"),
            }
        });
    }

    fn disable(&self, which: Which) {
        let this = self.clone();
        tokio::spawn(async move {
            let r = match &which {
                Which::Sessions(s) => {
                    this.0.store.disable_push_targets(TargetSelector::Sessions(s), SESSION_ENDED, true, now_ms()).await
                }
                Which::User(u) => {
                    this.0.store.disable_push_targets(TargetSelector::User(*u), SESSION_ENDED, true, now_ms()).await
                }
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "disabling the push targets of ended sessions");
            }
        });
    }

    fn call(&self, plan: CallInvitePlan) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.0.store.plan_call_push(&plan).await {
                Ok(n) if n > 0 => this.0.sender.wake(),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "planning call invite pushes"),
            }
        });
    }
}

enum Which {
    Sessions(Vec<String>),
    User(crate::store::UserId),
}

/// §5.4 text rules for a token or app id: length in bytes, no control characters.
fn check_text(field: &'static str, v: &str, min: usize, max: usize) -> Result<(), ServerError> {
    if v.len() < min || v.len() > max || v.chars().any(char::is_control) {
        let what = if min > 0 {
            format!("1 to {max} bytes, no control characters")
        } else {
            format!("at most {max} bytes, no control characters")
        };
        return Err(ServerError::invalid(field, what));
    }
    Ok(())
}

impl Subscriber for Push {
    fn name(&self) -> &'static str {
        "push"
    }

    fn handle(&self, event: &DomainEvent) {
        match event {
            // Only where the write was committed; the planner's sweep catches up the rest.
            DomainEvent::Committed(c) => {
                if let Some(applied) = &c.applied {
                    self.0.planner.dirty(applied.conversations());
                }
            }
            // Planned here whether or not this node sends (a node that does sends it). Not from
            // the log: a call rings for seconds, and one that rang while its node died is gone.
            DomainEvent::CallInvited { call_id, conversation, caller, callees, ring_deadline_ms } => {
                self.call(CallInvitePlan {
                    call_id: call_id.clone(),
                    conversation: *conversation,
                    caller: *caller,
                    callees: callees.clone(),
                    now_ms: now_ms(),
                    expires_at_ms: *ring_deadline_ms,
                });
            }
            DomainEvent::SessionAttached { caller, .. } => self.attached(caller.session_id.clone()),
            DomainEvent::SessionsRevoked { sessions, .. } => self.disable(Which::Sessions(sessions.clone())),
            DomainEvent::AccountDeleted { user, .. } => self.disable(Which::User(*user)),
            DomainEvent::UserBlocked { .. }
            | DomainEvent::SessionDetached { .. }
            | DomainEvent::PresenceChanged { .. }
            | DomainEvent::Frames { .. }
            | DomainEvent::NodeDown { .. } => {}
        }
    }
}
