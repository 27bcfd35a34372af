//! Push providers behind one trait (docs/operations.md "Push notifications"): what a delivery
//! is handed to and what the provider answered, for UnifiedPush / webhooks, FCM HTTP v1, APNs
//! (token authentication, HTTP/2) and Expo (tickets, then receipts).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::PushConfig;

pub mod apns;
pub mod expo;
pub mod fcm;
pub mod http;
pub mod webpush;

pub use apns::Apns;
pub use expo::Expo;
pub use fcm::Fcm;
pub use webpush::WebPush;

/// Which service carries a target's pushes (the store's type; stored by name).
pub use crate::store::PushProvider as ProviderKind;

/// Where a push goes: one registered target of one device.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The target's id (`push_targets.id`).
    pub id: i64,
    pub provider: ProviderKind,
    /// The provider's device token (FCM registration token, APNs device token in hex, Expo
    /// `ExponentPushToken[…]`) or, for WebPush, the endpoint URL.
    pub token: String,
    /// The app the token belongs to: APNs topic (bundle id), FCM/Expo app or project hint; empty
    /// for the configured default.
    pub app_id: String,
    /// An APNs PushKit (VoIP) token: only call invites go to it, as `apns-push-type: voip`.
    pub voip: bool,
}

impl std::fmt::Debug for Target {
    // Tokens are credentials of a sort (whoever holds one can push to the device): never logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("token", &"<redacted>")
            .field("app_id", &self.app_id)
            .field("voip", &self.voip)
            .finish()
    }
}

/// How urgently the provider should deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Messages: FCM `normal`, APNs priority 5 (10 with an alert), Urgency `normal`.
    Normal,
    /// Call invites: FCM `high`, APNs priority 10 (`voip` push type to a VoIP target), Urgency `high`.
    High,
}

/// What a notification says when the user allowed previews (never with encryption at rest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    /// The sender's display name (or the conversation's title for groups).
    pub title: String,
    /// The message's text, cut to fit the provider's payload limit.
    pub body: String,
}

/// One push, as every provider gets it. `data` is the same everywhere: string keys and values
/// (`kind`, `conversation_id`, `seq`, `unread_count`, `call_id`, …; docs/protocol.md §24.4),
/// small enough for every provider's 4 KB limit with `preview` included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The ledger row (`push_deliveries.id`): an idempotency key where a provider takes one.
    pub delivery_id: i64,
    pub data: BTreeMap<String, String>,
    pub priority: Priority,
    /// One per conversation: a burst becomes one notification on the device (APNs
    /// `apns-collapse-id`, FCM `collapse_key`, WebPush `Topic`, Expo's none).
    pub collapse_key: String,
    /// When the push stops being worth delivering (epoch ms): provider TTL / `apns-expiration`.
    pub expires_at_ms: i64,
    pub preview: Option<Preview>,
}

/// What a provider answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted. `provider_ref` is the provider's id for it (apns-id, FCM message name, Expo
    /// ticket id); with `receipt_pending` the provider tells later whether it went through
    /// (Expo: ask [`Provider::receipts`] with the ref).
    Sent { status: u16, provider_ref: Option<String>, receipt_pending: bool },
    /// Try again later: 5xx, 429, a timeout or a connection error (`status` 0). `after` is the
    /// provider's Retry-After when it gave one.
    Retry { status: u16, after: Option<Duration>, reason: String },
    /// The token or endpoint no longer reaches a device (APNs 410 / BadDeviceToken /
    /// Unregistered, FCM UNREGISTERED, WebPush 404/410, Expo DeviceNotRegistered): the target is
    /// disabled and its device told (§24.2).
    TokenGone { status: u16, reason: String },
    /// Refused for good for this notification (4xx other than the above, a misconfiguration).
    Failed { status: u16, reason: String },
}

/// A target refused at registration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTarget(pub String);

/// A provider that could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
#[error("push.{provider}: {message}")]
pub struct ProviderSetupError {
    pub provider: &'static str,
    pub message: String,
}

/// One push service.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug + 'static {
    fn kind(&self) -> ProviderKind;

    /// Checks a token (or endpoint) and app id at registration, before anything is stored:
    /// shape and length only (WebPush: URL, scheme, host rules; no request is made).
    fn check_target(&self, token: &str, app_id: &str, voip: bool) -> Result<(), InvalidTarget>;

    /// Hands one notification to the provider. Never panics, never retries by itself: the
    /// caller keeps the ledger and the backoff.
    async fn send(&self, target: &Target, notification: &Notification) -> Outcome;

    /// For providers that answer later (Expo receipts): the outcome of each ref that has one now
    /// (`Sent` for delivered, `TokenGone`, `Failed`); refs not ready yet are left out.
    async fn receipts(&self, refs: &[String]) -> Vec<(String, Outcome)> {
        let _ = refs;
        Vec::new()
    }
}

/// The providers configured on this node, by kind.
#[derive(Clone, Debug, Default)]
pub struct Providers {
    by_kind: BTreeMap<&'static str, Arc<dyn Provider>>,
}

impl Providers {
    /// The providers `config` enables (WebPush and Expo need no credentials; FCM and APNs need
    /// their key files). Reads and checks the key files now.
    ///
    /// # Errors
    /// A key file that cannot be read or parsed.
    pub fn from_config(config: &PushConfig) -> Result<Self, ProviderSetupError> {
        let timeout = config.request_timeout;
        let mut providers = Self::default();
        if config.webpush.enabled {
            providers = providers.with(Arc::new(WebPush::new(&config.webpush, timeout)?));
        }
        if config.fcm.service_account_file.is_some() {
            providers = providers.with(Arc::new(Fcm::new(&config.fcm, timeout)?));
        }
        if config.apns.key_file.is_some() {
            providers = providers.with(Arc::new(Apns::new(&config.apns, timeout)?));
        }
        if config.expo.enabled {
            providers = providers.with(Arc::new(Expo::new(&config.expo, timeout)?));
        }
        Ok(providers)
    }

    /// Adds (or replaces) one, for tests and embedders.
    pub fn with(mut self, provider: Arc<dyn Provider>) -> Self {
        self.by_kind.insert(provider.kind().as_str(), provider);
        self
    }

    pub fn get(&self, kind: ProviderKind) -> Option<&Arc<dyn Provider>> {
        self.by_kind.get(kind.as_str())
    }

    /// Kinds configured, for ListPushTargets' answer and the logs.
    pub fn kinds(&self) -> Vec<ProviderKind> {
        ProviderKind::ALL.iter().copied().filter(|k| self.get(*k).is_some()).collect()
    }
}
