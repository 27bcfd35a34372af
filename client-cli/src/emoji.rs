//! Reaction emoji as the client sends and shows them: a gemoji `:shortcode:` (or the bare
//! name) becomes its emoji, and each emoji has one spelling (the fully-qualified one of Unicode's
//! emoji data, via the `emojis` crate), so `:thumbsup:`, `+1` and 👍 count as one reaction, as
//! the server counts them (docs/protocol.md §13.5).

/// The emoji a reaction prompt's input names: one emoji in its canonical spelling, or the emoji
/// of a shortcode with or without its colons (`:tada:`, `tada`). `None` for anything else.
pub fn parse(input: &str) -> Option<&'static str> {
    let s = input.trim();
    let code = s.strip_prefix(':').and_then(|x| x.strip_suffix(':')).unwrap_or(s);
    emojis::get(s).or_else(|| emojis::get_by_shortcode(code)).map(|e| e.as_str())
}

/// How a reaction received is shown and counted: its canonical emoji, or the text as it came
/// when it is none (an older server's free text).
pub fn canonical(reaction: &str) -> String {
    parse(reaction).map_or_else(|| reaction.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcodes_and_spellings_become_one_emoji() {
        assert_eq!(parse(":thumbsup:"), Some("👍"));
        assert_eq!(parse("+1"), Some("👍"));
        assert_eq!(parse("thumbsup"), Some("👍"));
        assert_eq!(parse("👍"), Some("👍"));
        assert_eq!(parse(" :tada: "), Some("🎉"));
        // Unqualified and fully-qualified spellings of one emoji are one.
        assert_eq!(parse("\u{263A}"), parse("\u{263A}\u{FE0F}"));
        assert_eq!(parse("not an emoji"), None);
        assert_eq!(parse(":nope-nope:"), None);
        assert_eq!(canonical(":thumbsup:"), "👍");
        assert_eq!(canonical("free text"), "free text");
    }
}
