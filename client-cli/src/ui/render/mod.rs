//! Drawing: the conversation list on the left, the conversation on the right, a status bar, and
//! popups (help, prompts, lists, confirmation, message search); or the sign-in form.

mod list;
mod marks;
mod messages;
mod popup;
mod search;
pub mod text;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Focus, ListItem, Overlay, Screen};
use crate::media::attachment_summary;
use crate::net::ConnState;

/// Draws the whole screen.
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    if let Screen::Login(form) = &app.screen {
        popup::login(f, area, app, form);
        return;
    }
    let [main, status] = Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(area);
    let list_w = (main.width / 3).clamp(20, 36);
    let [left, right] = Layout::horizontal([Constraint::Length(list_w), Constraint::Min(10)]).areas(main);
    list::draw(f, left, app);
    messages::draw(f, right, app);
    status_bar(f, status, app);
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help { scroll } => popup::help(f, area, app, scroll),
        Overlay::Prompt { kind, input, completions } => popup::prompt(f, area, kind.title(), input, completions),
        Overlay::List { title, items, selected, .. } => popup::list(f, area, title, items, *selected),
        Overlay::Attachments { conversation_id, message_id, selected, open } => {
            let items: Vec<ListItem> = app
                .store
                .convs
                .get(conversation_id)
                .and_then(|c| c.message_by_id(*message_id))
                .map(|m| {
                    let label = |a| ListItem { label: format!("📎 {}", attachment_summary(a)), user: None };
                    m.attachments.iter().map(label).collect()
                })
                .unwrap_or_default();
            let title = if *open { "Open which attachment? (Enter)" } else { "Save which attachment? (Enter)" };
            popup::list(f, area, title, &items, *selected);
        }
        Overlay::ConfirmDelete { .. } => popup::confirm(f, area, "Delete this message for everyone? y/n"),
        Overlay::MessageSearch => search::draw(f, area, app),
        Overlay::Links { urls, selected } => {
            let items: Vec<ListItem> = urls.iter().map(|u| ListItem { label: u.clone(), user: None }).collect();
            popup::list(f, area, "Open which link? (Enter; y copies it)", &items, *selected);
        }
    }
}

/// The connection state as a coloured span, in at most `room` columns (the reason is shortened
/// to fit); offline, the seconds left before the next attempt count down.
pub fn conn_span(app: &App, room: usize) -> Span<'static> {
    match &app.conn {
        ConnState::Online => Span::styled("● online", Style::new().fg(Color::Green)),
        ConnState::Connecting { attempt: 0 } => Span::styled("◌ connecting…", Style::new().fg(Color::Yellow)),
        ConnState::Connecting { attempt } => {
            Span::styled(format!("◌ reconnecting (attempt {})…", attempt + 1), Style::new().fg(Color::Yellow))
        }
        ConnState::Offline { reason, .. } => {
            let left = app.retry_at_ms.saturating_sub(app.now_ms).div_ceil(1000);
            let key = app.keymap.keys(super::keymap::Action::Reconnect);
            let tail = format!(" · retry in {left} s ({key} now)");
            let head = "○ offline: ";
            let reason = text::truncate(reason, room.saturating_sub(text::width(head) + text::width(&tail)).max(8));
            Span::styled(format!("{head}{reason}{tail}"), Style::new().fg(Color::Red))
        }
        ConnState::SignedOut(_) => Span::styled("○ signed out", Style::new().fg(Color::Red)),
    }
}

fn status_bar(f: &mut Frame, area: Rect, app: &App) {
    let mode = if app.filtering {
        Span::styled(" FILTER ", Style::new().bg(Color::Yellow).fg(Color::Black))
    } else if app.focus == Focus::Composer {
        Span::styled(" INSERT ", Style::new().bg(Color::Green).fg(Color::Black))
    } else {
        Span::styled(" NORMAL ", Style::new().bg(Color::Blue).fg(Color::Black))
    };
    let who = if app.store.me.username.is_empty() {
        app.profile.clone()
    } else {
        format!("{}@{}", app.store.me.username, app.profile)
    };
    let who = Span::raw(format!(" {who} "));
    let help = format!("{} help", app.keymap.keys(super::keymap::Action::Help));
    let room = usize::from(area.width).saturating_sub(text::width(&mode.content) + text::width(&who.content) + 2);
    // The help hint gives way to the connection state when it needs the room.
    let conn = conn_span(app, room.saturating_sub(text::width(&help)));
    let mut spans = vec![mode, who, conn, Span::raw("  ")];
    for t in app.visible_transfers() {
        spans.push(Span::styled(t.label(), Style::new().fg(Color::Cyan)));
        spans.push(Span::raw("  "));
    }
    match &app.status {
        Some((s, _)) => spans.push(Span::raw(s.clone()).italic()),
        None => spans.push(Span::raw(help).dim()),
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
