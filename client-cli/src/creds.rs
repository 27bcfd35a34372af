//! The profile's credentials: access and refresh tokens in `credentials.toml`, created with mode
//! 0600 in a 0700 directory, replaced atomically, and never shown by `Debug`. A lock file
//! serialises token refreshes between processes of the same profile (docs/protocol.md §11.6).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::trust::TrustSetting;

/// A token: serialised as is, never printed.
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
        f.write_str("Secret(***)")
    }
}

/// What a sign-in leaves behind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
    pub user_id: u64,
    pub username: String,
    pub session_id: String,
    pub access_token: Secret,
    pub access_expires_at_ms: u64,
    pub refresh_token: Secret,
    pub refresh_expires_at_ms: u64,
}

impl Credentials {
    /// Builds credentials from a server's AuthResult.
    pub fn from_auth(server: &str, trust: &TrustSetting, a: &confab_protocol::v1::AuthResult) -> Self {
        let me = a.me.clone().unwrap_or_default();
        Self {
            server: server.to_string(),
            cert: match trust {
                TrustSetting::Pinned(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.clone())),
                _ => None,
            },
            insecure: *trust == TrustSetting::Insecure,
            user_id: me.user_id,
            username: me.username,
            session_id: a.session_id.clone(),
            access_token: Secret::new(a.access_token.clone()),
            access_expires_at_ms: a.access_token_expires_at_ms,
            refresh_token: Secret::new(a.refresh_token.clone()),
            refresh_expires_at_ms: a.refresh_token_expires_at_ms,
        }
    }

    /// Takes new tokens from a Refresh answer.
    pub fn update_tokens(&mut self, a: &confab_protocol::v1::AuthResult) {
        self.access_token = Secret::new(a.access_token.clone());
        self.access_expires_at_ms = a.access_token_expires_at_ms;
        self.refresh_token = Secret::new(a.refresh_token.clone());
        self.refresh_expires_at_ms = a.refresh_token_expires_at_ms;
        self.session_id = a.session_id.clone();
    }

    /// Whether the access token is still good `margin_ms` from now.
    pub fn access_valid(&self, now_ms: u64, margin_ms: u64) -> bool {
        !self.access_token.expose().is_empty() && self.access_expires_at_ms > now_ms + margin_ms
    }

    /// How the credentials' server was trusted at sign-in.
    pub fn trust(&self) -> TrustSetting {
        match (&self.cert, self.insecure) {
            (Some(p), _) => TrustSetting::Pinned(p.clone()),
            (None, true) => TrustSetting::Insecure,
            (None, false) => TrustSetting::System,
        }
    }
}

/// The credentials file of one profile.
#[derive(Clone, Debug)]
pub struct CredStore {
    dir: PathBuf,
}

/// Held while refreshing; dropping it unlocks.
#[derive(Debug)]
pub struct RefreshLock {
    _file: File,
}

impl CredStore {
    pub fn new(profile_dir: &Path) -> Self {
        Self { dir: profile_dir.to_path_buf() }
    }

    /// The credentials file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("credentials.toml")
    }

    /// The profile directory (state files live beside the credentials).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn load(&self) -> anyhow::Result<Option<Credentials>> {
        let path = self.path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the file (mode 0600) through a temporary file and a rename.
    pub fn save(&self, creds: &Credentials) -> anyhow::Result<()> {
        self.ensure_dir()?;
        let path = self.path();
        let tmp = self.dir.join(".credentials.toml.tmp");
        let text = toml::to_string(creds)?;
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Removes the credentials (sign out).
    pub fn remove(&self) -> anyhow::Result<bool> {
        match std::fs::remove_file(self.path()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the profile's refresh lock, waiting for another process that holds it.
    pub fn lock(&self) -> anyhow::Result<RefreshLock> {
        self.ensure_dir()?;
        let file =
            OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(self.dir.join(".lock"))?;
        file.lock().context("locking the credentials")?;
        Ok(RefreshLock { _file: file })
    }

    fn ensure_dir(&self) -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Credentials {
        Credentials {
            server: "ws://x/v1/ws".into(),
            cert: None,
            insecure: false,
            user_id: 7,
            username: "ann".into(),
            session_id: "s".into(),
            access_token: Secret::new("access-secret"),
            access_expires_at_ms: 10,
            refresh_token: Secret::new("cfr1_refresh-secret"),
            refresh_expires_at_ms: 20,
        }
    }

    #[test]
    fn file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredStore::new(&dir.path().join("p"));
        store.save(&sample()).unwrap();
        let mode = std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        let back = store.load().unwrap().unwrap();
        assert_eq!(back.refresh_token.expose(), "cfr1_refresh-secret");
        assert!(store.remove().unwrap());
        assert!(store.load().unwrap().is_none());
    }

    #[test]
    fn debug_hides_tokens() {
        let s = format!("{:?}", sample());
        assert!(!s.contains("access-secret") && !s.contains("refresh-secret"), "{s}");
        assert!(s.contains("ann"));
    }
}
