//! Normal-mode key bindings: vi-style defaults, remappable in the `[keys]` table of the
//! config file (`action = ["key", …]`, e.g. `down = ["j", "Down", "Ctrl-n"]`).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

macro_rules! actions {
    ($($variant:ident $name:literal [$($key:literal),*] $desc:literal,)*) => {
        /// Everything a key can do in normal mode.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action { $($variant),* }

        impl Action {
            pub const ALL: &[Action] = &[$(Action::$variant),*];

            /// The name used in the config file.
            pub fn name(self) -> &'static str {
                match self { $(Action::$variant => $name),* }
            }

            pub fn describe(self) -> &'static str {
                match self { $(Action::$variant => $desc),* }
            }

            fn defaults(self) -> &'static [&'static str] {
                match self { $(Action::$variant => &[$($key),*]),* }
            }
        }
    };
}

actions! {
    Quit "quit" ["q"] "quit",
    Help "help" ["?"] "this help",
    Down "down" ["j", "Down"] "next conversation / message",
    Up "up" ["k", "Up"] "previous conversation / message (loads older history)",
    Top "top" ["g", "Home"] "first conversation / oldest loaded message",
    Bottom "bottom" ["G", "End"] "last conversation / newest message",
    PageUp "page_up" ["Ctrl-u", "PageUp"] "half a page up",
    PageDown "page_down" ["Ctrl-d", "PageDown"] "half a page down",
    FullPageUp "full_page_up" ["Ctrl-b"] "a page up",
    FullPageDown "full_page_down" ["Ctrl-f"] "a page down",
    Open "open" ["l", "Enter", "Right"] "open the conversation",
    Back "back" ["h", "Left", "Esc"] "back to the conversation list",
    NextPane "next_pane" ["Tab"] "switch between list and messages",
    Compose "compose" ["i", "a"] "write a message (insert mode)",
    Filter "filter" ["/"] "filter conversations by name; in messages: search them",
    NewDm "new_dm" ["n"] "new direct conversation",
    NewGroup "new_group" ["c"] "create a group: NAME USER…",
    JoinChannel "join_channel" ["J"] "join a channel (or create it with +NAME)",
    SearchUsers "search_users" ["s"] "search users (Enter opens a DM)",
    SearchMessages "search" ["S"] "search messages in all conversations",
    NextUnread "next_unread" ["u"] "next conversation with unread messages (mentions first)",
    FirstUnread "first_unread" ["U"] "jump to the new-messages divider",
    Command "command" [":"] "a command: leave, topic, invite… (:help lists them)",
    Reconnect "reconnect" ["R"] "reconnect now (when offline)",
    Reply "reply" ["r"] "reply to the selected message",
    Edit "edit" ["e"] "edit the selected message",
    Delete "delete" ["d"] "delete the selected message",
    React "react" ["+"] "react to the selected message",
    Pin "pin" ["p"] "pin or unpin the selected message",
    Attach "attach" ["f"] "attach a file (path prompt, Tab completes)",
    Save "save" ["D"] "save the selected message's attachment (downloads dir)",
    OpenAttachment "open_file" ["o"] "open the selected message's attachment (xdg-open)",
    Pins "pins" ["P"] "pinned messages",
    Members "members" ["m"] "members of the conversation",
    AddMember "add_member" ["A"] "add a member to the group",
    Mute "mute" ["M"] "mute / unmute notifications for the conversation",
    Yank "yank" ["y"] "copy the selected message's text (clipboard, OSC 52)",
    OpenLink "open_link" ["O"] "open a link of the selected (or newest) message",
    Editor "editor" ["E"] "write the message in $VISUAL / $EDITOR",
}

/// A key with its modifiers, as written in the config file ("Ctrl-u", "G", "Enter").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    /// Parses "x", "Ctrl-x", "Alt-x", "Enter", "Esc", "Tab", "Up", "PageDown", "F5", "Space".
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = s;
        loop {
            if let Some(r) = rest.strip_prefix("Ctrl-").or_else(|| rest.strip_prefix("C-")) {
                mods |= KeyModifiers::CONTROL;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("Alt-").or_else(|| rest.strip_prefix("M-")) {
                mods |= KeyModifiers::ALT;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "Enter" => KeyCode::Enter,
            "Esc" => KeyCode::Esc,
            "Tab" => KeyCode::Tab,
            "Backspace" => KeyCode::Backspace,
            "Up" => KeyCode::Up,
            "Down" => KeyCode::Down,
            "Left" => KeyCode::Left,
            "Right" => KeyCode::Right,
            "Home" => KeyCode::Home,
            "End" => KeyCode::End,
            "PageUp" => KeyCode::PageUp,
            "PageDown" => KeyCode::PageDown,
            "Space" => KeyCode::Char(' '),
            f if f.len() > 1 && f.starts_with('F') => {
                KeyCode::F(f[1..].parse().with_context(|| format!("unknown key {s:?}"))?)
            }
            c if c.chars().count() == 1 => {
                let ch = c.chars().next().unwrap_or(' ');
                KeyCode::Char(if mods.contains(KeyModifiers::CONTROL) { ch.to_ascii_lowercase() } else { ch })
            }
            _ => bail!("unknown key {s:?}"),
        };
        Ok(Self { code, mods })
    }

    /// The key of a terminal event (Shift is part of the character).
    pub fn from_event(e: &KeyEvent) -> Self {
        let mut mods = e.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT);
        let code = match e.code {
            KeyCode::Char(c) if mods.contains(KeyModifiers::CONTROL) => KeyCode::Char(c.to_ascii_lowercase()),
            KeyCode::BackTab => {
                mods |= KeyModifiers::SHIFT;
                KeyCode::Tab
            }
            other => other,
        };
        Self { code, mods }
    }

    pub fn display(&self) -> String {
        let mut s = String::new();
        if self.mods.contains(KeyModifiers::CONTROL) {
            s.push_str("Ctrl-");
        }
        if self.mods.contains(KeyModifiers::ALT) {
            s.push_str("Alt-");
        }
        match self.code {
            KeyCode::Char(' ') => s.push_str("Space"),
            KeyCode::Char(c) => s.push(c),
            KeyCode::F(n) => s.push_str(&format!("F{n}")),
            KeyCode::PageUp => s.push_str("PageUp"),
            KeyCode::PageDown => s.push_str("PageDown"),
            other => s.push_str(&format!("{other:?}")),
        }
        s
    }
}

/// The bindings in force.
#[derive(Clone, Debug)]
pub struct Keymap {
    by_key: HashMap<Key, Action>,
    by_action: BTreeMap<Action, Vec<Key>>,
}

impl Default for Keymap {
    fn default() -> Self {
        Self::new(&BTreeMap::new()).expect("default bindings parse")
    }
}

impl Keymap {
    /// Defaults, with each action named in `overrides` bound to exactly the keys given there.
    pub fn new(overrides: &BTreeMap<String, Vec<String>>) -> anyhow::Result<Self> {
        let mut by_action = BTreeMap::new();
        for a in Action::ALL {
            let keys = a.defaults().iter().map(|k| Key::parse(k)).collect::<anyhow::Result<Vec<_>>>()?;
            by_action.insert(*a, keys);
        }
        for (name, keys) in overrides {
            let action = Action::ALL
                .iter()
                .find(|a| a.name() == name)
                .with_context(|| format!("[keys]: unknown action {name:?}"))?;
            let keys = keys.iter().map(|k| Key::parse(k)).collect::<anyhow::Result<Vec<_>>>()?;
            // A key taken by the override is removed from other actions' defaults.
            for other in by_action.values_mut() {
                other.retain(|k| !keys.contains(k));
            }
            by_action.insert(*action, keys);
        }
        let mut by_key = HashMap::new();
        for (a, keys) in &by_action {
            for k in keys {
                if let Some(prev) = by_key.insert(*k, *a) {
                    bail!("[keys]: {} is bound to both {} and {}", k.display(), prev.name(), a.name());
                }
            }
        }
        Ok(Self { by_key, by_action })
    }

    pub fn action(&self, e: &KeyEvent) -> Option<Action> {
        self.by_key.get(&Key::from_event(e)).copied()
    }

    /// Keys of an action, for help and hints ("j, Down").
    pub fn keys(&self, a: Action) -> String {
        self.by_action.get(&a).map(|ks| ks.iter().map(Key::display).collect::<Vec<_>>().join(", ")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn defaults_are_vi_style() {
        let k = Keymap::default();
        assert_eq!(k.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)), Some(Action::Down));
        assert_eq!(k.action(&ev(KeyCode::Char('G'), KeyModifiers::SHIFT)), Some(Action::Bottom));
        assert_eq!(k.action(&ev(KeyCode::Char('u'), KeyModifiers::CONTROL)), Some(Action::PageUp));
        assert_eq!(k.keys(Action::Down), "j, Down");
    }

    #[test]
    fn overrides_replace_and_steal_keys() {
        let mut o = BTreeMap::new();
        o.insert("down".to_string(), vec!["Ctrl-n".to_string()]);
        o.insert("quit".to_string(), vec!["j".to_string()]);
        let k = Keymap::new(&o).unwrap();
        assert_eq!(k.action(&ev(KeyCode::Char('n'), KeyModifiers::CONTROL)), Some(Action::Down));
        assert_eq!(k.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)), Some(Action::Quit));
        assert_eq!(k.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE)), None);
        assert!(Keymap::new(&BTreeMap::from([("fly".to_string(), vec!["x".to_string()])])).is_err());
        assert!(Key::parse("Hyper-x").is_err());
    }

    #[test]
    fn the_readme_keys_parse() {
        // The [keys] table of the README's example config (config.rs `the_readme_example_parses`).
        let o = BTreeMap::from([("down".to_string(), vec!["j".to_string(), "Down".to_string(), "Ctrl-n".to_string()])]);
        let k = Keymap::new(&o).unwrap();
        assert_eq!(k.action(&ev(KeyCode::Char('n'), KeyModifiers::CONTROL)), Some(Action::Down));
    }
}
