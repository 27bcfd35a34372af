//! Text helpers for drawing: display width, wrapping, truncation, colours for names.

use ratatui::style::Color;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
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
    let rest = rest.max(1);
    let mut max = first.max(1);
    let mut out: Vec<String> = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        let mut w = 0;
        for word in para.split_inclusive(' ') {
            let ww = width(word);
            if w + width(word.trim_end()) <= max {
                line.push_str(word);
                w += ww;
                continue;
            }
            if w > 0 && width(word.trim_end()) <= rest {
                out.push(line.trim_end().to_string());
                max = rest;
                line = word.to_string();
                w = ww;
                continue;
            }
            for c in word.chars() {
                let cw = c.width().unwrap_or(0);
                if w + cw > max && w > 0 {
                    out.push(std::mem::take(&mut line));
                    max = rest;
                    w = 0;
                }
                line.push(c);
                w += cw;
            }
        }
        out.push(line.trim_end().to_string());
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
    fn wraps_at_spaces_and_breaks_long_words() {
        assert_eq!(wrap("hello big world", 9), vec!["hello big", "world"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\nb", 10), vec!["a", "b"]);
        assert_eq!(truncate("hello world", 6), "hello…");
        assert_eq!(wrap2("one two three four", 4, 10), vec!["one", "two three", "four"]);
    }
}
