//! The conversation list: presence dots for DMs, unread counts with mentions apart, a preview
//! of the last message, most recent activity first, filtered by name.

use confab_protocol::v1::{self, ConversationKind};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::text::{printable, truncate, width};
use crate::ui::app::{App, Focus};

/// The glyph before a conversation's name.
pub fn icon(app: &App, kind: ConversationKind, peer: u64) -> Span<'static> {
    match kind {
        ConversationKind::Direct => match app.presence(peer) {
            v1::PresenceState::Online => Span::styled("●", Style::new().fg(Color::Green)),
            v1::PresenceState::Away => Span::styled("◐", Style::new().fg(Color::Yellow)),
            _ => Span::styled("○", Style::new().fg(Color::DarkGray)),
        },
        ConversationKind::Channel => Span::raw("#"),
        _ => Span::raw("◆"),
    }
}

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let focused = app.focus == Focus::List;
    let mut title = " Conversations ".to_string();
    if app.filtering || !app.filter.is_empty() {
        title = format!(" /{}{} ", app.filter, if app.filtering { "▏" } else { "" });
    }
    let border = if focused { Style::new().fg(Color::Cyan) } else { Style::new().fg(Color::DarkGray) };
    let block = Block::bordered().title(title).border_style(border);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let w = inner.width as usize;
    let ids = app.visible();
    let per_page = (inner.height as usize / 2).max(1);
    let cursor = app.list_index();
    let first = cursor.saturating_sub(per_page - 1);
    let mut lines: Vec<Line> = Vec::new();
    if ids.is_empty() {
        let hint = if app.filter.is_empty() { "No conversations yet: n for a DM, ? for help" } else { "No match" };
        lines.push(Line::from(truncate(hint, w)).dim());
    }
    for (i, id) in ids.iter().enumerate().skip(first).take(per_page) {
        let Some(c) = app.store.convs.get(id) else { continue };
        let selected = i == cursor;
        let name = app.store.conv_name(c);
        let mut right: Vec<Span> = Vec::new();
        if app.muted.contains(id) {
            right.push(Span::raw(" ⊘").dim());
        }
        if c.unread > 0 {
            right.push(Span::raw(format!(" {}", c.unread)).bold());
        }
        if c.mentions > 0 {
            right.push(Span::styled(format!(" @{}", c.mentions), Style::new().fg(Color::Red).bold()));
        }
        let right_w: usize = right.iter().map(|s| width(&s.content)).sum();
        let marker = if Some(*id) == app.open { "▌" } else { " " };
        let name_max = w.saturating_sub(3 + right_w);
        let name = truncate(&name, name_max);
        let pad = w.saturating_sub(3 + width(&name) + right_w);
        let mut name_style = Style::new();
        if c.unread > 0 {
            name_style = name_style.add_modifier(Modifier::BOLD);
        }
        let mut spans =
            vec![Span::raw(marker), icon(app, c.kind, c.peer), Span::raw(" "), Span::styled(name, name_style)];
        spans.push(Span::raw(" ".repeat(pad)));
        spans.extend(right);
        let mut l1 = Line::from(spans);
        let preview = match &c.last {
            Some(m) if m.deleted => format!("{}: [deleted]", app.store.username(m.sender)),
            Some(m) if m.text.is_empty() && !m.attachments.is_empty() => {
                format!("{}: 📎 {}", app.store.username(m.sender), m.attachments[0].file_name)
            }
            Some(m) => format!("{}: {}", app.store.username(m.sender), printable(&m.text).replace('\n', " ")),
            None => String::new(),
        };
        let preview = truncate(&preview, w.saturating_sub(3));
        let fill = " ".repeat(w.saturating_sub(3 + width(&preview)));
        let mut l2 = Line::from(format!("   {preview}{fill}")).dim();
        if selected {
            let st = if focused {
                Style::new().bg(Color::DarkGray)
            } else {
                Style::new().add_modifier(Modifier::UNDERLINED)
            };
            l1 = l1.patch_style(st);
            l2 = l2.patch_style(st);
        }
        lines.push(l1);
        lines.push(l2);
    }
    f.render_widget(Paragraph::new(lines), inner);
}
