//! Text helpers for drawing: display width, wrapping, truncation, colours for names.

use std::ops::Range;

use ratatui::style::Color;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// A message's text as drawn: a tab becomes four spaces, and control and bidi formatting
/// characters other than line breaks are dropped (the terminal would not draw them, their
/// width would shift what follows, and a bidi override could disguise a link).
pub fn printable(s: &str) -> String {
    let bidi = |c: char| matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push_str("    "),
            '\n' => out.push('\n'),
            c if c.is_control() || bidi(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Cuts `s` to at most `max` columns, ending with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > max {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

/// Wraps text into lines of at most `max` columns: at spaces when it can, anywhere otherwise.
/// Newlines in the text start new lines.
pub fn wrap(text: &str, max: usize) -> Vec<String> {
    wrap2(text, max, max)
}

/// Like [`wrap`], with the first line `first` columns wide and the others `rest`.
pub fn wrap2(text: &str, first: usize, rest: usize) -> Vec<String> {
    wrap2_ranges(text, first, rest).into_iter().map(|r| text[r].to_string()).collect()
}

/// Where the lines of [`wrap2`] are in `text` (byte ranges, in order), so that what is drawn
/// on each can be styled by ranges of the text.
pub fn wrap2_ranges(text: &str, first: usize, rest: usize) -> Vec<Range<usize>> {
    let rest = rest.max(1);
    let mut max = first.max(1);
    let mut out = Vec::new();
    // A line ends without the blanks it ends with.
    let trimmed = |start: usize, end: usize| start..start + text[start..end].trim_end().len();
    let mut para_at = 0;
    for para in text.split('\n') {
        // The line is text[start..at]; `at` is where the next word starts.
        let (mut start, mut at) = (para_at, para_at);
        para_at += para.len() + 1;
        let mut w = 0;
        for word in para.split_inclusive(' ') {
            let ww = width(word);
            if w + width(word.trim_end()) <= max {
                at += word.len();
                w += ww;
                continue;
            }
            if w > 0 && width(word.trim_end()) <= rest {
                out.push(trimmed(start, at));
                max = rest;
                start = at;
                at += word.len();
                w = ww;
                continue;
            }
            for c in word.chars() {
                let cw = c.width().unwrap_or(0);
                if w + cw > max && w > 0 {
                    out.push(start..at);
                    start = at;
                    max = rest;
                    w = 0;
                }
                at += c.len_utf8();
                w += cw;
            }
        }
        out.push(trimmed(start, at));
        max = rest;
    }
    out
}

/// A stable colour per user.
pub fn user_color(id: u64) -> Color {
    const COLORS: [Color; 6] =
        [Color::Cyan, Color::Magenta, Color::Yellow, Color::Blue, Color::LightRed, Color::LightGreen];
    COLORS[(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) as usize % COLORS.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_terminal_draws_is_kept() {
        assert_eq!(printable("a\tb\nc"), "a    b\nc");
        assert_eq!(printable("x\u{1b}[31my\u{7}\u{202E}lmth.exe"), "x[31mylmth.exe");
        assert_eq!(width(&printable("\u{1}\u{2}ok")), 2);
    }

    #[test]
    fn wraps_at_spaces_and_breaks_long_words() {
        assert_eq!(wrap("hello big world", 9), vec!["hello big", "world"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\nb", 10), vec!["a", "b"]);
        assert_eq!(truncate("hello world", 6), "hello…");
        assert_eq!(wrap2("one two three four", 4, 10), vec!["one", "two three", "four"]);
    }

    #[test]
    fn wrapped_lines_are_where_they_are_in_the_text() {
        let cases: [(&str, usize, usize, &[&str]); 5] = [
            ("one two three four", 4, 10, &["one", "two three", "four"]),
            ("aaaa  bbbb   c", 4, 4, &["aaaa", "", "bbbb", "  c"]),
            (
                "see https://example.com/a/very/long/path ok\n\nnext  é line",
                8,
                12,
                &["see http", "s://example.", "com/a/very/l", "ong/path ok", "", "next  é line"],
            ),
            ("日本語のテキスト and more", 5, 7, &["日本", "語のテ", "キスト", "and", "more"]),
            ("trailing   \n  lead", 3, 3, &["tra", "ili", "ng", "", "  l", "ead"]),
        ];
        for (text, first, rest, want) in cases {
            let ranges = wrap2_ranges(text, first, rest);
            let lines: Vec<&str> = ranges.iter().map(|r| &text[r.clone()]).collect();
            assert_eq!(lines, want, "{text:?}");
            assert_eq!(wrap2(text, first, rest), want, "{text:?}");
            assert!(ranges.windows(2).all(|p| p[0].end <= p[1].start), "in order: {ranges:?}");
        }
    }
}
