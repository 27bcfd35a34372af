//! Access tokens: EdDSA (Ed25519) JWTs. The algorithm is pinned here and never read from a token;
//! iss, aud, sub, exp and iat are required and checked with a small leeway. Refresh tokens are
//! opaque 256-bit random strings stored only as SHA-256 hashes.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::AuthError;
use crate::store::UserId;

/// The claims of a Confab access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id, in decimal.
    pub sub: String,
    /// The session id.
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
}

/// The claims of a meeting room's token (docs/protocol.md §25.2, §25.3): an invite (`sub`
/// `invite`) or a guest's resume token (`sub` `guest`). Audience: the access tokens' + `/room`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomClaims {
    pub iss: String,
    pub aud: String,
    /// `invite` or `guest`.
    pub sub: String,
    /// The room id.
    pub room: String,
    /// The wire `RoomRole` number.
    pub role: i32,
    /// The invite id (both kinds).
    pub inv: String,
    /// The guest id (`guest` only).
    #[serde(default)]
    pub gid: String,
    /// The guest's display name (`guest` only).
    #[serde(default)]
    pub name: String,
    pub iat: u64,
    pub exp: u64,
}

/// A verified access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub user_id: UserId,
    pub session_id: String,
    pub expires_at_ms: u64,
}

/// Signs and verifies access tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    room_validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
    leeway: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("issuer", &self.issuer).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// A new Ed25519 private key, in PKCS#8 PEM.
pub fn generate_key() -> Result<String, AuthError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| AuthError::Setup(e.to_string()))?;
    Ok(key.serialize_pem())
}

/// The Ed25519 private key (PKCS#8 PEM) at `path`, or `None` when there is no file.
pub fn read_key(path: &Path) -> Result<Option<String>, AuthError> {
    if !path.exists() {
        return Ok(None);
    }
    std::fs::read_to_string(path).map(Some).map_err(|e| AuthError::Setup(format!("{}: {e}", path.display())))
}

/// The Ed25519 private key (PKCS#8 PEM) at `path`, generated (mode 0600) when missing.
pub fn load_or_generate_key(path: &Path) -> Result<String, AuthError> {
    if let Some(pem) = read_key(path)? {
        return Ok(pem);
    }
    let pem = generate_key()?;
    crate::tls::write_private(path, pem.as_bytes()).map_err(|e| AuthError::Setup(e.to_string()))?;
    tracing::info!(path = %path.display(), "generated the access token signing key");
    Ok(pem)
}

impl Tokens {
    /// From an Ed25519 private key in PKCS#8 PEM.
    pub fn new(
        private_pem: &str,
        issuer: &str,
        audience: &str,
        ttl: Duration,
        leeway: Duration,
    ) -> Result<Self, AuthError> {
        let encoding = EncodingKey::from_ed_pem(private_pem.as_bytes())
            .map_err(|e| AuthError::Setup(format!("signing key: {e}")))?;
        let pair = rcgen::KeyPair::from_pem(private_pem).map_err(|e| AuthError::Setup(format!("signing key: {e}")))?;
        let decoding = DecodingKey::from_ed_pem(pair.public_key_pem().as_bytes())
            .map_err(|e| AuthError::Setup(format!("verifying key: {e}")))?;
        // Only EdDSA is accepted, whatever a token's header says.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut room_validation = validation.clone();
        room_validation.set_audience(&[format!("{audience}/room")]);
        Ok(Self {
            encoding,
            decoding,
            validation,
            room_validation,
            issuer: issuer.into(),
            audience: audience.into(),
            ttl,
            leeway,
        })
    }

    /// The access token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues an access token for a session; returns it with its expiry (Unix ms).
    pub fn issue(&self, user_id: UserId, session_id: &str, now_ms: u64) -> Result<(String, u64), AuthError> {
        let iat = now_ms / 1000;
        let exp = iat + self.ttl.as_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            iat,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| AuthError::Setup(format!("signing: {e}")))?;
        Ok((token, exp * 1000))
    }

    /// Signs a room token (§25.2) with `claims`; `iss` and `aud` are set here.
    pub fn issue_room(&self, mut claims: RoomClaims) -> Result<String, AuthError> {
        claims.iss = self.issuer.clone();
        claims.aud = format!("{}/room", self.audience);
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| AuthError::Setup(format!("signing: {e}")))
    }

    /// Verifies a room token's signature, algorithm, issuer, audience and times. Says only
    /// "invalid".
    pub fn verify_room(&self, token: &str, now_ms: u64) -> Result<RoomClaims, AuthError> {
        if token.len() > 4096 {
            return Err(AuthError::InvalidToken);
        }
        let data = jsonwebtoken::decode::<RoomClaims>(token, &self.decoding, &self.room_validation).map_err(|e| {
            tracing::debug!(error = %e, "room token refused");
            AuthError::InvalidToken
        })?;
        if data.claims.iat > now_ms / 1000 + self.leeway.as_secs() {
            return Err(AuthError::InvalidToken);
        }
        Ok(data.claims)
    }

    /// Verifies signature, algorithm, issuer, audience and times. Says only "invalid".
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Verified, AuthError> {
        if token.len() > 4096 {
            return Err(AuthError::InvalidToken);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            tracing::debug!(error = %e, "access token refused");
            AuthError::InvalidToken
        })?;
        let c = data.claims;
        // iat is required (the struct has no default for it) and may not be in the future.
        if c.iat > now_ms / 1000 + self.leeway.as_secs() {
            return Err(AuthError::InvalidToken);
        }
        let user_id = c.sub.parse::<i64>().map(UserId).map_err(|_| AuthError::InvalidToken)?;
        if c.sid.is_empty() {
            return Err(AuthError::InvalidToken);
        }
        Ok(Verified { user_id, session_id: c.sid, expires_at_ms: c.exp * 1000 })
    }
}

/// A new refresh token and the hash stored for it.
pub fn new_refresh_token() -> Result<(String, Vec<u8>), AuthError> {
    let bytes = super::random_bytes::<32>()?;
    let token = format!("cfr1_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_refresh_token(&token);
    Ok((token, hash))
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}
