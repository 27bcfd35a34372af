//! Encryption at rest, the primitives (docs/operations.md "Encryption at rest"): key-encryption
//! keys read from files, data keys wrapped by them, and XChaCha20-Poly1305 sealing of texts and
//! blob segments with associated data that binds each ciphertext to its place. Pure functions
//! over bytes: which key seals what, and where keys are kept, is `store::keys`' business.

pub mod blind;
pub mod chain;
pub mod segments;

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// Bytes in every key (KEKs, data keys, the search index key).
pub const KEY_BYTES: usize = 32;
/// Bytes of an XChaCha20-Poly1305 nonce (random per ciphertext, RFC draft-irtf-cfrg-xchacha).
pub const NONCE_BYTES: usize = 24;
/// Bytes of the Poly1305 tag.
pub const TAG_BYTES: usize = 16;
/// The first character of a sealed text as stored in a text column. Every string a client sends
/// refuses it (docs/protocol.md §5.4: no C0 control characters), so a stored text that starts
/// with it is sealed and nothing else.
pub const SEALED_MARK: char = '\u{1}';
/// Version of the sealed formats (texts, wrapped keys, blob segments).
const FORMAT: u8 = 1;

/// Why something could not be opened or a key not read.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext is not in the format, was altered, belongs to another place, or the key is
    /// not the one it was sealed with.
    #[error("a sealed value failed authentication (altered, moved from another row, or the wrong key)")]
    Inauthentic,
    /// A sealed value names a data key the database does not hold.
    #[error("data key {0} is unknown")]
    UnknownKey(i64),
    /// A data key is wrapped by a key-encryption key this server was not given.
    #[error("data keys are wrapped by key-encryption key {0}, which is not configured")]
    MissingKek(String),
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("{0}")]
    Format(String),
}

/// 32 secret bytes, wiped when dropped, never printed.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; KEY_BYTES]>);

impl SecretKey {
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// 32 bytes from the operating system's random source.
    pub fn random() -> Self {
        let mut k = Zeroizing::new([0u8; KEY_BYTES]);
        getrandom::fill(k.as_mut()).expect("the operating system's random source failed");
        Self(k)
    }

    pub fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.0).into())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// A key-encryption key: the operator's secret from a key file, known by its id.
#[derive(Clone)]
pub struct Kek {
    /// 16 lowercase hex digits: the start of HMAC-SHA-256(key, "confab kek id"). Names the key
    /// in the database and in `keys status` without revealing it.
    pub id: String,
    key: SecretKey,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).field("key", &"<redacted>").finish()
    }
}

impl Kek {
    pub fn new(key: SecretKey) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("HMAC takes any key length");
        mac.update(b"confab kek id");
        let id = hex::encode(&mac.finalize().into_bytes()[..8]);
        Self { id, key }
    }

    /// Reads a key file: exactly 32 bytes (`head -c 32 /dev/urandom > kek`), or those 32 bytes
    /// in standard or URL-safe base64 (padding and surrounding whitespace allowed).
    ///
    /// # Errors
    /// `KeyFile` when the file cannot be read or holds anything else.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let bad = |reason: String| CryptoError::KeyFile { path: path.display().to_string(), reason };
        let mut raw = Zeroizing::new(std::fs::read(path).map_err(|e| bad(e.to_string()))?);
        Self::parse(&raw).ok_or_else(|| {
            raw.zeroize();
            bad(format!(
                "holds {} bytes: it must hold 32 random bytes, raw or base64-encoded (head -c 32 /dev/urandom > FILE)",
                raw.len()
            ))
        })
    }

    /// The key in a key file's contents (see [`Kek::load`]).
    pub fn parse(raw: &[u8]) -> Option<Self> {
        if let Ok(bytes) = <[u8; KEY_BYTES]>::try_from(raw) {
            return Some(Self::new(SecretKey::from_bytes(bytes)));
        }
        let text = std::str::from_utf8(raw).ok()?.trim();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines.iter().find_map(|e| {
            let decoded = Zeroizing::new(e.decode(text).ok()?);
            let bytes = <[u8; KEY_BYTES]>::try_from(decoded.as_slice()).ok()?;
            Some(Self::new(SecretKey::from_bytes(bytes)))
        })
    }

    /// Wraps the data key of `slot` (its scope, period and generation, unique in a database):
    /// `version ‖ nonce ‖ ciphertext ‖ tag`, bound to the slot and this KEK's id, so a wrapped
    /// key copied to another row does not unwrap.
    pub fn wrap(&self, slot: &str, key: &SecretKey) -> Vec<u8> {
        seal_bytes(&self.key, &wrap_aad(&self.id, slot), key.expose())
    }

    /// The data key wrapped by [`Kek::wrap`].
    ///
    /// # Errors
    /// `Inauthentic` for a wrapped key of another row, altered, or wrapped by another KEK.
    pub fn unwrap(&self, slot: &str, wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
        let plain = Zeroizing::new(open_bytes(&self.key, &wrap_aad(&self.id, slot), wrapped)?);
        let bytes = <[u8; KEY_BYTES]>::try_from(plain.as_slice()).map_err(|_| CryptoError::Inauthentic)?;
        Ok(SecretKey::from_bytes(bytes))
    }
}

fn wrap_aad(kek_id: &str, slot: &str) -> Vec<u8> {
    format!("confab/v1/data-key/{kek_id}/{slot}").into_bytes()
}

/// Where a sealed value lives: its associated data, so a ciphertext moved to another row (or
/// another column) fails to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place<'a> {
    /// `messages.text` of the message at `seq` in conversation `conv`.
    Message { conv: i64, seq: i64 },
    /// `conversation_events.text` of the log entry `seq` (a posted or edited text).
    Log { conv: i64, seq: i64 },
    /// `message_attachments.file_name` of media `media` at `position` on message `message`.
    Attachment { message: i64, position: i64, media: &'a str },
    /// `media.file_name`.
    MediaName { media: &'a str },
    /// `uploads.file_name`.
    UploadName { upload: &'a str },
    /// Chunk `index` of upload `upload` in the blob store.
    Part { upload: &'a str, index: u32 },
    /// Segment `index` of blob `blob` (its key in the blob store); `last` for the final one, so
    /// a blob cut at a segment boundary does not open.
    Segment { blob: &'a str, index: u64, last: bool },
}

impl Place<'_> {
    fn aad(&self, key_id: i64) -> Vec<u8> {
        let place = match self {
            Self::Message { conv, seq } => format!("message/{conv}/{seq}"),
            Self::Log { conv, seq } => format!("log/{conv}/{seq}"),
            Self::Attachment { message, position, media } => format!("attachment/{message}/{position}/{media}"),
            Self::MediaName { media } => format!("media-name/{media}"),
            Self::UploadName { upload } => format!("upload-name/{upload}"),
            Self::Part { upload, index } => format!("part/{upload}/{index}"),
            Self::Segment { blob, index, last } => format!("segment/{blob}/{index}/{}", u8::from(*last)),
        };
        format!("confab/v1/{place}/key/{key_id}").into_bytes()
    }
}

/// `version ‖ nonce ‖ ciphertext ‖ tag` of `plain` under `key` with `aad`.
fn seal_bytes(key: &SecretKey, aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).expect("the operating system's random source failed");
    let ct = key
        .cipher()
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
        .expect("XChaCha20-Poly1305 seals any length this server stores");
    let mut out = Vec::with_capacity(1 + NONCE_BYTES + ct.len());
    out.push(FORMAT);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open_bytes(key: &SecretKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] != FORMAT {
        return Err(CryptoError::Inauthentic);
    }
    let nonce: [u8; NONCE_BYTES] = sealed[1..1 + NONCE_BYTES].try_into().map_err(|_| CryptoError::Inauthentic)?;
    key.cipher()
        .decrypt(&XNonce::from(nonce), Payload { msg: &sealed[1 + NONCE_BYTES..], aad })
        .map_err(|_| CryptoError::Inauthentic)
}

/// Extra bytes [`seal`] adds to a value: version, key id, nonce, tag.
pub const SEAL_OVERHEAD: usize = 1 + 8 + NONCE_BYTES + TAG_BYTES;

/// Seals `plain` under data key `key_id`: `key id (8 bytes, big-endian) ‖ version ‖ nonce ‖
/// ciphertext ‖ tag`, with `place` and the key id as associated data.
pub fn seal(key_id: i64, key: &SecretKey, place: &Place<'_>, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&seal_bytes(key, &place.aad(key_id), plain));
    out
}

/// The data key a value sealed by [`seal`] names.
pub fn sealed_key_id(sealed: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(sealed.get(..8)?.try_into().ok()?))
}

/// Opens a value sealed by [`seal`] with the key it names (`key`, found by the caller through
/// [`sealed_key_id`]).
///
/// # Errors
/// `Inauthentic` when it was altered, sealed for another place, or under another key.
pub fn open(key: &SecretKey, place: &Place<'_>, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let key_id = sealed_key_id(sealed).ok_or(CryptoError::Inauthentic)?;
    open_bytes(key, &place.aad(key_id), &sealed[8..])
}

/// A sealed value as kept in a text column: [`SEALED_MARK`] and the value in base64 (standard
/// alphabet, no padding).
pub fn to_text(sealed: &[u8]) -> String {
    let mut s = String::with_capacity(1 + sealed.len().div_ceil(3) * 4);
    s.push(SEALED_MARK);
    base64::engine::general_purpose::STANDARD_NO_PAD.encode_string(sealed, &mut s);
    s
}

/// The sealed bytes of a text column's value; `None` for plaintext (no mark).
///
/// # Errors
/// `Inauthentic` for a marked value that is not base64.
pub fn from_text(text: &str) -> Result<Option<Vec<u8>>, CryptoError> {
    match text.strip_prefix(SEALED_MARK) {
        None => Ok(None),
        Some(b64) => {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64).map(Some).map_err(|_| CryptoError::Inauthentic)
        }
    }
}

/// HMAC-SHA-256 of `data` under `key`.
pub fn hmac(key: &SecretKey, data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_raw_or_base64_and_nothing_else() {
        let bytes = [7u8; 32];
        let raw = Kek::parse(&bytes).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        for text in [b64.clone(), format!("{b64}\n"), b64.trim_end_matches('=').to_string()] {
            assert_eq!(Kek::parse(text.as_bytes()).unwrap().id, raw.id);
        }
        assert_eq!(raw.id.len(), 16);
        for bad in [&[7u8; 31][..], &[7u8; 33][..], b"", b"not base64 at all!!"] {
            assert!(Kek::parse(bad).is_none());
        }
        assert!(!format!("{raw:?}").contains("7, 7"));
    }

    #[test]
    fn wrapped_keys_open_only_in_their_row_under_their_kek() {
        let kek = Kek::new(SecretKey::random());
        let dk = SecretKey::random();
        let w = kek.wrap("c9/5/1", &dk);
        assert_eq!(kek.unwrap("c9/5/1", &w).unwrap().expose(), dk.expose());
        assert!(kek.unwrap("c9/6/1", &w).is_err());
        assert!(kek.unwrap("c8/5/1", &w).is_err());
        assert!(Kek::new(SecretKey::random()).unwrap("c9/5/1", &w).is_err());
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_place_and_unaltered() {
        let k = SecretKey::random();
        let place = Place::Message { conv: 3, seq: 10 };
        let s = seal(42, &k, &place, b"canary text");
        assert_eq!(sealed_key_id(&s), Some(42));
        assert_eq!(open(&k, &place, &s).unwrap(), b"canary text");
        assert!(open(&k, &Place::Message { conv: 3, seq: 11 }, &s).is_err());
        assert!(open(&k, &Place::Log { conv: 3, seq: 10 }, &s).is_err());
        for i in 0..s.len() {
            let mut bad = s.clone();
            bad[i] ^= 1;
            assert!(open(&k, &place, &bad).is_err(), "byte {i}");
        }
        assert!(open(&SecretKey::random(), &place, &s).is_err());
        let text = to_text(&s);
        assert_eq!(from_text(&text).unwrap().unwrap(), s);
        assert_eq!(from_text("hello").unwrap(), None);
        assert!(from_text("\u{1}!!").is_err());
    }
}
