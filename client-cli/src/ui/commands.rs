//! `:` commands, for what has no key (leave, topic, rename, invite) and for every action by its
//! config name (`:mute`, `:members`); Tab completion in the prompts (commands, usernames from
//! the users known and the server's search, channel titles from the channel directory); and
//! the reconnect key.

use confab_protocol::v1::{self, client_frame::Request};

use super::app::{App, ListItem, Overlay, PromptKind, Purpose};
use super::complete::{Completion, complete_word};
use super::keymap::Action;
use crate::net::{Command, ConnState};

/// The commands besides the actions' names: (usage, what it does).
pub const COMMANDS: &[(&str, &str)] = &[
    ("leave", "leave the open conversation"),
    ("topic TEXT", "set the open conversation's topic (its description)"),
    ("rename NAME", "rename the open group or channel"),
    ("invite USER…", "add users to the open conversation"),
    ("dm USER", "open a direct conversation"),
    ("join TITLE", "join a channel (+TITLE creates it)"),
    ("group NAME USER…", "create a group (\"quote a name\" with spaces)"),
    ("reconnect", "reconnect now"),
    ("quit", "quit"),
    ("help", "this list, then the actions by name (:mute, :members, …)"),
];

impl App {
    /// Runs a `:` command line.
    pub(crate) fn command(&mut self, line: &str) {
        let line = line.trim().trim_start_matches(':');
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim().to_string();
        match word {
            "leave" => self.in_open(|app, conversation_id| {
                app.quiet(Request::LeaveConversation(v1::LeaveConversation { conversation_id }));
                app.open = None;
                app.focus = super::app::Focus::List;
                app.say("left the conversation");
            }),
            "topic" | "rename" if rest.is_empty() => self.say(format!(":{word} needs a text")),
            "topic" => self.in_open(|app, conversation_id| {
                let req = v1::UpdateConversation { conversation_id, description: Some(rest), ..Default::default() };
                app.quiet(Request::UpdateConversation(req));
            }),
            "rename" => self.in_open(|app, conversation_id| {
                let req = v1::UpdateConversation { conversation_id, title: Some(rest), ..Default::default() };
                app.quiet(Request::UpdateConversation(req));
            }),
            "invite" => self.in_open(|app, conversation_id| {
                for name in rest.split_whitespace().map(|n| n.trim_start_matches('@').to_string()) {
                    app.request(Purpose::AddMember { conversation_id, name: name.clone() }, super::app::search(&name));
                }
            }),
            "dm" => self.submit_prompt(PromptKind::NewDm, rest),
            "join" => self.submit_prompt(PromptKind::JoinChannel, rest),
            "group" => self.submit_prompt(PromptKind::NewGroup, rest),
            "reconnect" => self.reconnect(),
            "quit" | "q" => self.quit = true,
            "help" | "" => self.command_help(),
            name => match Action::ALL.iter().find(|a| a.name() == name) {
                Some(a) => self.action(*a),
                None => self.say(format!("unknown command :{name} (:help lists them)")),
            },
        }
    }

    fn in_open(&mut self, f: impl FnOnce(&mut Self, u64)) {
        match self.open {
            Some(id) => f(self, id),
            None => self.say("open a conversation first"),
        }
    }

    fn command_help(&mut self) {
        let mut items: Vec<ListItem> =
            COMMANDS.iter().map(|(u, d)| ListItem { label: format!(":{u:<18} {d}"), user: None }).collect();
        // The actions by name, but for the ones a command above already names.
        let named = |a: &&Action| COMMANDS.iter().any(|(u, _)| u.split(' ').next() == Some(a.name()));
        items.extend(
            Action::ALL
                .iter()
                .filter(|a| !named(a))
                .map(|a| ListItem { label: format!(":{:<18} {}", a.name(), a.describe()), user: None }),
        );
        self.overlay = Overlay::List { title: "Commands (Esc closes)".into(), items, selected: 0, members: None };
    }

    /// The reconnect key: retry now when offline.
    pub(crate) fn reconnect(&mut self) {
        match self.conn {
            ConnState::Offline { .. } => {
                self.net(Command::Reconnect);
                self.say("reconnecting…");
            }
            ConnState::Online => self.say("already online"),
            ConnState::Connecting { .. } => self.say("connecting already"),
            ConnState::SignedOut(_) => self.say("signed out: sign in again"),
        }
    }

    /// Tab in a prompt: paths, commands, usernames or channel titles, for the word being typed
    /// (a new group's members, a command's arguments too). Names known here complete at once;
    /// the server's user search and channel directory answer a moment later.
    pub(crate) fn tab_complete(&mut self) {
        let Overlay::Prompt { kind, input, .. } = &self.overlay else { return };
        let (kind, text) = (*kind, input.text());
        if let PromptKind::AttachFile { .. } = kind {
            return self.complete_prompt();
        }
        let t = target(kind, &text);
        match t.names {
            Names::Commands => {
                let names: Vec<String> = COMMANDS
                    .iter()
                    .map(|(u, _)| u.split(' ').next().unwrap_or(u).to_string())
                    .chain(Action::ALL.iter().map(|a| a.name().to_string()))
                    .collect();
                self.show_completion(&t, complete_word(&t.word, &names));
            }
            Names::Users => {
                let me = self.store.me.user_id;
                let names: Vec<String> =
                    self.store.users.values().filter(|u| u.user_id != me).map(|u| u.username.clone()).collect();
                self.show_completion(&t, complete_word(&t.word, &names));
                if !t.word.is_empty() {
                    self.request(Purpose::Complete(text), super::app::search(&t.word));
                }
            }
            Names::Channels => {
                let req = v1::DiscoverChannels { query: t.word, after_conversation_id: 0, limit: 50 };
                self.request(Purpose::Complete(text), Request::DiscoverChannels(req));
            }
            Names::Nothing => {}
        }
    }

    /// The server's names for a Tab pressed on `typed`, if the prompt still shows it.
    pub(crate) fn completed(&mut self, typed: &str, mut names: Vec<String>) {
        let Overlay::Prompt { input, kind, .. } = &self.overlay else { return };
        if input.text() != typed {
            return;
        }
        let t = target(*kind, typed);
        if t.names == Names::Users {
            let me = self.store.me.username.clone();
            names.retain(|n| *n != me);
        }
        self.show_completion(&t, complete_word(&t.word, &names));
    }

    fn show_completion(&mut self, t: &Target, c: Completion) {
        if let Overlay::Prompt { input, completions, .. } = &mut self.overlay {
            // Nothing matched: the input stays as typed (its `@` or `+` included).
            if c.text != t.word || !c.candidates.is_empty() {
                input.set(&format!("{}{}", t.before, c.text));
            }
            *completions = c.candidates;
        }
    }
}

/// Where a prompt's Tab names come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Names {
    Commands,
    Users,
    Channels,
    Nothing,
}

/// The word Tab completes: the text before it (kept), the word (without a leading `@` or `+`),
/// and where its names come from.
struct Target {
    before: String,
    word: String,
    names: Names,
}

/// The last word of `text`, without a leading `@` or `+`.
fn target_word(text: &str) -> &str {
    text.rsplit(' ').next().unwrap_or("").trim_start_matches(['@', '+'])
}

fn target(kind: PromptKind, text: &str) -> Target {
    let whole = |names| Target { before: String::new(), word: target_word(text).to_string(), names };
    // The last word, after the words before it.
    let last = |names| {
        let cut = text.rfind(' ').map_or(0, |i| i + 1);
        Target { before: text[..cut].to_string(), word: target_word(text).to_string(), names }
    };
    match kind {
        PromptKind::NewDm | PromptKind::AddMember { .. } | PromptKind::SearchUsers => whole(Names::Users),
        PromptKind::JoinChannel => Target { word: text.trim_start_matches('+').to_string(), ..whole(Names::Channels) },
        // A new group: the name first, then members.
        PromptKind::NewGroup if text.contains(' ') => last(Names::Users),
        PromptKind::Command => {
            let command = text.trim_start_matches(':').split(' ').next().unwrap_or("");
            match (text.contains(' '), command) {
                (false, _) => whole(Names::Commands),
                (true, "dm" | "invite") => last(Names::Users),
                // After the group's name.
                (true, "group") if text.split(' ').count() > 2 => last(Names::Users),
                (true, "join") => {
                    let cut = text.find(' ').map_or(text.len(), |i| i + 1);
                    Target {
                        before: text[..cut].to_string(),
                        word: text[cut..].trim_start_matches('+').to_string(),
                        names: Names::Channels,
                    }
                }
                _ => whole(Names::Nothing),
            }
        }
        PromptKind::NewGroup
        | PromptKind::SearchMessages
        | PromptKind::React { .. }
        | PromptKind::AttachFile { .. } => whole(Names::Nothing),
    }
}
