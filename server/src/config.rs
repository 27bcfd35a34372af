//! Server configuration: one typed struct. Defaults live in code, then the TOML file, then
//! `CONFAB_*` environment variables, then command-line flags; validated before start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    pub store: StoreConfig,
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
        }
    }
}

/// Database pool settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub pool_size: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            pool_size: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
        }
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
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Command-line flags. Each also reads a `CONFAB_*` environment variable; a flag wins over
/// its variable, and both win over the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file (see docs/operations.md).
    #[arg(long, env = "CONFAB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// WebSocket + HTTP listen address [default: 127.0.0.1:7600].
    #[arg(long, env = "CONFAB_WS_LISTEN", value_name = "ADDR")]
    pub ws_listen: Option<SocketAddr>,
    /// QUIC (UDP) listen address [default: 127.0.0.1:7601].
    #[arg(long, env = "CONFAB_QUIC_LISTEN", value_name = "ADDR")]
    pub quic_listen: Option<SocketAddr>,
    /// Data directory: embedded database, generated certificate [default: ./confab-data].
    #[arg(long, env = "CONFAB_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…); without it the embedded SQLite store is used.
    #[arg(
        long,
        env = "CONFAB_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<DatabaseUrl>,
    /// Log output format [default: text].
    #[arg(long, env = "CONFAB_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, RUST_LOG syntax; RUST_LOG wins when set [default: info].
    #[arg(long, env = "CONFAB_LOG_FILTER", value_name = "FILTER")]
    pub log_filter: Option<String>,
    /// PEM certificate chain for QUIC (with --tls-key); default: self-signed, generated into the data dir.
    #[arg(long, env = "CONFAB_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "CONFAB_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Extra host names for the generated certificate (comma-separated).
    #[arg(
        long,
        env = "CONFAB_TLS_HOSTNAMES",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    pub tls_hostnames: Option<Vec<String>>,
    /// Largest client frame accepted, bytes [default: 1048576].
    #[arg(long, env = "CONFAB_MAX_FRAME_BYTES", value_name = "BYTES")]
    pub max_frame_bytes: Option<u32>,
    /// Unanswered requests read per connection before reading pauses [default: 32].
    #[arg(long, env = "CONFAB_MAX_REQUESTS_IN_FLIGHT", value_name = "N")]
    pub max_requests_in_flight: Option<u32>,
    /// Heartbeat interval announced to clients [default: 15s].
    #[arg(long, env = "CONFAB_HEARTBEAT_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Close connections silent this long [default: 45s].
    #[arg(long, env = "CONFAB_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Deadline for TLS + upgrade + Hello [default: 10s].
    #[arg(long, env = "CONFAB_HANDSHAKE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub handshake_timeout: Option<Duration>,
    /// Connections allowed in total [default: 100000].
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<u32>,
    /// Connections allowed per client IP address [default: 1000].
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<u32>,
    /// Outbound frames queued per connection before it is closed as slow [default: 1024].
    #[arg(long, env = "CONFAB_OUTBOUND_QUEUE_FRAMES", value_name = "N")]
    pub outbound_queue_frames: Option<u32>,
    /// WebSocket read buffer per connection, bytes [default: 4096].
    #[arg(long, env = "CONFAB_WS_READ_BUFFER_BYTES", value_name = "BYTES")]
    pub ws_read_buffer_bytes: Option<u32>,
    /// QUIC receive window per connection, bytes [default: 4194304].
    #[arg(long, env = "CONFAB_QUIC_RECEIVE_WINDOW_BYTES", value_name = "BYTES")]
    pub quic_receive_window_bytes: Option<u32>,
    /// Database connection pool size [default: 16].
    #[arg(long, env = "CONFAB_STORE_POOL_SIZE", value_name = "N")]
    pub store_pool_size: Option<u32>,
    /// Wait at most this long for a pooled database connection [default: 3s].
    #[arg(long, env = "CONFAB_STORE_ACQUIRE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub store_acquire_timeout: Option<Duration>,
    /// Abort database statements running longer than this [default: 5s].
    #[arg(long, env = "CONFAB_STORE_STATEMENT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub store_statement_timeout: Option<Duration>,
    /// Drain time on shutdown before connections are closed [default: 10s].
    #[arg(long, env = "CONFAB_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,
}

impl Config {
    /// Defaults, then the file named by `args.config`, then env and flags (already merged by clap).
    pub fn load(args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.apply(args);
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file over the defaults; unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    fn apply(&mut self, a: &ConfigArgs) {
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        set(&mut self.ws_listen, &a.ws_listen);
        set(&mut self.quic_listen, &a.quic_listen);
        set(&mut self.data_dir, &a.data_dir);
        if a.database_url.is_some() {
            self.database_url = a.database_url.clone();
        }
        set(&mut self.log_format, &a.log_format);
        set(&mut self.log_filter, &a.log_filter);
        if a.tls_cert.is_some() {
            self.tls.cert_path = a.tls_cert.clone();
        }
        if a.tls_key.is_some() {
            self.tls.key_path = a.tls_key.clone();
        }
        set(&mut self.tls.hostnames, &a.tls_hostnames);
        let l = &mut self.limits;
        set(&mut l.max_frame_bytes, &a.max_frame_bytes);
        set(&mut l.max_requests_in_flight, &a.max_requests_in_flight);
        set(&mut l.heartbeat_interval, &a.heartbeat_interval);
        set(&mut l.idle_timeout, &a.idle_timeout);
        set(&mut l.handshake_timeout, &a.handshake_timeout);
        set(&mut l.max_connections, &a.max_connections);
        set(&mut l.max_connections_per_ip, &a.max_connections_per_ip);
        set(&mut l.outbound_queue_frames, &a.outbound_queue_frames);
        set(&mut l.ws_read_buffer_bytes, &a.ws_read_buffer_bytes);
        set(
            &mut l.quic_receive_window_bytes,
            &a.quic_receive_window_bytes,
        );
        set(&mut self.store.pool_size, &a.store_pool_size);
        set(&mut self.store.acquire_timeout, &a.store_acquire_timeout);
        set(
            &mut self.store.statement_timeout,
            &a.store_statement_timeout,
        );
        set(&mut self.shutdown_timeout, &a.shutdown_timeout);
    }

    /// Checks ranges and relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !(1024..=64 * 1024 * 1024).contains(&l.max_frame_bytes) {
            return bad(format!(
                "max_frame_bytes must be 1 KiB..64 MiB, got {}",
                l.max_frame_bytes
            ));
        }
        if !(1..=1024).contains(&l.max_requests_in_flight) {
            return bad("max_requests_in_flight must be 1..=1024".into());
        }
        if l.heartbeat_interval < Duration::from_millis(100)
            || l.idle_timeout <= l.heartbeat_interval
        {
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
        if l.quic_receive_window_bytes < l.max_frame_bytes {
            return bad("quic_receive_window_bytes must be at least max_frame_bytes".into());
        }
        if self.tls.cert_path.is_some() != self.tls.key_path.is_some() {
            return bad("tls cert_path and key_path go together".into());
        }
        if self.store.pool_size == 0 || self.store.acquire_timeout.is_zero() {
            return bad("store pool_size and acquire_timeout must be positive".into());
        }
        if let Some(url) = &self.database_url {
            let u = url.expose();
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return bad(format!(
                    "database_url must be postgres://… (got {})",
                    url.redacted()
                ));
            }
        }
        Ok(())
    }

    /// The configuration as TOML, secrets redacted: for `--print-config`.
    pub fn to_redacted_toml(&self) -> String {
        let mut c = self.clone();
        c.database_url = c.database_url.map(|u| DatabaseUrl(u.redacted()));
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
            "ws_listen = \"127.0.0.1:9000\"\n[limits]\nidle_timeout = \"90s\"\nmax_frame_bytes = 4096\n",
        )
        .expect("write");
        let args = ConfigArgs {
            config: Some(path),
            max_frame_bytes: Some(8192),
            ..Default::default()
        };
        let c = Config::load(&args).expect("load");
        assert_eq!(c.ws_listen.port(), 9000);
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.limits.max_frame_bytes, 8192);
        assert_eq!(c.quic_listen.port(), 7601);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[limits]\nmax_frame_byte = 4096\n").expect("write");
        let err = Config::from_file(&path).expect_err("typo must fail");
        assert!(err.to_string().contains("max_frame_byte"), "{err}");
        let args = ConfigArgs {
            max_frame_bytes: Some(10),
            ..Default::default()
        };
        assert!(Config::load(&args).is_err());
    }

    #[test]
    fn database_password_is_redacted() {
        let u = DatabaseUrl::new("postgres://confab:hunter2@db:5432/confab");
        assert!(!format!("{u:?}").contains("hunter2"));
        let c = Config {
            database_url: Some(u),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_redacted_toml().contains("hunter2"));
    }
}
