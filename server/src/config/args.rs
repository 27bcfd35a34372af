//! Command-line flags of `confab-server`, each with its `CONFAB_*` environment variable, and how
//! they override the file configuration.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::{BlobBackend, CodeSenderKind, Config, DatabaseUrl, LogFormat, NatsUrl, RateLimit, Secret};

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
    #[arg(long, env = "CONFAB_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
    /// NATS server linking several nodes (nats://HOST:PORT); needs --database-url [default: none, one node].
    #[arg(long, env = "CONFAB_NATS_URL", value_name = "URL", hide_env_values = true)]
    pub nats_url: Option<NatsUrl>,
    /// This node's name in the cluster, unique [default: a random node-… name].
    #[arg(long, env = "CONFAB_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,
    /// How often this node tells the others in the cluster it is alive [default: 1s].
    #[arg(long, env = "CONFAB_CLUSTER_HEARTBEAT_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub cluster_heartbeat_interval: Option<Duration>,
    /// A node not heard from this long is dead: its devices go offline, its SFU rooms end [default: 5s].
    #[arg(long, env = "CONFAB_NODE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub node_timeout: Option<Duration>,
    /// Whether this node indexes messages for search [default: true].
    #[arg(long, env = "CONFAB_SEARCH_INDEXING", value_name = "BOOL")]
    pub search_indexing: Option<bool>,
    /// Whether this node plans and sends push notifications [default: true].
    #[arg(long, env = "CONFAB_PUSH_ENABLED", value_name = "BOOL")]
    pub push_enabled: Option<bool>,
    /// FCM: the service account's JSON key file (enables FCM pushes).
    #[arg(long, env = "CONFAB_PUSH_FCM_SERVICE_ACCOUNT_FILE", value_name = "FILE")]
    pub push_fcm_service_account_file: Option<PathBuf>,
    /// APNs: the team's .p8 signing key (enables APNs pushes; needs the key id and team id).
    #[arg(long, env = "CONFAB_PUSH_APNS_KEY_FILE", value_name = "FILE")]
    pub push_apns_key_file: Option<PathBuf>,
    /// APNs: the .p8 key's id.
    #[arg(long, env = "CONFAB_PUSH_APNS_KEY_ID", value_name = "ID")]
    pub push_apns_key_id: Option<String>,
    /// APNs: the team id.
    #[arg(long, env = "CONFAB_PUSH_APNS_TEAM_ID", value_name = "ID")]
    pub push_apns_team_id: Option<String>,
    /// APNs: the app's bundle id (the default apns-topic).
    #[arg(long, env = "CONFAB_PUSH_APNS_TOPIC", value_name = "BUNDLE_ID")]
    pub push_apns_topic: Option<String>,
    /// Where media bytes live: fs (the data dir) or s3 [default: fs].
    #[arg(long, env = "CONFAB_MEDIA_STORE", value_enum)]
    pub media_store: Option<BlobBackend>,
    /// Directory of the fs media store [default: DATA_DIR/media].
    #[arg(long, env = "CONFAB_MEDIA_DIR", value_name = "DIR")]
    pub media_dir: Option<PathBuf>,
    /// Largest file accepted, bytes [default: 52428800].
    #[arg(long, env = "CONFAB_MAX_UPLOAD_BYTES", value_name = "BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Bytes of media one user may hold [default: 2147483648].
    #[arg(long, env = "CONFAB_MEDIA_QUOTA_BYTES", value_name = "BYTES")]
    pub media_quota_bytes: Option<u64>,
    /// S3 endpoint for --media-store s3 (http(s)://HOST:PORT) [default: AWS].
    #[arg(long, env = "CONFAB_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 bucket for --media-store s3.
    #[arg(long, env = "CONFAB_S3_BUCKET", value_name = "NAME")]
    pub s3_bucket: Option<String>,
    /// S3 region [default: empty].
    #[arg(long, env = "CONFAB_S3_REGION", value_name = "NAME")]
    pub s3_region: Option<String>,
    /// Key prefix inside the S3 bucket [default: empty].
    #[arg(long, env = "CONFAB_S3_PREFIX", value_name = "PREFIX")]
    pub s3_prefix: Option<String>,
    /// S3 access key id.
    #[arg(long, env = "CONFAB_S3_ACCESS_KEY_ID", value_name = "ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (prefer the environment variable).
    #[arg(long, env = "CONFAB_S3_SECRET_ACCESS_KEY", value_name = "KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<Secret>,
    /// Allow a plain-HTTP S3 endpoint.
    #[arg(long, env = "CONFAB_S3_ALLOW_HTTP")]
    pub s3_allow_http: Option<bool>,
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
    #[arg(long, env = "CONFAB_TLS_HOSTNAMES", value_name = "NAMES", value_delimiter = ',')]
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
    /// Longest message text, bytes [default: 16384].
    #[arg(long, env = "CONFAB_MAX_MESSAGE_TEXT_BYTES", value_name = "BYTES")]
    pub max_message_text_bytes: Option<u32>,
    /// Typing indicators expire after this without a refresh [default: 5s].
    #[arg(long, env = "CONFAB_TYPING_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub typing_ttl: Option<Duration>,
    /// Messages one account may send per minute on each node, 0 for unlimited [default: 0].
    #[arg(long, env = "CONFAB_MESSAGES_PER_MINUTE", value_name = "N")]
    pub messages_per_minute: Option<u32>,
    /// Reports one account may file: BURST/PER, a burst then one more every PER [default: 20/1m].
    #[arg(long, env = "CONFAB_REPORTS_PER_ACCOUNT", value_name = "BURST/PER")]
    pub reports_per_account: Option<RateLimit>,
    /// Database connection pool size [default: 16].
    #[arg(long, env = "CONFAB_STORE_POOL_SIZE", value_name = "N")]
    pub store_pool_size: Option<u32>,
    /// Wait at most this long for a pooled database connection [default: 3s].
    #[arg(long, env = "CONFAB_STORE_ACQUIRE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub store_acquire_timeout: Option<Duration>,
    /// Abort database statements running longer than this [default: 5s].
    #[arg(long, env = "CONFAB_STORE_STATEMENT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub store_statement_timeout: Option<Duration>,
    /// Key-encryption key file (32 random bytes, raw or base64): encrypts message contents and
    /// files at rest. An encrypted database does not start without it.
    #[arg(long, env = "CONFAB_ENCRYPTION_KEY_FILE", value_name = "FILE")]
    pub encryption_key_file: Option<PathBuf>,
    /// Earlier key-encryption key files, kept until `keys rotate-kek` re-wrapped their data keys.
    #[arg(long, env = "CONFAB_ENCRYPTION_PREVIOUS_KEY_FILES", value_name = "FILES", value_delimiter = ',')]
    pub encryption_previous_key_files: Option<Vec<PathBuf>>,
    /// How long one data key seals a conversation's new contents [default: 30days].
    #[arg(long, env = "CONFAB_DATA_KEY_PERIOD", value_name = "DURATION", value_parser = parse_duration)]
    pub data_key_period: Option<Duration>,
    /// Run the re-encryption job in the background [default: true].
    #[arg(long, env = "CONFAB_BACKGROUND_REENCRYPTION", value_name = "BOOL")]
    pub background_reencryption: Option<bool>,
    /// Ed25519 PKCS#8 PEM key signing access tokens [default: generated into the database with
    /// PostgreSQL (shared by every node), into the data dir with SQLite].
    #[arg(long, env = "CONFAB_AUTH_SIGNING_KEY", value_name = "FILE")]
    pub auth_signing_key: Option<PathBuf>,
    /// Secret keying one-time code hashes [default: generated into the database with PostgreSQL
    /// (shared by every node), into the data dir with SQLite].
    #[arg(long, env = "CONFAB_AUTH_SECRET", value_name = "FILE")]
    pub auth_secret: Option<PathBuf>,
    /// Token issuer (iss) [default: confab].
    #[arg(long, env = "CONFAB_AUTH_ISSUER", value_name = "NAME")]
    pub auth_issuer: Option<String>,
    /// Token audience (aud) [default: confab].
    #[arg(long, env = "CONFAB_AUTH_AUDIENCE", value_name = "NAME")]
    pub auth_audience: Option<String>,
    /// Access token lifetime [default: 15m].
    #[arg(long, env = "CONFAB_ACCESS_TOKEN_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub access_token_ttl: Option<Duration>,
    /// Refresh token lifetime [default: 30days].
    #[arg(long, env = "CONFAB_REFRESH_TOKEN_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub refresh_token_ttl: Option<Duration>,
    /// Clock skew tolerated on token times [default: 30s].
    #[arg(long, env = "CONFAB_AUTH_LEEWAY", value_name = "DURATION", value_parser = parse_duration)]
    pub auth_leeway: Option<Duration>,
    /// Password hashes computed concurrently [default: 2].
    #[arg(long, env = "CONFAB_HASH_CONCURRENCY", value_name = "N")]
    pub hash_concurrency: Option<u32>,
    /// One-time code lifetime [default: 10m].
    #[arg(long, env = "CONFAB_CODE_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub code_ttl: Option<Duration>,
    /// Tries allowed per one-time code [default: 5].
    #[arg(long, env = "CONFAB_CODE_MAX_ATTEMPTS", value_name = "N")]
    pub code_max_attempts: Option<u32>,
    /// Where one-time codes go: log (development) or webhook [default: log].
    #[arg(long, env = "CONFAB_CODE_SENDER", value_enum)]
    pub code_sender: Option<CodeSenderKind>,
    /// URL receiving one JSON POST per code (with --code-sender webhook).
    #[arg(long, env = "CONFAB_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Secret signing webhook bodies (X-Confab-Signature).
    #[arg(long, env = "CONFAB_WEBHOOK_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,
    /// An unanswered call rings this long, then ends as missed [default: 45s].
    #[arg(long, env = "CONFAB_RING_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub ring_timeout: Option<Duration>,
    /// A call party may stay disconnected this long before the call ends [default: 20s].
    #[arg(long, env = "CONFAB_CALL_RECONNECT_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    pub call_reconnect_grace: Option<Duration>,
    /// Larger conversations use group calls instead of ringing [default: 16].
    #[arg(long, env = "CONFAB_MAX_RING_MEMBERS", value_name = "N")]
    pub max_ring_members: Option<u32>,
    /// STUN server URLs for clients, comma-separated.
    #[arg(long, env = "CONFAB_STUN_URLS", value_name = "URLS", value_delimiter = ',')]
    pub stun_urls: Option<Vec<String>>,
    /// TURN server URLs for clients, comma-separated (needs --turn-secret).
    #[arg(long, env = "CONFAB_TURN_URLS", value_name = "URLS", value_delimiter = ',')]
    pub turn_urls: Option<Vec<String>>,
    /// The TURN server's shared secret (coturn static-auth-secret).
    #[arg(long, env = "CONFAB_TURN_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub turn_secret: Option<Secret>,
    /// Lifetime of TURN credentials [default: 1h].
    #[arg(long, env = "CONFAB_TURN_CREDENTIAL_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub turn_credential_ttl: Option<Duration>,
    /// Address the SFU's UDP media sockets bind to [default: 127.0.0.1].
    #[arg(long, env = "CONFAB_MEDIA_BIND", value_name = "IP")]
    pub media_bind: Option<IpAddr>,
    /// Public address announced in ICE candidates behind 1:1 NAT.
    #[arg(long, env = "CONFAB_MEDIA_PUBLIC_IP", value_name = "IP")]
    pub media_public_ip: Option<IpAddr>,
    /// Lowest UDP port of the SFU [default: 50000].
    #[arg(long, env = "CONFAB_UDP_PORT_MIN", value_name = "PORT")]
    pub udp_port_min: Option<u16>,
    /// Highest UDP port of the SFU [default: 50199].
    #[arg(long, env = "CONFAB_UDP_PORT_MAX", value_name = "PORT")]
    pub udp_port_max: Option<u16>,
    /// An empty group call room closes after this [default: 60s].
    #[arg(long, env = "CONFAB_ROOM_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub room_ttl: Option<Duration>,
    /// A meeting room without its own empty timeout closes after nobody was in it this long [default: 5m].
    #[arg(long, env = "CONFAB_MEETING_EMPTY_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub meeting_empty_timeout: Option<Duration>,
    /// A group-call connection silent this long is restarted, then dropped [default: 10s].
    #[arg(long, env = "CONFAB_MEDIA_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub media_timeout: Option<Duration>,
    /// Networks (CIDR, comma-separated) client ICE candidates must be in [default: any reachable].
    #[arg(long, env = "CONFAB_ALLOWED_CANDIDATE_NETWORKS", value_name = "CIDRS", value_delimiter = ',')]
    pub allowed_candidate_networks: Option<Vec<ipnet::IpNet>>,
    /// Publishers at once per group call [default: 16].
    #[arg(long, env = "CONFAB_MAX_PUBLISHERS", value_name = "N")]
    pub max_publishers: Option<u32>,
    /// Participants per group call [default: 64].
    #[arg(long, env = "CONFAB_MAX_PARTICIPANTS", value_name = "N")]
    pub max_participants: Option<u32>,
    /// Login attempts per account, BURST/PER [default: 5/1m].
    #[arg(long, env = "CONFAB_RATE_LOGIN_PER_ACCOUNT", value_name = "RATE")]
    pub rate_login_per_account: Option<RateLimit>,
    /// Login attempts per client IP [default: 30/2s].
    #[arg(long, env = "CONFAB_RATE_LOGIN_PER_IP", value_name = "RATE")]
    pub rate_login_per_ip: Option<RateLimit>,
    /// Code requests per phone number or account [default: 3/2m].
    #[arg(long, env = "CONFAB_RATE_CODE_REQUEST_PER_DESTINATION", value_name = "RATE")]
    pub rate_code_request_per_destination: Option<RateLimit>,
    /// Code requests per client IP [default: 10/30s].
    #[arg(long, env = "CONFAB_RATE_CODE_REQUEST_PER_IP", value_name = "RATE")]
    pub rate_code_request_per_ip: Option<RateLimit>,
    /// Code verifications per client IP [default: 20/5s].
    #[arg(long, env = "CONFAB_RATE_CODE_VERIFY_PER_IP", value_name = "RATE")]
    pub rate_code_verify_per_ip: Option<RateLimit>,
    /// Registrations per client IP [default: 20/3s].
    #[arg(long, env = "CONFAB_RATE_REGISTER_PER_IP", value_name = "RATE")]
    pub rate_register_per_ip: Option<RateLimit>,
    /// Drain time on shutdown before connections are closed [default: 10s].
    #[arg(long, env = "CONFAB_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,
}

impl ConfigArgs {
    /// Overrides `c` with every flag (or its environment variable) that was given.
    pub(super) fn apply_to(&self, c: &mut Config) {
        let a = self;
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        set(&mut c.ws_listen, &a.ws_listen);
        set(&mut c.quic_listen, &a.quic_listen);
        set(&mut c.data_dir, &a.data_dir);
        if a.database_url.is_some() {
            c.database_url = a.database_url.clone();
        }
        if a.nats_url.is_some() {
            c.cluster.nats_url = a.nats_url.clone();
        }
        if a.node_id.is_some() {
            c.cluster.node_id = a.node_id.clone();
        }
        set(&mut c.cluster.heartbeat_interval, &a.cluster_heartbeat_interval);
        set(&mut c.cluster.node_timeout, &a.node_timeout);
        set(&mut c.media.store, &a.media_store);
        set(&mut c.search.indexing, &a.search_indexing);
        set(&mut c.push.enabled, &a.push_enabled);
        if a.push_fcm_service_account_file.is_some() {
            c.push.fcm.service_account_file = a.push_fcm_service_account_file.clone();
        }
        if a.push_apns_key_file.is_some() {
            c.push.apns.key_file = a.push_apns_key_file.clone();
        }
        set(&mut c.push.apns.key_id, &a.push_apns_key_id);
        set(&mut c.push.apns.team_id, &a.push_apns_team_id);
        set(&mut c.push.apns.topic, &a.push_apns_topic);
        if a.media_dir.is_some() {
            c.media.dir = a.media_dir.clone();
        }
        set(&mut c.media.max_upload_bytes, &a.max_upload_bytes);
        set(&mut c.media.quota_bytes_per_user, &a.media_quota_bytes);
        if a.s3_endpoint.is_some() {
            c.media.s3.endpoint = a.s3_endpoint.clone();
        }
        set(&mut c.media.s3.bucket, &a.s3_bucket);
        set(&mut c.media.s3.region, &a.s3_region);
        set(&mut c.media.s3.prefix, &a.s3_prefix);
        set(&mut c.media.s3.access_key_id, &a.s3_access_key_id);
        if a.s3_secret_access_key.is_some() {
            c.media.s3.secret_access_key = a.s3_secret_access_key.clone();
        }
        set(&mut c.media.s3.allow_http, &a.s3_allow_http);
        set(&mut c.log_format, &a.log_format);
        set(&mut c.log_filter, &a.log_filter);
        if a.tls_cert.is_some() {
            c.tls.cert_path = a.tls_cert.clone();
        }
        if a.tls_key.is_some() {
            c.tls.key_path = a.tls_key.clone();
        }
        set(&mut c.tls.hostnames, &a.tls_hostnames);
        let l = &mut c.limits;
        set(&mut l.max_frame_bytes, &a.max_frame_bytes);
        set(&mut l.max_requests_in_flight, &a.max_requests_in_flight);
        set(&mut l.heartbeat_interval, &a.heartbeat_interval);
        set(&mut l.idle_timeout, &a.idle_timeout);
        set(&mut l.handshake_timeout, &a.handshake_timeout);
        set(&mut l.max_connections, &a.max_connections);
        set(&mut l.max_connections_per_ip, &a.max_connections_per_ip);
        set(&mut l.outbound_queue_frames, &a.outbound_queue_frames);
        set(&mut l.ws_read_buffer_bytes, &a.ws_read_buffer_bytes);
        set(&mut l.quic_receive_window_bytes, &a.quic_receive_window_bytes);
        set(&mut l.max_message_text_bytes, &a.max_message_text_bytes);
        set(&mut l.typing_ttl, &a.typing_ttl);
        set(&mut l.messages_per_minute, &a.messages_per_minute);
        set(&mut l.reports_per_account, &a.reports_per_account);
        set(&mut c.store.pool_size, &a.store_pool_size);
        set(&mut c.store.acquire_timeout, &a.store_acquire_timeout);
        set(&mut c.store.statement_timeout, &a.store_statement_timeout);
        if a.encryption_key_file.is_some() {
            c.store.encryption_key_file = a.encryption_key_file.clone();
        }
        set(&mut c.store.encryption_previous_key_files, &a.encryption_previous_key_files);
        set(&mut c.store.data_key_period, &a.data_key_period);
        set(&mut c.store.background_reencryption, &a.background_reencryption);
        set(&mut c.shutdown_timeout, &a.shutdown_timeout);
        let au = &mut c.auth;
        if a.auth_signing_key.is_some() {
            au.signing_key_path = a.auth_signing_key.clone();
        }
        if a.auth_secret.is_some() {
            au.secret_path = a.auth_secret.clone();
        }
        set(&mut au.issuer, &a.auth_issuer);
        set(&mut au.audience, &a.auth_audience);
        set(&mut au.access_token_ttl, &a.access_token_ttl);
        set(&mut au.refresh_token_ttl, &a.refresh_token_ttl);
        set(&mut au.leeway, &a.auth_leeway);
        set(&mut au.hash_concurrency, &a.hash_concurrency);
        set(&mut au.code_ttl, &a.code_ttl);
        set(&mut au.code_max_attempts, &a.code_max_attempts);
        set(&mut au.code_sender, &a.code_sender);
        if a.webhook_url.is_some() {
            au.webhook_url = a.webhook_url.clone();
        }
        if a.webhook_secret.is_some() {
            au.webhook_secret = a.webhook_secret.clone();
        }
        let r = &mut au.rate_limits;
        set(&mut r.login_per_account, &a.rate_login_per_account);
        set(&mut r.login_per_ip, &a.rate_login_per_ip);
        set(&mut r.code_request_per_destination, &a.rate_code_request_per_destination);
        set(&mut r.code_request_per_ip, &a.rate_code_request_per_ip);
        set(&mut r.code_verify_per_ip, &a.rate_code_verify_per_ip);
        set(&mut r.register_per_ip, &a.rate_register_per_ip);
        let k = &mut c.calls;
        set(&mut k.ring_timeout, &a.ring_timeout);
        set(&mut k.reconnect_grace, &a.call_reconnect_grace);
        set(&mut k.max_ring_members, &a.max_ring_members);
        set(&mut k.stun_urls, &a.stun_urls);
        set(&mut k.turn_urls, &a.turn_urls);
        if a.turn_secret.is_some() {
            k.turn_secret = a.turn_secret.clone();
        }
        set(&mut k.turn_credential_ttl, &a.turn_credential_ttl);
        set(&mut k.media_bind, &a.media_bind);
        if a.media_public_ip.is_some() {
            k.media_public_ip = a.media_public_ip;
        }
        set(&mut k.udp_port_min, &a.udp_port_min);
        set(&mut k.udp_port_max, &a.udp_port_max);
        set(&mut k.room_ttl, &a.room_ttl);
        set(&mut k.meeting_empty_timeout, &a.meeting_empty_timeout);
        set(&mut k.max_publishers, &a.max_publishers);
        set(&mut k.max_participants, &a.max_participants);
        set(&mut k.media_timeout, &a.media_timeout);
        set(&mut k.allowed_candidate_networks, &a.allowed_candidate_networks);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConfigArgs,
    }

    #[test]
    fn cluster_timing_flags() {
        let cli =
            Cli::try_parse_from(["confab-server", "--cluster-heartbeat-interval", "200ms", "--node-timeout", "1s"])
                .expect("flags parse");
        let mut c = Config::default();
        cli.args.apply_to(&mut c);
        assert_eq!(c.cluster.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(c.cluster.node_timeout, Duration::from_secs(1));
        let mut c = Config::default();
        Cli::try_parse_from(["confab-server"]).expect("no flags").args.apply_to(&mut c);
        assert_eq!(
            (c.cluster.heartbeat_interval, c.cluster.node_timeout),
            (Duration::from_secs(1), Duration::from_secs(5))
        );
    }
}
