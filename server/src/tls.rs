//! The QUIC server certificate: loaded from configured PEM files, or a self-signed one generated
//! once into the data dir (key file mode 0600) and reused on later starts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// Why the certificate could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("generating certificate: {0}")]
    Generate(String),
    #[error("tls config: {0}")]
    Config(String),
}

/// A certificate chain and its key.
#[derive(Debug)]
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ServerCert {
    /// The end-entity certificate, for clients that pin it.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
}

const GENERATED_CERT: &str = "quic-cert.pem";
const GENERATED_KEY: &str = "quic-key.pem";

/// Loads the configured certificate, or the generated one (creating it on first start).
pub fn load_or_generate(config: &Config) -> Result<ServerCert, TlsError> {
    match (&config.tls.cert_path, &config.tls.key_path) {
        (Some(c), Some(k)) => load(c, k),
        _ => {
            let cert = config.data_dir.join(GENERATED_CERT);
            let key = config.data_dir.join(GENERATED_KEY);
            if !cert.exists() || !key.exists() {
                generate(&config.data_dir, &cert, &key, &config.tls.hostnames)?;
            }
            load(&cert, &key)
        }
    }
}

fn load(cert: &Path, key: &Path) -> Result<ServerCert, TlsError> {
    let file_err =
        |path: &Path, e: &dyn std::fmt::Display| TlsError::File { path: path.into(), message: e.to_string() };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(cert, &e))?;
    if chain.is_empty() {
        return Err(file_err(cert, &"no certificate in file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, &e))?;
    Ok(ServerCert { chain, key })
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path, extra: &[String]) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| TlsError::File { path: dir.into(), message: e.to_string() })?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    names.extend(extra.iter().cloned());
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(key_path, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, generated.cert.pem())
        .map_err(|e| TlsError::File { path: cert_path.into(), message: e.to_string() })?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed QUIC certificate");
    Ok(())
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let err = |e: std::io::Error| TlsError::File { path: path.into(), message: e.to_string() };
    opts.open(path).and_then(|mut f| f.write_all(bytes)).map_err(err)
}

/// The quinn server configuration: TLS 1.3 with ALPN confab/1, one bidirectional stream per
/// connection, bounded receive windows.
pub fn quic_server_config(cert: &ServerCert, config: &Config) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![confab_protocol::QUIC_ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let l = &config.limits;
    let mut transport = quinn::TransportConfig::default();
    // The control stream, then one bidirectional stream per upload (§22.9). The connection's
    // window has room for every stream's at once, so uploads never hold back the control
    // stream's messages.
    let transfers = config.media.max_transfers_per_connection;
    transport.max_concurrent_bidi_streams((1 + transfers).into());
    transport.max_concurrent_uni_streams(0u8.into());
    transport.receive_window(
        (u64::from(l.quic_receive_window_bytes) * (1 + u64::from(transfers))).try_into().unwrap_or(quinn::VarInt::MAX),
    );
    transport.stream_receive_window(l.quic_receive_window_bytes.into());
    // The same room sending: download streams cannot starve the control stream's answers.
    transport.send_window(u64::from(l.quic_receive_window_bytes) * (1 + u64::from(transfers)));
    let idle = quinn::IdleTimeout::try_from(l.idle_timeout + l.heartbeat_interval)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    transport.max_idle_timeout(Some(idle));
    server.transport_config(Arc::new(transport));
    Ok(server)
}
