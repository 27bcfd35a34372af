//! A message's text outside the client: open its links, copy it to the clipboard, write a
//! message in `$VISUAL`/`$EDITOR`. The keys queue effects (and the link chooser); the run loop
//! carries them out with the functions at the end: OSC 52 for the clipboard, and the editor
//! run with the screen handed over to it.

use std::io::Write;

use anyhow::{Context, bail};
use base64::Engine;
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, EventStream, KeyCode, KeyEvent};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};

use super::app::{App, Effect, Focus, Overlay};
use crate::links;

impl App {
    /// The yank key: the selected (else the newest) message's text to the clipboard.
    pub(crate) fn yank(&mut self) {
        let Some((_, m)) = self.target() else { return self.say("no message selected") };
        if m.deleted || m.text.is_empty() {
            return self.say("no text to copy");
        }
        let chars = m.text.chars().count();
        self.effects.push(Effect::Copy(m.text));
        self.say(format!("copied {chars} characters (OSC 52: the terminal must allow it)"));
    }

    /// The open-link key: the links of the selected message (with none selected, of the newest
    /// message that has one); one opens at once, several are offered in a list.
    pub(crate) fn open_link(&mut self) {
        let Some(conv) = self.open.and_then(|id| self.store.convs.get(&id)) else {
            return self.say("open a conversation first");
        };
        let urls = |text: &str| links::find(text).into_iter().map(|l| l.url).collect::<Vec<_>>();
        let mut found = match self.selected {
            Some(seq) => conv.messages.get(&seq).filter(|m| !m.deleted).map(|m| urls(&m.text)),
            None => conv.messages.values().rev().filter(|m| !m.deleted).map(|m| urls(&m.text)).find(|u| !u.is_empty()),
        }
        .unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        found.retain(|u| seen.insert(u.clone()));
        match found.len() {
            0 => self.say("no link in that message"),
            1 => self.effects.extend(found.pop().map(Effect::OpenUrl)),
            _ => self.overlay = Overlay::Links { urls: found, selected: 0 },
        }
    }

    /// Keys in the link chooser: move, Enter opens, `y` copies the link.
    pub(crate) fn links_key(&mut self, k: &KeyEvent) {
        let Overlay::Links { urls, selected } = &mut self.overlay else { return };
        match k.code {
            KeyCode::Down | KeyCode::Char('j') => *selected = (*selected + 1).min(urls.len().saturating_sub(1)),
            KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
            KeyCode::Enter | KeyCode::Char('y') => {
                let (url, copy) = (urls.get(*selected).cloned(), k.code != KeyCode::Enter);
                self.overlay = Overlay::None;
                match url {
                    Some(u) if copy => {
                        self.effects.push(Effect::Copy(u));
                        self.say("link copied");
                    }
                    Some(u) => self.effects.push(Effect::OpenUrl(u)),
                    None => {}
                }
            }
            KeyCode::Esc | KeyCode::Char('q') => self.overlay = Overlay::None,
            _ => {}
        }
    }

    /// The editor key: the composer's text goes to the external editor.
    pub(crate) fn editor(&mut self) {
        if self.open.is_none() {
            return self.say("open a conversation first");
        }
        self.effects.push(Effect::Editor(self.composer.text()));
    }

    /// What the editor saved: into the composer (still a reply or an edit if it was one),
    /// focused, to be sent with Enter. The newline editors end a file with is left out.
    pub fn editor_done(&mut self, text: &str) {
        self.composer.set(text.trim_end_matches(['\n', '\r']));
        if self.open.is_some() {
            self.focus = Focus::Composer;
        }
    }
}

/// The OSC 52 sequence that puts `text` on the clipboard.
pub(super) fn osc52(text: &str) -> String {
    format!("\x1b]52;c;{}\x07", base64::engine::general_purpose::STANDARD.encode(text))
}

/// Writes `text` to the clipboard through the terminal (OSC 52; over SSH and in tmux with
/// `set-clipboard on` too).
pub(super) fn copy(out: &mut impl Write, text: &str) -> anyhow::Result<()> {
    out.write_all(osc52(text).as_bytes()).and_then(|()| out.flush()).context("writing to the terminal")
}

/// The editor to run: `$VISUAL`, else `$EDITOR`, else `vi`.
fn editor_command() -> String {
    ["VISUAL", "EDITOR"]
        .into_iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into())
}

/// Hands the screen to the editor on a temporary file holding `text`, then takes it back;
/// returns what the editor saved. The command is run by `sh` as git runs it (`$EDITOR` may
/// carry arguments). `events` is replaced: crossterm's reader would otherwise take keys meant
/// for the editor.
pub(super) async fn run_editor(
    terminal: &mut ratatui::DefaultTerminal,
    events: &mut EventStream,
    text: &str,
) -> anyhow::Result<String> {
    let mut file =
        tempfile::Builder::new().prefix("confab-").suffix(".txt").tempfile().context("a file for the editor")?;
    file.write_all(text.as_bytes()).and_then(|()| file.flush()).context("writing the file for the editor")?;
    let editor = editor_command();
    // Dropping the old stream stops its reader; the new one reads only when polled again.
    *events = EventStream::new();
    let mut out = std::io::stdout();
    crossterm::execute!(out, DisableBracketedPaste, LeaveAlternateScreen).context("leaving the screen")?;
    disable_raw_mode().context("leaving raw mode")?;
    let (command, path) = (editor.clone(), file.path().to_path_buf());
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh").arg("-c").arg(format!("{command} \"$1\"")).arg("confab").arg(path).status()
    })
    .await;
    enable_raw_mode().context("entering raw mode")?;
    crossterm::execute!(out, EnterAlternateScreen, EnableBracketedPaste).context("taking the screen back")?;
    // The old stream's reader was woken to stop, and the wake-up is still pending: taken here,
    // or it would cut short the cursor query of the redraw.
    let _ = crossterm::event::poll(std::time::Duration::ZERO);
    terminal.clear().context("redrawing")?;
    let status = status.context("waiting for the editor")?.with_context(|| format!("starting {editor}"))?;
    if !status.success() {
        bail!("{editor} failed ({status}): the message is as it was");
    }
    std::fs::read_to_string(file.path()).context("reading what the editor saved")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osc52_carries_the_text_in_base64() {
        assert_eq!(osc52("hé"), "\x1b]52;c;aMOp\x07");
        let mut out = Vec::new();
        copy(&mut out, "a").unwrap();
        assert_eq!(out, b"\x1b]52;c;YQ==\x07");
    }
}
