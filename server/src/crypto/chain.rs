//! A hash chain (the audit log's, docs/operations.md "Audit log"): each entry's hash is
//! SHA-256 over a domain tag, the previous entry's hash and the entry's canonical bytes, so
//! changing, removing, inserting or reordering an entry changes every hash after it.

use sha2::{Digest, Sha256};

/// Bytes of a link hash (SHA-256).
pub const HASH_BYTES: usize = 32;

/// The hash before the first entry.
pub const GENESIS: [u8; HASH_BYTES] = [0; HASH_BYTES];

/// Separates this chain's hashes from any other use of SHA-256 over the same bytes.
const DOMAIN: &[u8] = b"confab-audit-v1";

/// The hash of an entry whose canonical encoding is `body`, after an entry hashed `prev`.
pub fn link(prev: &[u8; HASH_BYTES], body: &[u8]) -> [u8; HASH_BYTES] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(prev);
    h.update(body);
    h.finalize().into()
}

/// Builds an entry's canonical encoding: fixed-width big-endian integers, an optional integer
/// as a presence byte then the integer, and strings as their length (u32, big-endian) then
/// their UTF-8 bytes, so no two different entries encode alike.
#[derive(Debug, Default)]
pub struct Canonical(Vec<u8>);

impl Canonical {
    pub fn int(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn opt(mut self, v: Option<i64>) -> Self {
        match v {
            Some(v) => {
                self.0.push(1);
                self.0.extend_from_slice(&v.to_be_bytes());
            }
            None => self.0.push(0),
        }
        self
    }

    pub fn text(mut self, s: &str) -> Self {
        self.0.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_a_link_changes_its_hash() {
        let body = Canonical::default().int(1).opt(Some(2)).text("a").bytes();
        let h = link(&GENESIS, &body);
        assert_ne!(h, link(&[1; HASH_BYTES], &body), "another previous hash");
        assert_ne!(h, link(&GENESIS, &Canonical::default().int(1).opt(None).text("a").bytes()));
        assert_ne!(h, link(&GENESIS, &Canonical::default().int(1).opt(Some(2)).text("b").bytes()));
        // Lengths are part of the encoding: "ab" + "" is not "a" + "b".
        let ab = Canonical::default().text("ab").text("").bytes();
        let a_b = Canonical::default().text("a").text("b").bytes();
        assert_ne!(ab, a_b);
        assert_eq!(h, link(&GENESIS, &body), "deterministic");
    }
}
