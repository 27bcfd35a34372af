//! What stands out in a message's text: URLs underlined in the link colour, mentions of the
//! user in bold yellow; styled by byte ranges over each wrapped line, so a URL cut by the wrap
//! is marked on both rows. And the terminal hyperlinks (OSC 8) over the links on screen.

use std::num::NonZeroU16;
use std::ops::Range;

use ratatui::buffer::{Buffer, CellDiffOption};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use unicode_width::UnicodeWidthStr;

use crate::links;

/// How a URL is drawn.
pub const LINK: Style = Style::new().fg(Color::LightBlue).add_modifier(Modifier::UNDERLINED);
/// How a mention of the user (`@me`) is drawn.
pub const MENTION: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
/// The time of a message that mentions the user: the row stands out at the left edge.
pub const MENTIONED: Style = Style::new().fg(Color::Black).bg(Color::Yellow);

/// A stretch of a text drawn apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub range: Range<usize>,
    /// The URL to open, for a link; `None` for a mention.
    pub url: Option<String>,
}

impl Mark {
    fn style(&self) -> Style {
        if self.url.is_some() { LINK } else { MENTION }
    }
}

/// The links in `text` and the mentions of `@me` outside them, in order.
pub fn marks(text: &str, me: &str) -> Vec<Mark> {
    let mut out: Vec<Mark> = links::find(text).into_iter().map(|l| Mark { range: l.range, url: Some(l.url) }).collect();
    for r in links::mentions(text, me) {
        if !out.iter().any(|m| m.range.start < r.end && r.start < m.range.end) {
            out.push(Mark { range: r, url: None });
        }
    }
    out.sort_by_key(|m| m.range.start);
    out
}

/// Where a link is drawn on a row: `width` columns from column `col` of the row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkCells {
    pub col: usize,
    pub width: usize,
    pub url: String,
}

/// The spans of `text[line]` (one wrapped line) in `base`, with the marks over it; the links
/// on it are added to `cells`, their columns counted from `col`, where the line starts.
pub fn spans(
    text: &str,
    line: Range<usize>,
    base: Style,
    marks: &[Mark],
    col: usize,
    cells: &mut Vec<LinkCells>,
) -> Vec<Span<'static>> {
    let mut out = Vec::new();
    let mut at = line.start;
    let mut col = col;
    let push = |out: &mut Vec<Span<'static>>, r: Range<usize>, style: Style| {
        if r.is_empty() {
            return 0;
        }
        let s = &text[r];
        out.push(Span::styled(s.to_string(), style));
        s.width()
    };
    for m in marks {
        let r = m.range.start.max(line.start)..m.range.end.min(line.end);
        if r.is_empty() {
            continue;
        }
        col += push(&mut out, at..r.start, base);
        let w = push(&mut out, r.clone(), base.patch(m.style()));
        if let Some(url) = &m.url {
            cells.push(LinkCells { col, width: w, url: url.clone() });
        }
        col += w;
        at = r.end;
    }
    push(&mut out, at..line.end, base);
    if out.is_empty() {
        out.push(Span::styled(String::new(), base));
    }
    out
}

/// Makes the cells of a link drawn on row `y` from column `area.x + link.col` a terminal
/// hyperlink (OSC 8), cut at the right edge of `area`. The way ratatui's hyperlink example
/// does it: the first cell holds the escape sequences around the whole text with the width it
/// covers forced, the others are skipped when the screen is updated.
pub fn hyperlink(buf: &mut Buffer, area: Rect, y: u16, link: &LinkCells) {
    let start = area.x.saturating_add(u16::try_from(link.col).unwrap_or(u16::MAX));
    let end = start.saturating_add(u16::try_from(link.width).unwrap_or(u16::MAX)).min(area.right());
    if start >= end || !(area.top()..area.bottom()).contains(&y) {
        return;
    }
    let mut text = String::new();
    let mut x = start;
    while x < end {
        let s = buf[(x, y)].symbol();
        let w = s.width().max(1) as u16;
        if x + w > end {
            break;
        }
        text.push_str(s);
        x += w;
    }
    let Some(width) = NonZeroU16::new(x - start) else { return };
    let first = &mut buf[(start, y)];
    first.set_symbol(&format!("\x1b]8;;{}\x1b\\{text}\x1b]8;;\x1b\\", link.url));
    first.set_diff_option(CellDiffOption::ForcedWidth(width));
    for cx in start + 1..x {
        buf[(cx, y)].set_diff_option(CellDiffOption::Skip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_cut_by_the_wrap_is_marked_on_both_lines() {
        let text = "see https://example.com/x and @alice";
        let marks = marks(text, "alice");
        assert_eq!(marks.len(), 2);
        let mut cells = Vec::new();
        // Lines "see https://exa" and "mple.com/x and @alice".
        let first = spans(text, 0..15, Style::new(), &marks, 10, &mut cells);
        let second = spans(text, 15..text.len(), Style::new(), &marks, 2, &mut cells);
        assert_eq!(first.iter().map(|s| s.content.as_ref()).collect::<Vec<_>>(), ["see ", "https://exa"]);
        assert_eq!(first[1].style, LINK);
        assert_eq!(second.iter().map(|s| s.content.as_ref()).collect::<Vec<_>>(), ["mple.com/x", " and ", "@alice"]);
        assert_eq!((second[0].style, second[2].style), (LINK, MENTION));
        let url = "https://example.com/x".to_string();
        assert_eq!(cells, [LinkCells { col: 14, width: 11, url: url.clone() }, LinkCells { col: 2, width: 10, url }]);
    }

    #[test]
    fn a_mention_inside_a_link_is_part_of_the_link() {
        let marks = marks("https://example.com/@alice", "alice");
        assert_eq!(marks.len(), 1);
        assert!(marks[0].url.is_some());
    }

    #[test]
    fn the_link_cells_become_one_hyperlink() {
        let area = Rect::new(0, 0, 12, 1);
        let mut buf = Buffer::empty(area);
        buf.set_string(0, 0, "ab https://x", Style::new());
        hyperlink(&mut buf, area, 0, &LinkCells { col: 3, width: 20, url: "https://x.io/long".into() });
        assert_eq!(buf[(3, 0)].symbol(), "\x1b]8;;https://x.io/long\x1b\\https://x\x1b]8;;\x1b\\");
        assert_eq!(buf[(3, 0)].diff_option, CellDiffOption::ForcedWidth(NonZeroU16::new(9).unwrap()));
        assert!((4..12).all(|x| buf[(x, 0)].diff_option == CellDiffOption::Skip));
        assert_eq!(buf[(2, 0)].diff_option, CellDiffOption::None);
    }
}
