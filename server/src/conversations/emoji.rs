//! Reaction emoji (docs/protocol.md §13.5): exactly one emoji of Unicode's emoji data (the
//! `emojis` crate: RGI emoji with their skin-tone variants), or a known gemoji `:shortcode:`,
//! mapped to one canonical spelling so that each emoji counts once whatever its spelling.

use crate::error::ServerError;

/// The longest `emoji` field looked at, in UTF-8 bytes; longer input is refused unread. The
/// longest RGI emoji (a family or kiss with skin tones) is 35 bytes.
const MAX_EMOJI_BYTES: usize = 64;

/// §13.5: the canonical spelling of a reaction: the fully-qualified form of the one emoji `e`
/// is (any qualification: "#⃣" and "#️⃣", "☺" and "☺️" are the same emoji), or of the emoji a
/// gemoji `:shortcode:` names (":tada:" is "🎉").
///
/// Errors: `INVALID_ARGUMENT` naming `field` for anything else: text, more than one emoji, a
/// component alone (a skin-tone modifier, a regional indicator, ZWJ, a variation selector),
/// invisible or bidi control characters, or an unknown shortcode.
pub fn canonical_emoji(field: &'static str, e: &str) -> Result<&'static str, ServerError> {
    if e.len() > MAX_EMOJI_BYTES {
        return Err(ServerError::invalid(field, "one emoji or a :shortcode:"));
    }
    if let Some(code) = e.strip_prefix(':').and_then(|x| x.strip_suffix(':')).filter(|c| !c.is_empty()) {
        return match emojis::get_by_shortcode(code) {
            Some(emoji) => Ok(emoji.as_str()),
            None => Err(ServerError::invalid(field, format!("unknown shortcode :{code}:"))),
        };
    }
    match emojis::get(e) {
        Some(emoji) => Ok(emoji.as_str()),
        None => Err(ServerError::invalid(field, "exactly one emoji (Unicode emoji data) or a known :shortcode:")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every emoji the crate carries, skin-tone variants included.
    fn every_emoji() -> impl Iterator<Item = &'static emojis::Emoji> {
        emojis::iter().flat_map(|e| -> Box<dyn Iterator<Item = &'static emojis::Emoji>> {
            match e.skin_tones() {
                Some(tones) => Box::new(tones),
                None => Box::new(std::iter::once(e)),
            }
        })
    }

    fn ok(e: &str) -> &'static str {
        canonical_emoji("react.emoji", e).unwrap_or_else(|err| panic!("{e:?} ({:04X?}) refused: {err}", cps(e)))
    }

    fn cps(e: &str) -> Vec<u32> {
        e.chars().map(u32::from).collect()
    }

    #[test]
    fn every_emoji_is_accepted_and_canonical() {
        let mut n = 0;
        for e in every_emoji() {
            assert_eq!(ok(e.as_str()), e.as_str(), "{:04X?} is not its own canonical form", cps(e.as_str()));
            assert!(e.as_str().len() <= MAX_EMOJI_BYTES, "{:04X?} is longer than the cap", cps(e.as_str()));
            n += 1;
        }
        assert!(n > 3700, "only {n} emoji with skin tones");
    }

    #[test]
    fn every_shortcode_maps_to_its_emoji() {
        let mut n = 0;
        for e in every_emoji() {
            for code in e.shortcodes() {
                assert_eq!(ok(&format!(":{code}:")), e.as_str(), ":{code}:");
                n += 1;
            }
        }
        assert!(n > 1500, "only {n} shortcodes");
    }

    #[test]
    fn spellings_of_one_emoji_are_one() {
        for (a, b) in [
            ("#\u{20E3}", "#\u{FE0F}\u{20E3}"),
            ("1\u{20E3}", "1\u{FE0F}\u{20E3}"),
            ("\u{263A}", "\u{263A}\u{FE0F}"),
            ("\u{2764}", "\u{2764}\u{FE0F}"),
            (":tada:", "🎉"),
            (":+1:", "👍"),
            (":thumbsup:", "👍"),
            (":one:", "1\u{FE0F}\u{20E3}"),
        ] {
            assert_eq!(ok(a), ok(b), "{a:?} and {b:?}");
            assert_eq!(ok(a), ok(ok(a)), "canonical forms are stable");
        }
        assert_eq!(ok("1\u{FE0F}\u{20E3}"), "1\u{FE0F}\u{20E3}");
        for e in ["👍", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "🇫🇷", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "🧑🏻‍❤️‍💋‍🧑🏿"]
        {
            assert_eq!(ok(e), e);
        }
    }

    #[test]
    fn anything_but_one_emoji_is_refused() {
        for bad in [
            "",
            " ",
            "a",
            "ab",
            "7",
            "#",
            "\u{200B}",
            "\u{200D}",
            "\u{200C}",
            "\u{202E}",
            "\u{FE0F}",
            "\u{20E3}",
            "\u{1F3FB}",
            "\u{1F1E6}",
            "\u{1F9B0}",
            "👍👍",
            "👍 ",
            "\u{202E}👍",
            "👍\u{200B}",
            "🇫🇷🇩🇪",
            "::",
            ":Tada:",
            ":no_such_shortcode:",
            ":tada",
            "tada",
            "\0",
        ] {
            let err = canonical_emoji("unreact.emoji", bad).expect_err(bad);
            assert_eq!(err.code(), confab_protocol::v1::ErrorCode::InvalidArgument, "{bad:?}");
            assert!(err.to_string().contains("unreact.emoji"), "{bad:?}: {err}");
        }
        assert!(canonical_emoji("react.emoji", &"👍".repeat(40)).is_err());
        assert!(canonical_emoji("react.emoji", &format!(":{}:", "a".repeat(100))).is_err());
    }
}
