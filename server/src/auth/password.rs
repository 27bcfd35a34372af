//! Password hashing: argon2id at OWASP's minimum (19 MiB, t=2, p=1), computed on the blocking
//! pool behind a small semaphore so logins cannot starve the runtime. An unknown account is
//! checked against a dummy hash, so it costs the same time as a known one.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::AuthError;

/// Hashes and verifies passwords with bounded concurrency.
#[derive(Clone, Debug)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    dummy: Arc<String>,
}

fn argon2() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| AuthError::Setup(format!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &[u8]) -> Result<String, AuthError> {
    Ok(argon2()?.hash_password(password).map_err(|e| AuthError::Setup(format!("hashing: {e}")))?.to_string())
}

fn verify_blocking(password: &[u8], hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    argon2().is_ok_and(|a| a.verify_password(password, &parsed).is_ok())
}

impl Passwords {
    /// `concurrency` hashes may run at once.
    pub async fn new(concurrency: u32) -> Result<Self, AuthError> {
        let dummy = tokio::task::spawn_blocking(|| hash_blocking(b"confab-dummy-password"))
            .await
            .map_err(|e| AuthError::Setup(e.to_string()))??;
        Ok(Self { permits: Arc::new(Semaphore::new(concurrency as usize)), dummy: Arc::new(dummy) })
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let _permit = self.permits.acquire().await.map_err(|_| AuthError::Setup("hasher closed".into()))?;
        let password = password.as_bytes().to_vec();
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| AuthError::Setup(e.to_string()))?
    }

    /// True when `password` matches `hash`. With no hash (unknown account, or an account without
    /// a password) the dummy is checked, for equal cost, and the answer is false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        let _permit = self.permits.acquire().await.map_err(|_| AuthError::Setup("hasher closed".into()))?;
        let (target, real) = match hash {
            Some(h) => (h.to_string(), true),
            None => (self.dummy.as_str().to_string(), false),
        };
        let password = password.as_bytes().to_vec();
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&password, &target))
            .await
            .map_err(|e| AuthError::Setup(e.to_string()))?;
        Ok(ok && real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_use_owasp_parameters() {
        let p = Passwords::new(2).await.expect("init");
        let h = p.hash("correct horse").await.expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("correct horse", Some(&h)).await.expect("verify"));
        assert!(!p.verify("wrong horse", Some(&h)).await.expect("verify"));
        assert!(!p.verify("confab-dummy-password", None).await.expect("dummy never matches"));
    }
}
