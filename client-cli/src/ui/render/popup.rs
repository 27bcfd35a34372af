//! Popups: help with every key, one-line prompts, lists, a confirmation, and the sign-in form.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Position, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::text::{truncate, width};
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
    ("Tab", "in the attach prompt: complete the path"),
    ("Enter, j/k, /", "in message search: search or open, move, edit"),
    ("Ctrl-c", "quit at once"),
];

pub fn help(f: &mut Frame, area: Rect, app: &App) {
    let r = centered(area, 88, Action::ALL.len() as u16 + INSERT_KEYS.len() as u16 + 5);
    let inner = frame(f, r, "Keys (normal mode; remap in [keys] of config.toml)");
    let mut lines = Vec::new();
    for a in Action::ALL {
        let keys = app.keymap.keys(*a);
        lines.push(Line::from(vec![
            format!("{keys:<18}").bold(),
            format!("{:<13}", a.name()).dim(),
            a.describe().into(),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from("Insert mode (composer and prompts)").bold());
    for (k, d) in INSERT_KEYS {
        lines.push(Line::from(vec![format!("{k:<18}").bold(), format!("{:<13}", "").into(), (*d).into()]));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

/// Completions listed under a prompt, at most.
const COMPLETIONS_SHOWN: usize = 8;

pub fn prompt(f: &mut Frame, area: Rect, title: &str, input: &Composer, completions: &[String]) {
    let w = (width(title) as u16 + 8).max(50);
    let listed = completions.len().min(COMPLETIONS_SHOWN);
    let more = completions.len() > COMPLETIONS_SHOWN;
    let r = centered(area, w, 3 + listed as u16 + u16::from(more));
    let inner = frame(f, r, title);
    let text = input.text();
    let mut lines = vec![input_line(input, "")];
    for c in &completions[..listed] {
        lines.push(Line::from(format!("  {}", truncate(c, (inner.width as usize).saturating_sub(2)))).dim());
    }
    if more {
        lines.push(Line::from(format!("  … {} more", completions.len() - listed)).dim());
    }
    f.render_widget(Paragraph::new(lines), inner);
    let (_, (_, col)) = input.lines_and_cursor();
    let before: String = text.chars().take(col).collect();
    f.set_cursor_position(Position::new(inner.x + (width(&before) as u16).min(inner.width.saturating_sub(1)), inner.y));
}

/// A one-line input after `prefix`; text offered selected (typing replaces it) is drawn so.
pub fn input_line(input: &Composer, prefix: &str) -> Line<'static> {
    let text = Span::raw(input.text());
    let text = if input.is_selected() { text.style(Style::new().bg(Color::DarkGray)) } else { text };
    Line::from(vec![Span::raw(prefix.to_string()), text])
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
    let r = centered(area, 72, 12);
    let title = if form.register { "Create an account" } else { "Sign in" };
    let inner = frame(f, r, title);
    let field = |label: &str, value: String, active: bool| {
        let mark = if active { "> " } else { "  " };
        let line = Line::from(vec![mark.into(), format!("{label:<10}").bold(), value.into()]);
        if active { line.patch_style(Style::new().fg(Color::Cyan)) } else { line }
    };
    let mut lines = vec![
        Line::from(format!("Server   {}", truncate(&app.server, 50))).dim(),
        Line::from(format!("Profile  {}", app.profile)).dim(),
        Line::from(""),
        field("Username", form.username.clone(), form.field == 0),
        field("Password", "•".repeat(form.password.chars().count()), form.field == 1),
        Line::from(""),
    ];
    if form.busy {
        lines.push(Line::from("Signing in…").italic());
    } else if let Some(e) = &form.error {
        lines.push(Line::from(truncate(e, inner.width as usize)).fg(Color::Red));
    } else {
        lines.push(Line::from(""));
    }
    let other = if form.register { "sign in instead" } else { "register instead" };
    lines
        .push(Line::from(format!("Tab next field · Enter {} · Ctrl-r {other} · Esc quit", title.to_lowercase())).dim());
    f.render_widget(Paragraph::new(lines), inner);
    let (row, text) =
        if form.field == 0 { (3, form.username.clone()) } else { (4, "•".repeat(form.password.chars().count())) };
    let x = inner.x + 12 + width(&text) as u16;
    f.set_cursor_position(Position::new(x.min(inner.right().saturating_sub(1)), inner.y + row));
}
