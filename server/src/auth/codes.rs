//! One-time codes: 6 random digits, stored only as HMAC-SHA256 under a server secret (so a leaked
//! table cannot be brute-forced offline), and delivered by a [`Sender`](super::sender::Sender).

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AuthError;
use crate::store::CodeKind;

/// A uniformly random 6-digit code.
pub fn generate() -> Result<String, AuthError> {
    loop {
        let n = u32::from_le_bytes(super::random_bytes::<4>()?);
        // Reject the top of the range so every code is equally likely.
        if n < 4_294_000_000 {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

/// Keys code hashes with the server secret.
#[derive(Clone)]
pub struct CodeHasher {
    key: [u8; 32],
}

impl std::fmt::Debug for CodeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeHasher([REDACTED])")
    }
}

impl CodeHasher {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The stored form of `code` sent for `kind` to `destination`.
    pub fn hash(&self, kind: CodeKind, destination: &str, code: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&(kind as i32).to_le_bytes());
        mac.update(destination.as_bytes());
        mac.update(&[0]);
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// The 32-byte secret at `path` (hex), or `None` when there is no file.
pub fn read_secret(path: &Path) -> Result<Option<[u8; 32]>, AuthError> {
    let err = |e: &dyn std::fmt::Display| AuthError::Setup(format!("{}: {e}", path.display()));
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(&e))?;
    let bytes = hex::decode(text.trim()).map_err(|e| err(&e))?;
    bytes.try_into().map(Some).map_err(|_| err(&"expected 32 bytes of hex"))
}

/// The 32-byte secret at `path` (hex), generated (mode 0600) when missing.
pub fn load_or_generate_secret(path: &Path) -> Result<[u8; 32], AuthError> {
    if let Some(key) = read_secret(path)? {
        return Ok(key);
    }
    let err = |e: &dyn std::fmt::Display| AuthError::Setup(format!("{}: {e}", path.display()));
    let key = super::random_bytes::<32>()?;
    crate::tls::write_private(path, hex::encode(key).as_bytes()).map_err(|e| err(&e))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_hashes_depend_on_everything() {
        for _ in 0..100 {
            let c = generate().expect("code");
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        let h = CodeHasher::new([7; 32]);
        let base = h.hash(CodeKind::SignIn, "+33600000000", "123456");
        assert_eq!(base, h.hash(CodeKind::SignIn, "+33600000000", "123456"));
        assert_ne!(base, h.hash(CodeKind::PasswordReset, "+33600000000", "123456"));
        assert_ne!(base, h.hash(CodeKind::SignIn, "+33600000001", "123456"));
        assert_ne!(base, h.hash(CodeKind::SignIn, "+33600000000", "123457"));
        assert_ne!(base, CodeHasher::new([8; 32]).hash(CodeKind::SignIn, "+33600000000", "123456"));
    }
}
