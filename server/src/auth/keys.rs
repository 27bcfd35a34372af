//! Where the access-token signing key and the one-time code secret come from: the configured
//! path; else, on PostgreSQL, the database (table `server_secrets`), so that every node sharing it
//! signs and checks with the same keys; else (SQLite: one node) a file in the data dir, generated
//! on first start. A PostgreSQL deployment whose data dir already holds a key moves that key into
//! the database, so tokens it issued stay valid.

use std::path::{Path, PathBuf};

use super::{AuthError, codes, tokens};
use crate::config::AuthConfig;
use crate::store::{Backend, Store};

/// The signing key's file in the data dir, when no path is configured.
pub const SIGNING_KEY_FILE: &str = "jwt-ed25519.pem";
/// The code secret's file in the data dir, when no path is configured.
pub const CODE_SECRET_FILE: &str = "auth-secret.key";
/// The signing key's name in `server_secrets`: the Ed25519 PKCS#8 PEM text.
pub const SIGNING_KEY_NAME: &str = "jwt_signing_key";
/// The code secret's name in `server_secrets`: 32 raw bytes.
pub const CODE_SECRET_NAME: &str = "code_secret";

/// The key material of the accounts service.
pub struct KeyMaterial {
    /// The Ed25519 private key signing access tokens, PKCS#8 PEM.
    pub signing_pem: String,
    /// Keys the hashes of one-time codes and of rate-limit keys.
    pub code_secret: [u8; 32],
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial([REDACTED])")
    }
}

/// Loads the signing key and the code secret (see the module documentation for where from).
///
/// # Errors
/// `AuthError::Setup` when a file cannot be read or written, a stored secret has the wrong
/// shape, or the database fails.
pub async fn load(cfg: &AuthConfig, data_dir: &Path, store: &dyn Store) -> Result<KeyMaterial, AuthError> {
    let shared = store.backend() == Backend::Postgres;
    let signing_pem = match &cfg.signing_key_path {
        Some(path) => tokens::load_or_generate_key(path)?,
        None if shared => {
            let legacy = data_dir.join(SIGNING_KEY_FILE);
            let from_file = tokens::read_key(&legacy)?.map(String::into_bytes);
            let pem = in_database(store, SIGNING_KEY_NAME, (legacy, from_file), || {
                tokens::generate_key().map(String::into_bytes)
            })
            .await?;
            String::from_utf8(pem).map_err(|_| AuthError::Setup(format!("{SIGNING_KEY_NAME}: not PEM text")))?
        }
        None => tokens::load_or_generate_key(&data_dir.join(SIGNING_KEY_FILE))?,
    };
    let code_secret = match &cfg.secret_path {
        Some(path) => codes::load_or_generate_secret(path)?,
        None if shared => {
            let legacy = data_dir.join(CODE_SECRET_FILE);
            let from_file = codes::read_secret(&legacy)?.map(Vec::from);
            let secret = in_database(store, CODE_SECRET_NAME, (legacy, from_file), || {
                super::random_bytes::<32>().map(Vec::from)
            })
            .await?;
            secret.try_into().map_err(|_| AuthError::Setup(format!("{CODE_SECRET_NAME}: expected 32 bytes")))?
        }
        None => codes::load_or_generate_secret(&data_dir.join(CODE_SECRET_FILE))?,
    };
    Ok(KeyMaterial { signing_pem, code_secret })
}

/// The secret `name` in the database. When there is none yet, this node proposes the one in
/// `legacy` (the data dir file of a deployment from before shared keys), else a `fresh` one; of
/// nodes starting at once, the first insert wins and every node reads the winner.
async fn in_database(
    store: &dyn Store,
    name: &'static str,
    legacy: (PathBuf, Option<Vec<u8>>),
    fresh: impl FnOnce() -> Result<Vec<u8>, AuthError>,
) -> Result<Vec<u8>, AuthError> {
    let db = |e: crate::store::StoreError| AuthError::Setup(format!("server secret {name}: {e}"));
    let (path, from_file) = legacy;
    if let Some(stored) = store.server_secret(name).await.map_err(db)? {
        if from_file.as_ref().is_some_and(|f| *f != stored) {
            tracing::warn!(
                secret = name,
                path = %path.display(),
                "the data dir holds another key than the database: the database's is used, the file is ignored"
            );
        }
        return Ok(stored);
    }
    let from_data_dir = from_file.is_some();
    let candidate = match from_file {
        Some(f) => f,
        None => fresh()?,
    };
    let now_ms = confab_protocol::frames::now_ms() as i64;
    let stored = store.init_server_secret(name, &candidate, now_ms).await.map_err(db)?;
    if stored == candidate {
        if from_data_dir {
            tracing::info!(secret = name, path = %path.display(), "stored the data dir's key in the database: every node sharing it uses this key");
        } else {
            tracing::info!(secret = name, "generated a key into the database: every node sharing it uses this key");
        }
    }
    Ok(stored)
}
