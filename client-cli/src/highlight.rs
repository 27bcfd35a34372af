//! Search hits' highlights: the byte ranges the server marks in a message's text
//! (docs/protocol.md §23.5), made safe to slice (clamped to the text, widened to character
//! boundaries, sorted, overlaps merged) and cut into plain and marked pieces for `confab search`
//! and the TUI's search overlay. Bad ranges are repaired or dropped, never a panic.

use confab_protocol::v1::TextRange;

/// A piece of a message's text, marked when a highlight covers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    pub text: &'a str,
    pub marked: bool,
}

/// The ranges as `[start, end)` byte offsets that slice `text` safely: within it, on character
/// boundaries (a range cutting a character is widened to cover it), ascending, not overlapping
/// (overlapping or touching ranges are merged), none empty.
pub fn safe_ranges(text: &str, ranges: &[TextRange]) -> Vec<(usize, usize)> {
    let len = text.len();
    let mut out: Vec<(usize, usize)> = ranges
        .iter()
        .filter_map(|r| {
            let mut start = (r.start as usize).min(len);
            let mut end = (r.end as usize).min(len);
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            while !text.is_char_boundary(end) {
                end += 1;
            }
            (start < end).then_some((start, end))
        })
        .collect();
    out.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(out.len());
    for (s, e) in out {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// `text` cut into pieces, marked where the (repaired) ranges cover it; no empty piece.
pub fn pieces<'a>(text: &'a str, ranges: &[TextRange]) -> Vec<Piece<'a>> {
    let mut out = Vec::new();
    let mut at = 0;
    for (s, e) in safe_ranges(text, ranges) {
        if s > at {
            out.push(Piece { text: &text[at..s], marked: false });
        }
        out.push(Piece { text: &text[s..e], marked: true });
        at = e;
    }
    if at < text.len() {
        out.push(Piece { text: &text[at..], marked: false });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u32, end: u32) -> TextRange {
        TextRange { start, end }
    }

    fn shown(text: &str, ranges: &[TextRange]) -> String {
        pieces(text, ranges)
            .iter()
            .map(|p| if p.marked { format!("[{}]", p.text) } else { p.text.to_string() })
            .collect()
    }

    #[test]
    fn marks_the_ranges_in_order() {
        assert_eq!(shown("the deploy went out", &[r(4, 10)]), "the [deploy] went out");
        assert_eq!(shown("a b c", &[r(4, 5), r(0, 1)]), "[a] b [c]");
        assert_eq!(shown("whole", &[r(0, 5)]), "[whole]");
        assert_eq!(shown("none", &[]), "none");
        assert_eq!(shown("", &[r(0, 3)]), "");
    }

    #[test]
    fn repairs_bad_ranges_without_panicking() {
        // "Élodie": É is two bytes. A range starting inside it is widened to cover it.
        assert_eq!(shown("Élodie", &[r(1, 3)]), "[Él]odie");
        // 東京 is two 3-byte characters; an end inside the second one covers it.
        assert_eq!(shown("東京タワー", &[r(0, 4)]), "[東京]タワー");
        // Past the end: clamped; entirely past: dropped; empty or reversed: dropped.
        assert_eq!(shown("abc", &[r(1, 99)]), "a[bc]");
        assert_eq!(shown("abc", &[r(7, 9), r(2, 2), r(2, 1)]), "abc");
        // Overlapping and touching ranges merge.
        assert_eq!(shown("abcdef", &[r(0, 3), r(2, 4), r(4, 5)]), "[abcde]f");
        assert_eq!(safe_ranges("abcdef", &[r(0, 3), r(2, 4)]), vec![(0, 4)]);
    }
}
