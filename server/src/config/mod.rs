//! Server configuration: one typed struct. Defaults live in code, then the TOML file, then
//! `CONFAB_*` environment variables, then command-line flags; validated before start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod args;
mod calls;
mod cluster;
mod media;
mod push;
mod search;
pub use args::ConfigArgs;
pub use calls::CallsConfig;
pub use cluster::{ClusterConfig, NatsUrl, is_token};
pub use media::{BlobBackend, MediaConfig, S3Config};
pub use push::{ApnsConfig, ExpoConfig, FcmConfig, PushConfig, WebPushConfig};
pub use search::SearchConfig;

/// The whole server configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// WebSocket and HTTP (/healthz, /metrics) listen address.
    pub ws_listen: SocketAddr,
    /// QUIC listen address (UDP).
    pub quic_listen: SocketAddr,
    /// Directory for the embedded database, the generated certificate and keys.
    pub data_dir: PathBuf,
    /// `postgres://…` selects PostgreSQL; unset means the embedded SQLite file in the data dir.
    pub database_url: Option<DatabaseUrl>,
    pub log_format: LogFormat,
    /// Log filter in RUST_LOG syntax; RUST_LOG itself wins when set.
    pub log_filter: String,
    pub tls: TlsConfig,
    pub limits: Limits,
    #[serde(alias = "storage")]
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub calls: CallsConfig,
    /// Several nodes on one PostgreSQL, linked by NATS (docs/operations.md "Several nodes").
    pub cluster: ClusterConfig,
    /// Uploads, downloads, images and where their bytes live (docs/operations.md "Media").
    pub media: MediaConfig,
    /// Message search: the indexer and how long a search waits for it (docs/operations.md "Search").
    pub search: SearchConfig,
    /// Push notifications to devices that are not connected (docs/operations.md "Push notifications").
    pub push: PushConfig,
    /// How long shutdown waits for connections to drain before closing them.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ws_listen: SocketAddr::from(([127, 0, 0, 1], 7600)),
            quic_listen: SocketAddr::from(([127, 0, 0, 1], 7601)),
            data_dir: PathBuf::from("confab-data"),
            database_url: None,
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            tls: TlsConfig::default(),
            limits: Limits::default(),
            store: StoreConfig::default(),
            auth: AuthConfig::default(),
            calls: CallsConfig::default(),
            cluster: ClusterConfig::default(),
            media: MediaConfig::default(),
            search: SearchConfig::default(),
            push: PushConfig::default(),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The QUIC certificate. Without paths, a self-signed one is generated into the data dir.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_path: Option<PathBuf>,
    /// PEM private key.
    pub key_path: Option<PathBuf>,
    /// Extra names for the generated self-signed certificate (localhost, 127.0.0.1 and ::1 are always in).
    pub hostnames: Vec<String>,
}

/// Per-connection and global limits (docs/protocol.md §8).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_frame_bytes: u32,
    pub max_requests_in_flight: u32,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Deadline from accept to Hello: TLS, WebSocket upgrade and the Hello frame.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    /// Frames queued for one connection before it is closed as a slow consumer.
    pub outbound_queue_frames: u32,
    /// tungstenite's per-connection read buffer.
    pub ws_read_buffer_bytes: u32,
    /// QUIC connection receive window.
    pub quic_receive_window_bytes: u32,
    /// Longest message text, in bytes.
    pub max_message_text_bytes: u32,
    /// A typing indicator lasts this long without a refresh.
    #[serde(with = "humantime_serde")]
    pub typing_ttl: Duration,
    /// Messages one account may send per minute, counted on each node (0: unlimited); an
    /// administrator's override replaces it for one account (docs/protocol.md §26.8).
    pub messages_per_minute: u32,
    /// Reports one account may file (docs/protocol.md §27.1): a burst, then one more every
    /// period; counted in the store, so across every node.
    pub reports_per_account: RateLimit,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: confab_protocol::DEFAULT_MAX_FRAME_BYTES,
            max_requests_in_flight: 32,
            heartbeat_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            outbound_queue_frames: 1024,
            ws_read_buffer_bytes: 4096,
            quic_receive_window_bytes: 4 * 1024 * 1024,
            max_message_text_bytes: 16 * 1024,
            typing_ttl: Duration::from_secs(5),
            messages_per_minute: 0,
            reports_per_account: RateLimit::new(20, Duration::from_secs(60)),
        }
    }
}

/// Database settings: the pool, and encryption at rest (docs/operations.md "Encryption at rest").
/// The section is `[store]`; `[storage]` is accepted as its other name.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub pool_size: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// The key-encryption key (32 bytes, raw or base64): set, message contents and files are
    /// encrypted before they are stored. Once a database is encrypted it cannot start without it.
    pub encryption_key_file: Option<PathBuf>,
    /// Earlier key-encryption keys, to unwrap data keys until `keys rotate-kek` has re-wrapped
    /// them under `encryption_key_file`.
    pub encryption_previous_key_files: Vec<PathBuf>,
    /// How long one data key seals new contents of a conversation (and new files).
    #[serde(with = "humantime_serde")]
    pub data_key_period: Duration,
    /// Run the re-encryption job in the background (one node at a time): it seals what a
    /// database held in clear before encryption was turned on, and what older data-key
    /// generations sealed. Off: only `confab-server keys reencrypt` does.
    pub background_reencryption: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            pool_size: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
            encryption_key_file: None,
            encryption_previous_key_files: Vec::new(),
            data_key_period: Duration::from_secs(30 * 86_400),
            background_reencryption: true,
        }
    }
}

/// Accounts, tokens, one-time codes and their rate limits (docs/protocol.md §11).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// PEM (PKCS#8) Ed25519 key signing access tokens; default: generated into the database
    /// (`server_secrets`) with PostgreSQL, so every node shares it, into the data dir with SQLite.
    pub signing_key_path: Option<PathBuf>,
    /// File with the secret keying one-time code hashes; default: like `signing_key_path`.
    pub secret_path: Option<PathBuf>,
    pub issuer: String,
    pub audience: String,
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// Clock skew tolerated when checking token times.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Password hashes computed at once (each takes 19 MiB and one core for tens of ms).
    pub hash_concurrency: u32,
    #[serde(with = "humantime_serde")]
    pub code_ttl: Duration,
    pub code_max_attempts: u32,
    /// Where one-time codes go: "log" (development: printed in the server log) or "webhook".
    pub code_sender: CodeSenderKind,
    /// URL receiving a JSON POST per code with `code_sender = "webhook"`.
    pub webhook_url: Option<String>,
    /// Signs webhook bodies (header X-Confab-Signature: sha256=HMAC(secret, body)).
    pub webhook_secret: Option<Secret>,
    pub rate_limits: RateLimits,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            signing_key_path: None,
            secret_path: None,
            issuer: "confab".into(),
            audience: "confab".into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            leeway: Duration::from_secs(30),
            hash_concurrency: 2,
            code_ttl: Duration::from_secs(10 * 60),
            code_max_attempts: 5,
            code_sender: CodeSenderKind::Log,
            webhook_url: None,
            webhook_secret: None,
            rate_limits: RateLimits::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CodeSenderKind {
    #[default]
    Log,
    Webhook,
}

/// Token buckets: `burst` attempts at once, one more every `per`. Written "BURST/PER", e.g. "5/1m".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub per: Duration,
}

impl RateLimit {
    pub const fn new(burst: u32, per: Duration) -> Self {
        Self { burst, per }
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (b, p) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected BURST/PER, e.g. 5/1m"))?;
        let burst = b.trim().parse().map_err(|_| format!("{s:?}: bad burst"))?;
        let per = humantime::parse_duration(p.trim()).map_err(|e| format!("{s:?}: {e}"))?;
        if burst == 0 || per.is_zero() {
            return Err(format!("{s:?}: burst and period must be positive"));
        }
        Ok(Self { burst, per })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.burst, humantime::format_duration(self.per))
    }
}

impl Serialize for RateLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Rate limits on account operations, per account (or destination) and per client IP.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub login_per_account: RateLimit,
    pub login_per_ip: RateLimit,
    pub code_request_per_destination: RateLimit,
    pub code_request_per_ip: RateLimit,
    pub code_verify_per_ip: RateLimit,
    pub register_per_ip: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login_per_account: RateLimit::new(5, Duration::from_secs(60)),
            login_per_ip: RateLimit::new(30, Duration::from_secs(2)),
            code_request_per_destination: RateLimit::new(3, Duration::from_secs(120)),
            code_request_per_ip: RateLimit::new(10, Duration::from_secs(30)),
            code_verify_per_ip: RateLimit::new(20, Duration::from_secs(5)),
            register_per_ip: RateLimit::new(20, Duration::from_secs(3)),
        }
    }
}

/// A secret string, redacted in Debug and in `--print-config`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Self(s.to_string()))
    }
}

/// A database URL whose password never reaches Debug output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its secret; hand it only to the database driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("REDACTED"));
                u.to_string()
            }
            Ok(u) => u.to_string(),
            Err(_) => "<unparseable URL>".into(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Self(s.to_string()))
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Descriptors kept out of the connection cap (see [`crate::limits::effective_max_connections`]):
    /// 64 for listeners, logs, the certificate and key files and the like, three per store
    /// connection (SQLite keeps the database, its WAL and its shared-memory file open), and one
    /// per SFU media port.
    pub fn descriptor_reserve(&self) -> u64 {
        let media_ports = u64::from(self.calls.udp_port_max.saturating_sub(self.calls.udp_port_min)) + 1;
        64 + 3 * u64::from(self.store.pool_size) + media_ports
    }

    /// Defaults, then the file named by `args.config`, then env and flags (already merged by clap).
    pub fn load(args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        args.apply_to(&mut config);
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file over the defaults; unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
    }

    /// Checks ranges and relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.calls.validate()?;
        self.cluster.validate()?;
        self.media.validate()?;
        self.search.validate()?;
        self.push.validate()?;
        if self.store.data_key_period < Duration::from_secs(3600) {
            return Err(ConfigError::Invalid("store.data_key_period must be at least 1h".into()));
        }
        if self.store.encryption_key_file.is_none() && !self.store.encryption_previous_key_files.is_empty() {
            return Err(ConfigError::Invalid(
                "store.encryption_previous_key_files needs store.encryption_key_file (the current key)".into(),
            ));
        }
        if self.cluster.nats_url.is_some() && self.database_url.is_none() {
            return Err(ConfigError::Invalid(
                "cluster.nats_url (several nodes) needs database_url (PostgreSQL): the embedded SQLite store \
                 serves one node only"
                    .into(),
            ));
        }
        let l = &self.limits;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !(1024..=64 * 1024 * 1024).contains(&l.max_frame_bytes) {
            return bad(format!("max_frame_bytes must be 1 KiB..64 MiB, got {}", l.max_frame_bytes));
        }
        if !(1..=1024).contains(&l.max_requests_in_flight) {
            return bad("max_requests_in_flight must be 1..=1024".into());
        }
        if l.heartbeat_interval < Duration::from_millis(100) || l.idle_timeout <= l.heartbeat_interval {
            return bad("heartbeat_interval must be at least 100ms and below idle_timeout".into());
        }
        if l.idle_timeout > Duration::from_secs(600) {
            return bad("idle_timeout must be at most 10m".into());
        }
        if l.handshake_timeout.is_zero() || l.handshake_timeout > Duration::from_secs(120) {
            return bad("handshake_timeout must be within (0, 2m]".into());
        }
        if l.max_connections == 0 || l.max_connections_per_ip == 0 {
            return bad("max_connections and max_connections_per_ip must be positive".into());
        }
        if l.outbound_queue_frames < 8 {
            return bad("outbound_queue_frames must be at least 8".into());
        }
        if !(512..=1024 * 1024).contains(&l.ws_read_buffer_bytes) {
            return bad("ws_read_buffer_bytes must be 512..=1048576".into());
        }
        if l.max_message_text_bytes == 0 || l.max_message_text_bytes > l.max_frame_bytes / 2 {
            return bad("max_message_text_bytes must be positive and at most half of max_frame_bytes".into());
        }
        if l.typing_ttl < Duration::from_millis(100) || l.typing_ttl > Duration::from_secs(60) {
            return bad("typing_ttl must be within 100ms..60s".into());
        }
        if l.reports_per_account.burst == 0 || l.reports_per_account.per.is_zero() {
            return bad("reports_per_account must have a positive burst and period".into());
        }
        if l.messages_per_minute > 1_000_000 {
            return bad("messages_per_minute must be at most 1000000 (0: unlimited)".into());
        }
        if l.quic_receive_window_bytes < l.max_frame_bytes {
            return bad("quic_receive_window_bytes must be at least max_frame_bytes".into());
        }
        if self.tls.cert_path.is_some() != self.tls.key_path.is_some() {
            return bad("tls cert_path and key_path go together".into());
        }
        if self.store.pool_size == 0 || self.store.acquire_timeout.is_zero() {
            return bad("store pool_size and acquire_timeout must be positive".into());
        }
        let au = &self.auth;
        if au.access_token_ttl < Duration::from_secs(10) || au.access_token_ttl > Duration::from_secs(24 * 3600) {
            return bad("auth.access_token_ttl must be within 10s..24h".into());
        }
        if au.refresh_token_ttl <= au.access_token_ttl {
            return bad("auth.refresh_token_ttl must exceed access_token_ttl".into());
        }
        if au.leeway > Duration::from_secs(300) {
            return bad("auth.leeway must be at most 5m".into());
        }
        if !(1..=64).contains(&au.hash_concurrency) {
            return bad("auth.hash_concurrency must be 1..=64".into());
        }
        if !(1..=20).contains(&au.code_max_attempts) || au.code_ttl < Duration::from_secs(30) {
            return bad("auth.code_max_attempts must be 1..=20 and code_ttl at least 30s".into());
        }
        if au.issuer.is_empty() || au.audience.is_empty() {
            return bad("auth.issuer and auth.audience must be set".into());
        }
        if au.code_sender == CodeSenderKind::Webhook {
            match au.webhook_url.as_deref().map(url::Url::parse) {
                Some(Ok(u)) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => return bad("code_sender = \"webhook\" needs an http(s) auth.webhook_url".into()),
            }
        }
        if let Some(url) = &self.database_url {
            let u = url.expose();
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return bad(format!("database_url must be postgres://… (got {})", url.redacted()));
            }
        }
        Ok(())
    }

    /// The configuration as TOML, secrets redacted: for `--print-config`.
    pub fn to_redacted_toml(&self) -> String {
        let mut c = self.clone();
        c.database_url = c.database_url.map(|u| DatabaseUrl(u.redacted()));
        c.cluster.nats_url = c.cluster.nats_url.map(|u| NatsUrl::new(u.redacted()));
        c.auth.webhook_secret = c.auth.webhook_secret.map(|_| Secret("REDACTED".into()));
        c.media.s3.secret_access_key = c.media.s3.secret_access_key.map(|_| Secret("REDACTED".into()));
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "ws_listen = \"127.0.0.1:9000\"\n[limits]\nidle_timeout = \"90s\"\nmax_frame_bytes = 40960\n",
        )
        .expect("write");
        let args = ConfigArgs { config: Some(path), max_frame_bytes: Some(65536), ..Default::default() };
        let c = Config::load(&args).expect("load");
        assert_eq!(c.ws_listen.port(), 9000);
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.limits.max_frame_bytes, 65536);
        assert_eq!(c.quic_listen.port(), 7601);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[limits]\nmax_frame_byte = 4096\n").expect("write");
        let err = Config::from_file(&path).expect_err("typo must fail");
        assert!(err.to_string().contains("max_frame_byte"), "{err}");
        let args = ConfigArgs { max_frame_bytes: Some(10), ..Default::default() };
        assert!(Config::load(&args).is_err());
    }

    #[test]
    fn database_password_is_redacted() {
        let u = DatabaseUrl::new("postgres://confab:hunter2@db:5432/confab");
        assert!(!format!("{u:?}").contains("hunter2"));
        let c = Config { database_url: Some(u), ..Default::default() };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_redacted_toml().contains("hunter2"));
        let mut c = Config::default();
        c.auth.webhook_secret = Some(Secret::new("s3cret-value"));
        assert!(!format!("{c:?}").contains("s3cret-value"));
        assert!(!c.to_redacted_toml().contains("s3cret-value"));
    }

    #[test]
    fn rate_limits_parse_and_print() {
        let r: RateLimit = "5/1m".parse().expect("parse");
        assert_eq!(r, RateLimit::new(5, Duration::from_secs(60)));
        assert_eq!(r.to_string(), "5/1m");
        assert!("0/1m".parse::<RateLimit>().is_err());
        assert!("5".parse::<RateLimit>().is_err());
        let c: Config = toml::from_str("[auth.rate_limits]\nlogin_per_ip = \"7/3s\"\n").expect("toml");
        assert_eq!(c.auth.rate_limits.login_per_ip, RateLimit::new(7, Duration::from_secs(3)));
    }
}
