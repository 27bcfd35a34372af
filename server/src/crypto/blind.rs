//! The blind search index (docs/operations.md "Encryption at rest"): with encryption on, the
//! index holds keyed hashes (HMAC-SHA-256, truncated to 48 bits) of a message's folded text
//! instead of the text: one token per character position for the three characters starting
//! there, in order, then one token for each distinct character and each distinct pair of
//! non-space characters. A needle of three characters or more is found as its run of trigram
//! tokens, side by side; a shorter one as its single token. What this shows to whoever reads the
//! database: which tokens repeat, within a message and across messages, and how long texts are.

use super::SecretKey;

/// Letters in a token: 48 bits, four per letter `a`..`p` (letters only, so every full-text
/// parser reads a token as one word).
pub const TOKEN_LETTERS: usize = 12;

/// The search index key and the functions that hash texts and needles with it.
#[derive(Clone, Debug)]
pub struct BlindIndex {
    key: SecretKey,
}

impl BlindIndex {
    pub fn new(key: SecretKey) -> Self {
        Self { key }
    }

    fn token(&self, gram: &str, out: &mut String) {
        let mac = super::hmac(&self.key, gram.as_bytes());
        for b in &mac[..TOKEN_LETTERS / 2] {
            out.push(char::from(b'a' + (b >> 4)));
            out.push(char::from(b'a' + (b & 0x0f)));
        }
    }

    /// The index document of `folded` (a folded text, spaces at the ends, as
    /// `search::normalize` makes it): tokens separated by single spaces, a space at each end.
    pub fn document(&self, folded: &str) -> String {
        let chars: Vec<(usize, char)> = folded.char_indices().collect();
        let mut out = String::with_capacity(chars.len() * (TOKEN_LETTERS + 1) * 2 + 1);
        out.push(' ');
        let slice = |i: usize, n: usize| {
            let start = chars[i].0;
            let end = chars.get(i + n).map_or(folded.len(), |c| c.0);
            &folded[start..end]
        };
        for i in 0..chars.len().saturating_sub(2) {
            self.token(slice(i, 3), &mut out);
            out.push(' ');
        }
        let mut short: Vec<&str> = Vec::new();
        for i in 0..chars.len() {
            if chars[i].1 == ' ' {
                continue;
            }
            short.push(slice(i, 1));
            if chars.get(i + 1).is_some_and(|c| c.1 != ' ') {
                short.push(slice(i, 2));
            }
        }
        short.sort_unstable();
        short.dedup();
        for s in short {
            self.token(s, &mut out);
            out.push(' ');
        }
        out
    }

    /// The tokens a document holds for `needle` (folded, no spaces at the ends): its trigram
    /// tokens in order, or its one token when it is shorter; separated by single spaces.
    pub fn needle(&self, needle: &str) -> String {
        let chars: Vec<usize> = needle.char_indices().map(|c| c.0).chain([needle.len()]).collect();
        let n = chars.len() - 1;
        let mut out = String::new();
        if n < 3 {
            self.token(needle, &mut out);
            return out;
        }
        for i in 0..n - 2 {
            if i > 0 {
                out.push(' ');
            }
            self.token(&needle[chars[i]..chars[i + 3]], &mut out);
        }
        out
    }

    /// The tokens of `word` as a whole word (with the spaces around it).
    pub fn whole_word(&self, word: &str) -> String {
        self.needle(&format!(" {word} "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needles_are_runs_of_document_tokens_exactly_when_they_are_substrings() {
        let b = BlindIndex::new(SecretKey::random());
        let doc = b.document(" parse config file élodie 東京 ");
        for (needle, found) in [
            ("config", true),
            ("conf", true),
            ("fig fi", true),
            ("élodie", true),
            ("東京", true),
            ("京", true),
            ("co", true),
            ("gif", false),
            ("configs", false),
            ("zz", false),
            ("x", false),
            ("ig f", true),
        ] {
            let hit = doc.contains(&format!(" {} ", b.needle(needle)));
            assert_eq!(hit, found, "{needle}");
        }
        assert!(doc.contains(&format!(" {} ", b.whole_word("config"))));
        assert!(!doc.contains(&format!(" {} ", b.whole_word("conf"))));
        // Another key, other tokens.
        let other = BlindIndex::new(SecretKey::random());
        assert!(!doc.contains(&format!(" {} ", other.needle("config"))));
        assert!(doc.split(' ').filter(|t| !t.is_empty()).all(|t| t.len() == TOKEN_LETTERS));
    }
}
