//! Popups: help with every key, one-line prompts, lists, a confirmation, and the sign-in form.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Position, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::text::{truncate, width, wrap2};
use crate::ui::app::{App, ListItem, LoginForm};
use crate::ui::composer::Composer;
use crate::ui::keymap::Action;

pub(super) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))]).flex(Flex::Center).areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w.min(area.width))]).flex(Flex::Center).areas(v);
    r
}

fn frame(f: &mut Frame, r: Rect, title: &str) -> Rect {
    f.render_widget(Clear, r);
    let block = Block::bordered().title(format!(" {title} ")).border_style(Style::new().fg(Color::Cyan));
    let inner = block.inner(r);
    f.render_widget(block, r);
    inner
}

/// Insert-mode keys, listed after the remappable ones.
const INSERT_KEYS: &[(&str, &str)] = &[
    ("Enter", "send (or save the edit)"),
    ("Alt-Enter, Ctrl-j", "new line"),
    ("Esc", "back to normal mode"),
    ("Ctrl-w / Ctrl-u", "delete word / line"),
    ("Ctrl-x", "continue the message in $VISUAL / $EDITOR"),
    ("Tab", "in prompts: complete a path, user, channel or command"),
    ("paste", "lands in the composer as one text (bracketed paste)"),
    ("Enter, j/k, /", "in message search: search or open, move, edit"),
    ("Ctrl-c", "quit at once"),
];

/// Every key; a screen too small for them all scrolls (`scroll` is clamped to the last page).
pub fn help(f: &mut Frame, area: Rect, app: &App, scroll: &std::cell::Cell<u16>) {
    let total = Action::ALL.len() as u16 + INSERT_KEYS.len() as u16 + 2;
    let r = centered(area, 88, total + 2);
    let fits = r.height >= total + 2;
    let title = if fits {
        "Keys (normal mode; remap in [keys] of config.toml)"
    } else {
        "Keys (j/k, PgDn/PgUp scroll; Esc closes)"
    };
    let inner = frame(f, r, title);
    let top = scroll.get().min(total.saturating_sub(inner.height));
    scroll.set(top);
    let mut lines = Vec::new();
    for a in Action::ALL {
        let keys = app.keymap.keys(*a);
        lines.push(Line::from(vec![
            format!("{keys:<18}").bold(),
            format!("{:<15}", a.name()).dim(),
            a.describe().into(),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from("Insert mode (composer and prompts)").bold());
    for (k, d) in INSERT_KEYS {
        lines.push(Line::from(vec![format!("{k:<18}").bold(), format!("{:<15}", "").into(), (*d).into()]));
    }
    f.render_widget(Paragraph::new(lines).scroll((top, 0)), inner);
}

/// Completions listed under a prompt, at most.
const COMPLETIONS_SHOWN: usize = 8;

pub fn prompt(f: &mut Frame, area: Rect, title: &str, input: &Composer, completions: &[String]) {
    let w = (width(title) as u16 + 8).max(50);
    let listed = completions.len().min(COMPLETIONS_SHOWN);
    let more = completions.len() > COMPLETIONS_SHOWN;
    let r = centered(area, w, 3 + listed as u16 + u16::from(more));
    let inner = frame(f, r, title);
    let (line, x) = input_line(input, "", usize::from(inner.width));
    let mut lines = vec![line];
    for c in &completions[..listed] {
        lines.push(Line::from(format!("  {}", truncate(c, (inner.width as usize).saturating_sub(2)))).dim());
    }
    if more {
        lines.push(Line::from(format!("  … {} more", completions.len() - listed)).dim());
    }
    f.render_widget(Paragraph::new(lines), inner);
    f.set_cursor_position(Position::new(inner.x + x.min(inner.width.saturating_sub(1)), inner.y));
}

/// A one-line input after `prefix` in `cols` columns, and the cursor's column. A text too long
/// scrolls sideways to keep the cursor in view; text offered selected (typing replaces it) is
/// drawn so.
pub fn input_line(input: &Composer, prefix: &str, cols: usize) -> (Line<'static>, u16) {
    let room = cols.saturating_sub(width(prefix)).max(2);
    let text: Vec<char> = input.text().chars().collect();
    let (_, (_, col)) = input.lines_and_cursor();
    let w = |cs: &[char]| cs.iter().map(|c| unicode_width::UnicodeWidthChar::width(*c).unwrap_or(0)).sum::<usize>();
    // Scrolled so the cursor sits at most on the last column.
    let mut first = 0;
    while first < col && w(&text[first..col]) >= room {
        first += 1;
    }
    let mut end = col;
    while end < text.len() && w(&text[first..=end]) <= room {
        end += 1;
    }
    let shown: String = text[first..end].iter().collect();
    let x = (width(prefix) + w(&text[first..col])) as u16;
    let span = Span::raw(shown);
    let span = if input.is_selected() { span.style(Style::new().bg(Color::DarkGray)) } else { span };
    (Line::from(vec![Span::raw(prefix.to_string()), span]), x)
}

pub fn list(f: &mut Frame, area: Rect, title: &str, items: &[ListItem], selected: usize) {
    let h = (items.len() as u16 + 2).clamp(3, area.height.saturating_sub(4).max(3));
    let r = centered(area, 64, h);
    let inner = frame(f, r, title);
    let rows = inner.height as usize;
    let first = selected.saturating_sub(rows.saturating_sub(1));
    let lines: Vec<Line> = items
        .iter()
        .enumerate()
        .skip(first)
        .take(rows)
        .map(|(i, it)| {
            let l = Line::from(truncate(&it.label, inner.width as usize));
            if i == selected { l.patch_style(Style::new().bg(Color::DarkGray)) } else { l }
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

pub fn confirm(f: &mut Frame, area: Rect, text: &str) {
    let r = centered(area, width(text) as u16 + 4, 3);
    let inner = frame(f, r, "Confirm");
    f.render_widget(Paragraph::new(text.to_string()), inner);
}

pub fn login(f: &mut Frame, area: Rect, app: &App, form: &LoginForm) {
    let w = area.width.clamp(40, 80);
    let room = usize::from(w.saturating_sub(4));
    // The error wraps under the fields: every word of it is shown.
    let error = match (&form.error, form.busy) {
        (Some(e), false) => wrap2(e, room, room),
        _ => Vec::new(),
    };
    let r = centered(area, w, 8 + form.fields() as u16 + error.len().max(1) as u16);
    let title = if form.register { "Create an account" } else { "Sign in" };
    let inner = frame(f, r, title);
    let field = |label: &str, value: String, active: bool| {
        let mark = if active { "> " } else { "  " };
        let line = Line::from(vec![mark.into(), format!("{label:<10}").bold(), value.into()]);
        if active { line.patch_style(Style::new().fg(Color::Cyan)) } else { line }
    };
    let dots = |s: &str| "•".repeat(s.chars().count());
    let label_w = 9;
    let mut lines = vec![
        Line::from(format!("Server   {}", truncate(&app.server, room.saturating_sub(label_w)))).dim(),
        Line::from(format!("Profile  {}", app.profile)).dim(),
        Line::from(""),
        field("Username", form.username.clone(), form.field == 0),
        field("Password", dots(&form.password), form.field == 1),
    ];
    if form.register {
        lines.push(field("Again", dots(&form.confirm), form.field == 2));
    }
    lines.push(Line::from(""));
    if form.busy {
        lines.push(Line::from("Signing in…").italic());
    } else if error.is_empty() {
        lines.push(Line::from(""));
    } else {
        lines.extend(error.into_iter().map(|l| Line::from(l).fg(Color::Red)));
    }
    let other = if form.register { "sign in instead" } else { "register instead" };
    let help = format!("Tab next field · Enter {} · Ctrl-r {other} · Esc quit", title.to_lowercase());
    lines.extend(wrap2(&help, room, room).into_iter().map(|l| Line::from(l).dim()));
    f.render_widget(Paragraph::new(lines), inner);
    let text = match form.field {
        0 => form.username.clone(),
        1 => dots(&form.password),
        _ => dots(&form.confirm),
    };
    let x = inner.x + 12 + width(&text) as u16;
    let row = 3 + form.field as u16;
    f.set_cursor_position(Position::new(x.min(inner.right().saturating_sub(1)), inner.y + row));
}
