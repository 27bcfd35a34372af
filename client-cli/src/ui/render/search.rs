//! The message search overlay: the query line, a status line (hits, searching, errors), the hits
//! (conversation, sender and time, then the text around the first match with every match
//! emphasised) and, when the server's index lags, a note saying where.

use chrono::TimeZone;
use confab_protocol::v1;
use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use unicode_width::UnicodeWidthChar;

use super::popup::{centered, input_line};
use super::text::{truncate, user_color, width};
use crate::highlight::pieces;
use crate::ui::app::App;
use crate::ui::search::SearchView;

/// How a match is drawn.
pub fn mark_style() -> Style {
    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
}

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let Some(view) = &app.message_search else { return };
    let w = area.width.saturating_sub(4).clamp(area.width.min(40), 100);
    let r = centered(area, w, area.height.saturating_sub(2).max(8));
    f.render_widget(Clear, r);
    let hint = if view.editing && view.hits.is_empty() {
        " Enter search · Esc close "
    } else if view.editing {
        " Enter search · ↓ hits · Esc close "
    } else {
        " Enter open · j/k move · / edit · Esc close "
    };
    let block = Block::bordered()
        .title(" Search messages ")
        .title_bottom(Line::from(hint).right_aligned())
        .border_style(Style::new().fg(Color::Cyan));
    let inner = block.inner(r);
    f.render_widget(block, r);
    let cols = inner.width as usize;
    let (input, cursor_x) = input_line(&view.input, "› ", cols);
    let mut lines = vec![if view.input.is_empty() && view.editing {
        Line::from(vec![Span::raw("› "), Span::raw("words, \"a phrase\", -not, a OR b").dim()])
    } else {
        input
    }];
    lines.push(status(view, cols));
    let lag = lag_line(app, &view.lag, cols);
    let rows = (inner.height as usize).saturating_sub(2 + usize::from(lag.is_some()));
    let per_page = (rows / 2).max(1);
    let first = view.selected.saturating_sub(per_page - 1);
    for (i, hit) in view.hits.iter().enumerate().skip(first).take(per_page) {
        let [head, body] = hit_lines(app, hit, cols);
        let selected = i == view.selected && !view.editing;
        for l in [head, body] {
            lines.push(if selected { l.patch_style(Style::new().bg(Color::DarkGray)) } else { l });
        }
    }
    f.render_widget(Paragraph::new(lines), inner);
    if let Some(l) = lag {
        let bottom = Rect { y: inner.bottom().saturating_sub(1), height: 1, ..inner };
        f.render_widget(Paragraph::new(l), bottom);
    }
    if view.editing {
        let x = inner.x + cursor_x.min(inner.width.saturating_sub(1));
        f.set_cursor_position(Position::new(x, inner.y));
    }
}

fn status(view: &SearchView, cols: usize) -> Line<'static> {
    if let Some(e) = &view.error {
        return Line::from(truncate(e, cols)).fg(Color::Red);
    }
    if view.query.is_empty() {
        return Line::from("Enter searches every conversation you are in").dim();
    }
    let query = truncate(&view.query, cols / 2);
    let s = match (view.hits.len(), view.loading) {
        (0, true) => format!("searching for {query}…"),
        (0, false) => format!("no messages match {query}"),
        (n, loading) => {
            let hits = if n == 1 { "1 hit".to_string() } else { format!("{n} hits") };
            let more = if loading {
                " · loading more…"
            } else if view.next_cursor.is_empty() {
                ""
            } else {
                " · more below"
            };
            format!("{hits} for {query}{more}")
        }
    };
    Line::from(truncate(&s, cols)).dim()
}

/// `conversation · sender · time`, then the text.
fn hit_lines(app: &App, hit: &v1::SearchHit, cols: usize) -> [Line<'static>; 2] {
    let Some(m) = &hit.message else { return [Line::default(), Line::default()] };
    let conv = match app.store.convs.get(&m.conversation_id) {
        Some(c) => app.store.conv_name(c),
        None => format!("#{}", m.conversation_id),
    };
    let time = app
        .tz
        .timestamp_millis_opt(m.created_at_ms as i64)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    let sender = app.store.username(m.sender_id);
    let conv = truncate(&conv, cols.saturating_sub(width(&sender) + width(&time) + 6).max(8));
    let head = Line::from(vec![
        Span::raw(conv).bold(),
        Span::raw(" · "),
        Span::styled(sender, Style::new().fg(user_color(m.sender_id)).add_modifier(Modifier::BOLD)),
        Span::raw(format!(" · {time}")).dim(),
    ]);
    let mut body = vec![Span::raw("  ")];
    body.extend(snippet(&m.text, &hit.highlights, cols.saturating_sub(2)));
    [head, Line::from(body)]
}

/// The text on one line of `cols` columns, starting a little before the first match when the
/// match would not show otherwise, every match emphasised, `…` where it is cut.
pub fn snippet(text: &str, highlights: &[v1::TextRange], cols: usize) -> Vec<Span<'static>> {
    // Line breaks and tabs become spaces: one byte for one, so the offsets hold.
    let flat: String = text.chars().map(|c| if c.is_ascii_control() { ' ' } else { c }).collect();
    let chars: Vec<(char, bool)> =
        pieces(&flat, highlights).iter().flat_map(|p| p.text.chars().map(move |c| (c, p.marked))).collect();
    let cw = |c: char| c.width().unwrap_or(0);
    let lead = chars.iter().position(|(_, m)| *m).map_or(0, |i| chars[..i].iter().map(|(c, _)| cw(*c)).sum());
    // When the text is cut and its first match would start past the middle, start so that the
    // match begins about a quarter of the way in.
    let mut start = 0;
    let all: usize = chars.iter().map(|(c, _)| cw(*c)).sum();
    if all > cols && lead > cols / 2 {
        let mut skip = lead.saturating_sub(cols / 4);
        while skip > 0 && start < chars.len() {
            skip = skip.saturating_sub(cw(chars[start].0));
            start += 1;
        }
    }
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    if start > 0 {
        spans.push(Span::raw("…").dim());
        used += 1;
    }
    let mut run = String::new();
    let mut run_marked = false;
    let total: usize = chars[start..].iter().map(|(c, _)| cw(*c)).sum();
    let room = if used + total > cols { cols.saturating_sub(1) } else { cols };
    let push = |spans: &mut Vec<Span<'static>>, run: &mut String, marked: bool| {
        if !run.is_empty() {
            let s = std::mem::take(run);
            spans.push(if marked { Span::styled(s, mark_style()) } else { Span::raw(s) });
        }
    };
    for &(c, marked) in &chars[start..] {
        if used + cw(c) > room {
            run.truncate(run.trim_end().len());
            push(&mut spans, &mut run, run_marked);
            spans.push(Span::raw("…").dim());
            return spans;
        }
        if marked != run_marked {
            push(&mut spans, &mut run, run_marked);
            run_marked = marked;
        }
        run.push(c);
        used += cw(c);
    }
    push(&mut spans, &mut run, run_marked);
    spans
}

/// The index-lag note, in the overlay's last row.
fn lag_line(app: &App, lag: &[v1::IndexLag], cols: usize) -> Option<Line<'static>> {
    if lag.is_empty() {
        return None;
    }
    let each: Vec<String> = lag
        .iter()
        .map(|l| {
            let name = match app.store.convs.get(&l.conversation_id) {
                Some(c) => app.store.conv_name(c),
                None => format!("#{}", l.conversation_id),
            };
            format!("{name} ({}/{})", l.indexed_seq, l.head_seq)
        })
        .collect();
    let s = format!("index catching up in {}: the newest messages may be missing", each.join(", "));
    Some(Line::from(truncate(&s, cols)).fg(Color::Yellow))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(spans: &[Span]) -> String {
        spans
            .iter()
            .map(|s| if s.style == mark_style() { format!("[{}]", s.content) } else { s.content.to_string() })
            .collect()
    }

    fn r(start: u32, end: u32) -> v1::TextRange {
        v1::TextRange { start, end }
    }

    #[test]
    fn snippets_fit_and_show_the_match() {
        assert_eq!(shown(&snippet("the deploy\nwent out", &[r(4, 10)], 40)), "the [deploy] went out");
        // Cut at the end.
        assert_eq!(shown(&snippet("the deploy went out", &[r(4, 10)], 12)), "the [deploy]…");
        // A match far in: the start is cut so it shows.
        let long = format!("{} needle here", "x".repeat(60));
        let s = shown(&snippet(&long, &[r(61, 67)], 30));
        assert!(s.starts_with('…') && s.contains("[needle]"), "{s}");
        assert!(s.chars().count() <= 32, "{s}");
        // Wide characters count two columns; bad ranges do not panic.
        assert_eq!(shown(&snippet("東京タワー", &[r(0, 4)], 20)), "[東京]タワー");
        assert_eq!(shown(&snippet("abc", &[r(2, 99), r(9, 3)], 5)), "ab[c]");
    }
}
