//! The message view: day separators, times, sender names, replies with their quoted parent,
//! edited/deleted/pinned markers, attachments with inline image previews, reactions, receipt
//! ticks, pending sends, the typing line, the unloaded stretch a jump leaves; and the composer
//! below it.

use chrono::{DateTime, TimeZone};
use confab_protocol::v1::ConversationKind;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui_image::Image;

use super::list::icon;
use super::marks::{self, LinkCells};
use super::text::{printable, truncate, user_color, width, wrap2_ranges};
use crate::media::{human_size, preview_source};
use crate::store::{Conv, Gap, Msg, Tick};
use crate::ui::app::{App, Focus, MessageAt, Shown};
use crate::ui::composer::Purpose;

/// Columns before a message's text.
const INDENT: usize = 6;

fn local(app: &App, ms: u64) -> Option<DateTime<chrono::FixedOffset>> {
    app.tz.timestamp_millis_opt(ms as i64).single()
}

fn tick_span(t: Tick) -> Span<'static> {
    match t {
        Tick::Pending => Span::raw(" …").dim(),
        Tick::Sent => Span::raw(" ✓").dim(),
        Tick::Delivered => Span::raw(" ✓✓").dim(),
        Tick::Read => Span::styled(" ✓✓", Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)),
    }
}

/// One row of the message view.
struct Row {
    /// The message it belongs to.
    seq: Option<u64>,
    line: Line<'static>,
    /// An attachment whose preview the row shows or lacks.
    media: Option<Media>,
    /// The links drawn on the row, made terminal hyperlinks when `[ui] hyperlinks` is on.
    links: Vec<LinkCells>,
}

#[derive(Clone, Copy)]
enum Media {
    /// The attachment's line, with no preview yet: fetch it once on screen.
    Wanted(usize),
    /// Row `row` of the preview of attachment `index` (of `height` rows).
    Preview { index: usize, row: u16, height: u16 },
}

impl Row {
    fn new(seq: Option<u64>, line: Line<'static>) -> Self {
        Self { seq, line, media: None, links: Vec::new() }
    }
}

/// `📎 name (type, size)`, then the preview's rows when it is loaded and fits.
fn attachment_rows(app: &App, m: &Msg, w: usize, out: &mut Vec<Row>) {
    let seq = Some(m.seq);
    for (i, a) in m.attachments.iter().enumerate() {
        let name = if a.file_name.is_empty() { a.media_id.clone() } else { a.file_name.clone() };
        let detail = format!(" ({}, {})", a.mime_type, human_size(a.size));
        let room = w.saturating_sub(INDENT + 3);
        let name = truncate(&name, room.saturating_sub(width(&detail)).max(room.min(12)));
        let detail = truncate(&detail, room.saturating_sub(width(&name)));
        let line = Line::from(vec![
            Span::raw(" ".repeat(INDENT)),
            Span::raw("📎 "),
            Span::styled(name, Style::new().fg(Color::Cyan)),
            Span::raw(detail).dim(),
        ]);
        let preview = app.previews.get(&a.media_id).filter(|p| usize::from(p.size().width) + INDENT <= w);
        match preview {
            Some(p) => {
                out.push(Row::new(seq, line));
                let height = p.size().height;
                for row in 0..height {
                    out.push(Row {
                        seq,
                        line: Line::default(),
                        media: Some(Media::Preview { index: i, row, height }),
                        links: Vec::new(),
                    });
                }
            }
            None if app.previews.enabled() && preview_source(a).is_some() => {
                out.push(Row { seq, line, media: Some(Media::Wanted(i)), links: Vec::new() });
            }
            None => out.push(Row::new(seq, line)),
        }
    }
}

/// Rows of one message.
fn message_rows(app: &App, conv: &Conv, m: &Msg, w: usize, out: &mut Vec<Row>) {
    let me = app.store.me.user_id;
    let seq = Some(m.seq);
    if m.reply_to != 0 {
        let quote = match conv.message_by_id(m.reply_to) {
            Some(p) if p.deleted => format!("↳ {}: [deleted]", app.store.username(p.sender)),
            Some(p) => format!("↳ {}: {}", app.store.username(p.sender), printable(&p.text).replace('\n', " ")),
            None => "↳ reply to an earlier message".to_string(),
        };
        let line = format!("{}{}", " ".repeat(INDENT), truncate(&quote, w.saturating_sub(INDENT)));
        let style = Style::new().fg(Color::DarkGray).add_modifier(Modifier::ITALIC);
        out.push(Row::new(seq, Line::from(Span::styled(line, style))));
    }
    // When it was written (a message written offline and sent later shows its writing time).
    let at = m.shown_ms();
    let time = local(app, at).map(|t| t.format(&app.time_format).to_string()).unwrap_or_default();
    let name = app.store.username(m.sender);
    let head_w = INDENT + width(&name) + 2;
    let body = if m.deleted { "[deleted]".to_string() } else { printable(&m.text) };
    // Links and mentions of me, styled by their ranges in the text over the wrapped lines.
    let marks = if m.deleted { Vec::new() } else { marks::marks(&body, &app.store.me.username) };
    let mentions_me =
        m.sender != me && !m.deleted && (m.mentions.contains(&me) || marks.iter().any(|k| k.url.is_none()));
    let time_style = if mentions_me { marks::MENTIONED } else { Style::new().add_modifier(Modifier::DIM) };
    let text_lines = wrap2_ranges(&body, w.saturating_sub(head_w).max(4), w.saturating_sub(INDENT).max(8));
    let text_style =
        if m.deleted { Style::new().fg(Color::DarkGray).add_modifier(Modifier::ITALIC) } else { Style::new() };
    let n = text_lines.len();
    for (i, t) in text_lines.into_iter().enumerate() {
        let mut spans: Vec<Span<'static>> = if i == 0 {
            vec![
                Span::styled(format!("{time:<5}"), time_style),
                Span::raw(" "),
                Span::styled(name.clone(), Style::new().fg(user_color(m.sender)).add_modifier(Modifier::BOLD)),
                // A message of attachments only: nothing after the name but its marks.
                Span::raw(if m.text.is_empty() && !m.deleted { ":" } else { ": " }),
            ]
        } else {
            vec![Span::raw(" ".repeat(INDENT))]
        };
        let col = spans.iter().map(Span::width).sum();
        let mut links = Vec::new();
        spans.extend(marks::spans(&body, t, text_style, &marks, col, &mut links));
        if i + 1 == n {
            if m.edited && !m.deleted {
                spans.push(Span::raw(" (edited)").dim());
            }
            if m.pinned {
                spans.push(Span::styled(" (pinned)", Style::new().fg(Color::Yellow)));
            }
            if m.sender == me && !m.deleted {
                spans.push(tick_span(conv.tick(m.seq)));
            }
        }
        out.push(Row { links, ..Row::new(seq, Line::from(spans)) });
    }
    if !m.deleted {
        attachment_rows(app, m, w, out);
    }
    if !m.reactions.is_empty() {
        let mut spans = vec![Span::raw(" ".repeat(INDENT))];
        for r in &m.reactions {
            let st = if r.me { Style::new().fg(Color::Cyan) } else { Style::new() };
            spans.push(Span::styled(format!("{} {}", r.emoji, r.count), st));
            spans.push(Span::raw("  "));
        }
        out.push(Row::new(seq, Line::from(spans)));
    }
}

fn day_separator(label: &str, w: usize) -> Line<'static> {
    let label = format!(" {label} ");
    let side = w.saturating_sub(width(&label)) / 2;
    Line::from(format!("{}{}{}", "─".repeat(side), label, "─".repeat(w.saturating_sub(side + width(&label))))).dim()
}

/// Every row of the conversation, oldest first.
fn rows(app: &App, conv: &Conv, w: usize) -> Vec<Row> {
    let mut out = Vec::new();
    if conv.loading {
        out.push(Row::new(None, Line::from("loading older messages…").dim()));
    } else if !conv.has_older && conv.history_loaded {
        out.push(Row::new(None, day_separator("beginning of the conversation", w)));
    }
    let mut day = None;
    // After a jump to an old message, the messages up to the newest ones are not all loaded.
    let mut gap = conv.gap;
    let gap_row = |g: Gap| {
        let label = if g.loading { "loading…" } else { "more messages here: move onto them to load" };
        Row::new(None, day_separator(label, w).italic())
    };
    // Where the read marker stood when the conversation was opened.
    let mut divider = app.divider_after(conv.id);
    for m in conv.messages.values() {
        if let Some(g) = gap.filter(|g| m.seq >= g.before) {
            out.push(gap_row(g));
            gap = None;
        }
        let d = local(app, m.shown_ms()).map(|t| t.date_naive());
        if d != day {
            if let Some(t) = local(app, m.shown_ms()) {
                out.push(Row::new(None, day_separator(&t.format("%A %-d %B %Y").to_string(), w)));
            }
            day = d;
        }
        if divider.is_some_and(|after| m.seq > after) {
            out.push(Row::new(None, day_separator("new messages", w).fg(Color::Red).not_dim()));
            divider = None;
        }
        message_rows(app, conv, m, w, &mut out);
    }
    if let Some(g) = gap {
        out.push(gap_row(g));
    }
    let me = app.store.me.user_id;
    for p in &conv.pending {
        let m = Msg {
            sender: me,
            text: p.text.clone(),
            created_ms: p.created_ms,
            reply_to: p.reply_to,
            attachments: p.attachments.clone(),
            ..Default::default()
        };
        let start = out.len();
        message_rows(app, conv, &m, w, &mut out);
        // The text's last row has the tick: replace the one computed for a stored message.
        let text_row = out[start..].iter().rposition(|r| r.line.spans.last().is_some_and(|s| s.content.contains('✓')));
        if let Some(i) = text_row {
            let t = match &p.failed {
                Some(e) => Span::styled(format!(" ✗ not sent: {e}"), Style::new().fg(Color::Red)),
                None => tick_span(Tick::Pending),
            };
            let line = &mut out[start + i].line;
            line.spans.pop();
            line.spans.push(t);
        }
        for r in &mut out[start..] {
            r.seq = None;
        }
    }
    out
}

fn header(app: &App, conv: &Conv) -> Line<'static> {
    let mut spans = vec![Span::raw(" "), icon(app, conv.kind, conv.peer), Span::raw(" ")];
    spans.push(Span::raw(app.store.conv_name(conv)).bold());
    let info = match conv.kind {
        ConversationKind::Direct => crate::format::presence_name(app.presence(conv.peer)).to_string(),
        _ => crate::format::plural(u64::from(conv.member_count), "member", "members"),
    };
    spans.push(Span::raw(format!(" · {info} ")).dim());
    if !conv.description.is_empty() {
        let topic = printable(&conv.description).replace('\n', " ");
        spans.push(Span::raw(format!("· {} ", truncate(&topic, 60))).italic().dim());
    }
    if app.muted.contains(&conv.id) {
        spans.push(Span::raw("· muted ").dim());
    }
    Line::from(spans)
}

fn typing_line(app: &App, conv: &Conv) -> Line<'static> {
    let names: Vec<String> = conv.typing.keys().map(|u| app.store.username(*u)).collect();
    match names.len() {
        0 => Line::default(),
        1 => Line::from(format!("{} is typing…", names[0])).italic().dim(),
        _ => Line::from(format!("{} are typing…", names.join(", "))).italic().dim(),
    }
}

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let Some(conv) = app.open.and_then(|id| app.store.convs.get(&id)) else {
        let block = Block::bordered().border_style(Style::new().fg(Color::DarkGray));
        let inner = block.inner(area);
        f.render_widget(block, area);
        let hint = vec![
            Line::from(""),
            Line::from("  Select a conversation with j/k and open it with Enter.").dim(),
            Line::from("  n: new DM · c: new group · J: join a channel · s: search users · ?: help").dim(),
        ];
        f.render_widget(Paragraph::new(hint), inner);
        return;
    };
    let (lines, _) = app.composer.visual_lines(usize::from(area.width.saturating_sub(2)));
    let composer_h = (lines.len() as u16 + 2).clamp(3, 8);
    let [view, comp] = Layout::vertical([Constraint::Min(3), Constraint::Length(composer_h)]).areas(area);
    let focused = app.focus == Focus::Messages;
    let border = if focused { Style::new().fg(Color::Cyan) } else { Style::new().fg(Color::DarkGray) };
    let block = Block::bordered().title(header(app, conv)).border_style(border);
    let inner = block.inner(view);
    f.render_widget(block, view);
    let h = inner.height.saturating_sub(1) as usize;
    app.view_height.set(inner.height);
    let w = inner.width as usize;
    let all = rows(app, conv, w);
    let (top, bottom) = scroll(app, conv.id, &all, h);
    let window = &all[top..bottom];
    let mut seqs: Vec<u64> = window.iter().filter_map(|r| r.seq).collect();
    seqs.dedup();
    app.view_shown.set(match (seqs.first(), seqs.last()) {
        (Some(first), Some(last)) => Some(Shown { first: *first, last: *last, count: seqs.len() }),
        _ => None,
    });
    let mut shown: Vec<Line> = window
        .iter()
        .map(|r| {
            if r.seq.is_some() && r.seq == app.selected {
                r.line.clone().patch_style(Style::new().bg(Color::DarkGray))
            } else {
                r.line.clone()
            }
        })
        .collect();
    // Bottom-aligned: pad above when there are few rows.
    let pad = h.saturating_sub(shown.len());
    let mut padded = vec![Line::default(); pad];
    padded.append(&mut shown);
    padded.push(typing_line(app, conv));
    f.render_widget(Paragraph::new(padded), inner);
    // Not under a popup: a hyperlink's cells are written as one run, over whatever the popup
    // drew there.
    if app.hyperlinks && matches!(app.overlay, crate::ui::app::Overlay::None) {
        hyperlinks(f, inner, window, pad);
    }
    draw_media(f, inner, app, conv, window, pad);
    draw_composer(f, comp, app);
}

/// The links on screen made terminal hyperlinks (OSC 8).
fn hyperlinks(f: &mut Frame, inner: Rect, window: &[Row], pad: usize) {
    for (at, r) in window.iter().enumerate() {
        let y = inner.y.saturating_add(u16::try_from(pad + at).unwrap_or(u16::MAX));
        for link in &r.links {
            marks::hyperlink(f.buffer_mut(), inner, y, link);
        }
    }
}

/// The rows shown, `top..bottom`. Following the newest: the last rows. With a message selected:
/// the view of the last draw (its anchor, the message at the top), scrolled only as far as it
/// takes to show the whole selected message and a separator right below it (a day, the stretch
/// a jump left unloaded); the new anchor is kept for the next draw.
fn scroll(app: &App, conv: u64, all: &[Row], h: usize) -> (usize, usize) {
    let total = all.len();
    let Some(seq) = app.selected.filter(|_| total > 0) else {
        app.view_anchor.set(None);
        return (total.saturating_sub(h), total);
    };
    let start = all.iter().position(|r| r.seq.is_some_and(|s| s >= seq)).unwrap_or(total - 1);
    let sel = all[start].seq;
    let mut end = start + all[start..].iter().take_while(|r| r.seq.is_some() && r.seq == sel).count().max(1);
    if all.get(end).is_some_and(|r| r.seq.is_none()) {
        end += 1;
    }
    // The anchor's first row, and the separator right above it (a day, the divider).
    let anchored = app.view_anchor.get().filter(|a| a.conversation_id == conv).and_then(|a| {
        let i = all.iter().position(|r| r.seq == Some(a.seq))?;
        Some(if i > 0 && all[i - 1].seq.is_none() { i - 1 } else { i })
    });
    let mut top = anchored.unwrap_or(end.saturating_sub(h));
    if start < top {
        top = if start > 0 && all[start - 1].seq.is_none() { start - 1 } else { start };
    }
    if end > top + h {
        top = end - h;
    }
    let top = top.min(total.saturating_sub(h));
    let anchor = all[top..].iter().find_map(|r| r.seq);
    app.view_anchor.set(anchor.map(|seq| MessageAt { conversation_id: conv, seq }));
    (top, (top + h).min(total))
}

/// The previews whose rows are all on screen, over their blank rows; and the attachments on
/// screen without a preview are asked for.
fn draw_media(f: &mut Frame, inner: Rect, app: &App, conv: &Conv, window: &[Row], pad: usize) {
    let attachment = |seq: Option<u64>, i: usize| {
        let m = match seq {
            Some(s) => conv.messages.get(&s),
            None => None,
        }?;
        m.attachments.get(i)
    };
    for (at, r) in window.iter().enumerate() {
        match r.media {
            Some(Media::Wanted(i)) => {
                if let Some(a) = attachment(r.seq, i) {
                    app.previews.want(a);
                }
            }
            Some(Media::Preview { index, row: 0, height }) if at + usize::from(height) <= window.len() => {
                let Some(p) = attachment(r.seq, index).and_then(|a| app.previews.get(&a.media_id)) else { continue };
                let size = p.size();
                let area = Rect::new(inner.x + INDENT as u16, inner.y + (pad + at) as u16, size.width, size.height);
                f.render_widget(Image::new(&p.protocol), area.intersection(inner));
            }
            _ => {}
        }
    }
}

fn draw_composer(f: &mut Frame, area: Rect, app: &App) {
    let focused = app.focus == Focus::Composer;
    let title = match &app.composer.purpose {
        Purpose::New => " Message ".to_string(),
        Purpose::Reply { message_id } => {
            let who = app
                .open
                .and_then(|c| app.store.convs.get(&c))
                .and_then(|c| c.message_by_id(*message_id))
                .map(|m| app.store.username(m.sender))
                .unwrap_or_default();
            format!(" Reply to {who} ")
        }
        Purpose::Edit { .. } => " Edit message ".to_string(),
    };
    let hint = match (&app.composer.purpose, focused) {
        (Purpose::Edit { .. }, true) => " Enter save · Alt-Enter newline · Esc cancel ",
        (_, true) => " Enter send · Alt-Enter newline · Esc done ",
        (_, false) => " i to write ",
    };
    let border = if focused { Style::new().fg(Color::Cyan) } else { Style::new().fg(Color::DarkGray) };
    let block = Block::bordered().title(title).title_bottom(Line::from(hint).right_aligned()).border_style(border);
    let inner = block.inner(area);
    f.render_widget(block, area);
    // Wrapped to the width, scrolled to keep the cursor's row in view.
    let (lines, (row, col)) = app.composer.visual_lines(usize::from(inner.width));
    let h = usize::from(inner.height);
    let first = (row + 1).saturating_sub(h);
    let shown: Vec<Line> = lines.iter().skip(first).take(h).map(|l| Line::from(l.clone())).collect();
    f.render_widget(Paragraph::new(shown), inner);
    if focused {
        let x = inner.x + (col as u16).min(inner.width.saturating_sub(1));
        let y = inner.y + (row - first) as u16;
        f.set_cursor_position(Position::new(x, y));
    }
}
