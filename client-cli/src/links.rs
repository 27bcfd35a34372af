//! Links and mentions in a message's text, as byte ranges: `http://`, `https://` and `www.`
//! URLs (trailing punctuation left out, parentheses and brackets kept when balanced), and
//! `@name` mentions of a user.

use std::ops::Range;

/// A URL found in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Where it is in the text (bytes).
    pub range: Range<usize>,
    /// What to open: the text itself, with `https://` before a bare `www.` address.
    pub url: String,
}

/// Characters that end a URL (besides whitespace and control characters).
fn stops(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`')
}

/// True when the URL may start at byte `at`: at the start or after a character that cannot be
/// part of a word or an address.
fn starts_word(text: &str, at: usize) -> bool {
    text[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '.' | '/' | '@' | '_' | '-')))
}

/// The scheme or `www.` a URL starts with at byte `at`, if any (ASCII case ignored).
fn prefix_at(text: &str, at: usize) -> Option<usize> {
    let rest = &text.as_bytes()[at..];
    ["https://", "http://", "www."]
        .into_iter()
        .find(|p| rest.len() > p.len() && rest[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
        .map(str::len)
}

/// Cuts what is not part of the URL from its end: sentence punctuation and quotes, and closing
/// brackets with no opening one inside.
fn trim_end(url: &str) -> &str {
    let mut s = url;
    loop {
        let Some(last) = s.chars().next_back() else { return s };
        let cut = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' => true,
            ')' => s.matches('(').count() < s.matches(')').count(),
            ']' => s.matches('[').count() < s.matches(']').count(),
            '}' => s.matches('{').count() < s.matches('}').count(),
            _ => false,
        };
        if !cut {
            return s;
        }
        s = &s[..s.len() - last.len_utf8()];
    }
}

/// The URLs in `text`, in order.
pub fn find(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let Some(next) = text[at..].find(['h', 'H', 'w', 'W']).map(|i| at + i) else { break };
        at = next;
        let Some(prefix) = prefix_at(text, at).filter(|_| starts_word(text, at)) else {
            at += 1;
            continue;
        };
        let end = text[at..].find(stops).map_or(text.len(), |i| at + i);
        let url = trim_end(&text[at..end]);
        // Something after the scheme that can name a host (the trim may have cut into `www.`);
        // `www.` needs a dot further on.
        let body = url.get(prefix..).unwrap_or_default();
        let host_ok =
            body.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '[') && (prefix != 4 || body.contains('.'));
        if host_ok {
            let open = if prefix == 4 { format!("https://{url}") } else { url.to_string() };
            out.push(Link { range: at..at + url.len(), url: open });
            at += url.len();
        } else {
            at = end.max(at + 1);
        }
    }
    out
}

/// Characters of a username (docs/protocol.md §11.1).
fn username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Where `text` mentions `@name` (ASCII case ignored), the `@` included. `@alice.` at the end of
/// a sentence is a mention of alice; `@alice.b`, `@alice_2` and `bob@alice` are not.
pub fn mentions(text: &str, name: &str) -> Vec<Range<usize>> {
    if name.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (at, _) in text.match_indices('@') {
        if text[..at].chars().next_back().is_some_and(username_char) {
            continue;
        }
        let rest = &text[at + 1..];
        let run = rest.find(|c: char| !username_char(c)).unwrap_or(rest.len());
        let word = rest[..run].trim_end_matches(['.', '-']);
        if word.eq_ignore_ascii_case(name) {
            out.push(at..at + 1 + word.len());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(text: &str) -> Vec<&str> {
        find(text).into_iter().map(|l| &text[l.range]).collect()
    }

    #[test]
    fn finds_http_https_and_www() {
        assert_eq!(
            urls("see https://example.com/a?b=1#c and http://x.org"),
            ["https://example.com/a?b=1#c", "http://x.org"]
        );
        assert_eq!(urls("HTTPS://EXAMPLE.COM/X"), ["HTTPS://EXAMPLE.COM/X"]);
        let l = find("go to www.rust-lang.org now");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].range, 6..23);
        assert_eq!(l[0].url, "https://www.rust-lang.org");
        assert_eq!(find("https://example.com")[0].url, "https://example.com");
    }

    #[test]
    fn leaves_out_trailing_punctuation() {
        assert_eq!(urls("Look: https://example.com/docs."), ["https://example.com/docs"]);
        assert_eq!(
            urls("https://a.io/x, https://b.io/y; https://c.io!?"),
            ["https://a.io/x", "https://b.io/y", "https://c.io"]
        );
        assert_eq!(urls("\"https://example.com/q\""), ["https://example.com/q"]);
        assert_eq!(urls("'https://example.com/q'"), ["https://example.com/q"]);
        assert_eq!(urls("<https://example.com/a>"), ["https://example.com/a"]);
        assert_eq!(urls("https://example.com/a:"), ["https://example.com/a"]);
    }

    #[test]
    fn keeps_balanced_brackets() {
        assert_eq!(urls("(see https://example.com/a)"), ["https://example.com/a"]);
        assert_eq!(
            urls("https://en.wikipedia.org/wiki/Rust_(programming_language)"),
            ["https://en.wikipedia.org/wiki/Rust_(programming_language)"]
        );
        assert_eq!(
            urls("(https://en.wikipedia.org/wiki/Rust_(programming_language))."),
            ["https://en.wikipedia.org/wiki/Rust_(programming_language)"]
        );
        assert_eq!(urls("[https://example.com/a[1]]"), ["https://example.com/a[1]"]);
    }

    #[test]
    fn ignores_what_is_not_a_url() {
        assert!(find("https:// nothing").is_empty());
        assert!(find("http://").is_empty());
        assert!(find("www. or www.x or awww.example.com").is_empty());
        assert!(find("xhttps://example.com").is_empty());
        assert!(find("whatever who was there").is_empty());
        assert!(find("").is_empty());
        // A control character ends a URL: nothing of it reaches the terminal's hyperlinks.
        assert_eq!(urls("https://a.io/x\u{1b}]8;;y"), ["https://a.io/x"]);
    }

    #[test]
    fn ranges_are_byte_offsets_in_unicode_text() {
        let text = "café → https://exämple.com/ü ok";
        let l = find(text);
        assert_eq!(&text[l[0].range.clone()], "https://exämple.com/ü");
        assert_eq!(urls("🎉https://example.com"), ["https://example.com"]);
    }

    #[test]
    fn finds_mentions_of_a_name() {
        let text = "@Alice see this, @alice. cc @bob @alice_2 @alice.b bob@alice (@ALICE)";
        let found: Vec<&str> = mentions(text, "alice").into_iter().map(|r| &text[r]).collect();
        assert_eq!(found, ["@Alice", "@alice", "@ALICE"]);
        assert_eq!(mentions(text, "bob").len(), 1);
        assert!(mentions("@", "alice").is_empty());
        assert!(mentions("@alice", "").is_empty());
        assert_eq!(mentions("hi @al-ice-", "al-ice"), vec![3..10]);
    }
}
