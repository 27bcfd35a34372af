//! Push notification settings (docs/protocol.md §24, docs/operations.md "Push notifications"):
//! when a device that is not connected is told, how deliveries are retried, and the providers
//! (UnifiedPush / webhook, FCM HTTP v1, APNs, Expo) with their credentials and base URLs.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Push notifications and the providers they go through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Whether this node plans and sends pushes. Off: targets can still be registered and the
    /// ledger read; another node of the cluster (or this one when turned on) sends.
    pub enabled: bool,
    /// How long a connected device has to acknowledge (§14.4 Ack) an entry before it is pushed
    /// anyway (its connection may be half dead, or the app in the background).
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// A notification not delivered to its provider within this is `EXPIRED` (a message push is
    /// worth little an hour late; the app syncs when opened).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Attempts (the first included) before a delivery is `FAILED`.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles it (with jitter), capped at `max_backoff`.
    /// A provider's Retry-After wins when longer.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long a node holds a delivery it is sending before another node may take it over (a
    /// node dying mid-send loses no push; at most one repeat, which the collapse id makes harmless).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Deliveries sent at once per node.
    pub concurrency: u32,
    /// How often the planner looks for log entries it has not read (commits of a node that died
    /// before planning them, or of a node not pushing).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How long ended deliveries stay in the ledger (ListPushDeliveries) before they are deleted.
    #[serde(with = "humantime_serde")]
    pub ledger_retention: Duration,
    /// Push targets one device (session) may register.
    pub max_targets_per_device: u32,
    /// Per-request timeout towards a provider.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub webpush: WebPushConfig,
    pub fcm: FcmConfig,
    pub apns: ApnsConfig,
    pub expo: ExpoConfig,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ack_wait: Duration::from_secs(5),
            max_age: Duration::from_secs(3600),
            max_attempts: 8,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            lease: Duration::from_secs(30),
            concurrency: 32,
            sweep_interval: Duration::from_secs(30),
            ledger_retention: Duration::from_secs(7 * 24 * 3600),
            max_targets_per_device: 4,
            request_timeout: Duration::from_secs(10),
            webpush: WebPushConfig::default(),
            fcm: FcmConfig::default(),
            apns: ApnsConfig::default(),
            expo: ExpoConfig::default(),
        }
    }
}

/// UnifiedPush and generic webhooks: an HTTP POST to the endpoint the device registered
/// (RFC 8030 headers `TTL`, `Urgency`, `Topic`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebPushConfig {
    pub enabled: bool,
    /// Endpoints over plain `http://` are refused unless set (tests, private gateways).
    pub allow_http: bool,
    /// Endpoints whose host resolves to a loopback, private, link-local or otherwise
    /// non-global address are refused unless set: a registered endpoint must not make the
    /// server reach into its own network.
    pub allow_private_addresses: bool,
    /// When not empty, only endpoints whose host is one of these (or a subdomain of one).
    pub allowed_hosts: Vec<String>,
}

impl Default for WebPushConfig {
    fn default() -> Self {
        Self { enabled: true, allow_http: false, allow_private_addresses: false, allowed_hosts: Vec::new() }
    }
}

/// Firebase Cloud Messaging, HTTP v1 API: a service account's JWT is exchanged for an OAuth 2
/// access token (refreshed before it expires), sent as a bearer token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FcmConfig {
    /// The service account's JSON key file (`client_email`, `private_key`, `project_id`,
    /// `token_uri`). Unset: FCM targets are refused.
    pub service_account_file: Option<PathBuf>,
    /// Overrides the key file's `project_id`.
    pub project_id: Option<String>,
    /// Base URL of the FCM API (default `https://fcm.googleapis.com`).
    pub base_url: String,
    /// Overrides the key file's `token_uri` (the OAuth 2 token endpoint).
    pub token_url: Option<String>,
}

impl Default for FcmConfig {
    fn default() -> Self {
        Self {
            service_account_file: None,
            project_id: None,
            base_url: "https://fcm.googleapis.com".into(),
            token_url: None,
        }
    }
}

/// Apple Push Notification service with token-based authentication: an ES256 JWT signed with
/// the team's `.p8` key, reused for `token_lifetime` (Apple refuses tokens older than an hour and
/// answers 429 to tokens renewed more often than every 20 minutes), over HTTP/2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApnsConfig {
    /// The `.p8` key file (PKCS#8 PEM, P-256). Unset: APNs targets are refused.
    pub key_file: Option<PathBuf>,
    /// The key's 10-character id (the JWT's `kid`).
    pub key_id: String,
    /// The team id (the JWT's `iss`).
    pub team_id: String,
    /// The app's bundle id: the default `apns-topic` (VoIP pushes use `BUNDLE.voip`) when the
    /// target names no app id.
    pub topic: String,
    /// Base URL (default production `https://api.push.apple.com`; sandbox
    /// `https://api.sandbox.push.apple.com`).
    pub base_url: String,
    /// How long one provider token is reused: 20 to 60 minutes.
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            key_id: String::new(),
            team_id: String::new(),
            topic: String::new(),
            base_url: "https://api.push.apple.com".into(),
            token_lifetime: Duration::from_secs(50 * 60),
        }
    }
}

/// Expo push service: push tickets at send, receipts polled later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExpoConfig {
    pub enabled: bool,
    /// Base URL (default `https://exp.host`).
    pub base_url: String,
    /// An Expo access token, when the project requires one (sent as a bearer token).
    pub access_token_file: Option<PathBuf>,
    /// How long after a ticket its receipt is asked for (Expo suggests about 15 minutes).
    #[serde(with = "humantime_serde")]
    pub receipt_delay: Duration,
}

impl Default for ExpoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://exp.host".into(),
            access_token_file: None,
            receipt_delay: Duration::from_secs(15 * 60),
        }
    }
}

impl PushConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.ack_wait > Duration::from_secs(300) {
            return bad("push.ack_wait must be at most 5m");
        }
        if self.max_age < Duration::from_secs(10) {
            return bad("push.max_age must be at least 10s");
        }
        if !(1..=50).contains(&self.max_attempts) {
            return bad("push.max_attempts must be 1 to 50");
        }
        if self.initial_backoff.is_zero() || self.initial_backoff > self.max_backoff {
            return bad("push.initial_backoff must be above zero and at most push.max_backoff");
        }
        if self.lease < Duration::from_secs(1) || self.lease <= self.request_timeout {
            return bad("push.lease must be at least 1s and longer than push.request_timeout");
        }
        if !(1..=1024).contains(&self.concurrency) {
            return bad("push.concurrency must be 1 to 1024");
        }
        if self.sweep_interval < Duration::from_secs(1) {
            return bad("push.sweep_interval must be at least 1s");
        }
        if self.ledger_retention < Duration::from_secs(3600) {
            return bad("push.ledger_retention must be at least 1h");
        }
        if !(1..=32).contains(&self.max_targets_per_device) {
            return bad("push.max_targets_per_device must be 1 to 32");
        }
        let lifetime = self.apns.token_lifetime;
        if lifetime < Duration::from_secs(20 * 60) || lifetime > Duration::from_secs(60 * 60) {
            return bad("push.apns.token_lifetime must be 20 to 60 minutes");
        }
        if self.apns.key_file.is_some() && (self.apns.key_id.is_empty() || self.apns.team_id.is_empty()) {
            return bad("push.apns.key_file needs push.apns.key_id and push.apns.team_id");
        }
        for (name, url) in [("fcm", &self.fcm.base_url), ("apns", &self.apns.base_url), ("expo", &self.expo.base_url)] {
            if url::Url::parse(url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                return Err(ConfigError::Invalid(format!("push.{name}.base_url must be an http(s) URL")));
            }
        }
        Ok(())
    }
}
