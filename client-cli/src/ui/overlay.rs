//! What shows over the main screen, and the sign-in form: one-line prompts and what each is
//! for, lists, confirmations, the help, and the form's fields.

use std::cell::Cell;

use super::composer::Composer;

/// The sign-in form, shown when the profile has no credentials.
#[derive(Clone, Debug, Default)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
    /// The password again, when registering.
    pub confirm: String,
    /// 0: username, 1: password, 2: the password again (registering only).
    pub field: usize,
    pub register: bool,
    pub error: Option<String>,
    pub busy: bool,
}

impl LoginForm {
    /// How many fields the form has: the password is asked twice when registering.
    pub fn fields(&self) -> usize {
        if self.register { 3 } else { 2 }
    }

    /// The field being typed in.
    pub fn field_mut(&mut self) -> &mut String {
        match self.field {
            0 => &mut self.username,
            1 => &mut self.password,
            _ => &mut self.confirm,
        }
    }
}

/// One-line prompts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    NewDm,
    NewGroup,
    JoinChannel,
    SearchUsers,
    /// Text in the loaded messages of the open conversation, newest first.
    SearchMessages,
    React {
        conversation_id: u64,
        message_id: u64,
    },
    AddMember {
        conversation_id: u64,
    },
    /// A file to upload and send (Tab completes the path).
    AttachFile {
        conversation_id: u64,
    },
    /// A `:` command (`commands.rs`).
    Command,
}

impl PromptKind {
    pub fn title(self) -> &'static str {
        match self {
            Self::NewDm => "Direct message to (username)",
            Self::NewGroup => "New group: NAME USER… (\"quote a name\" with spaces)",
            Self::JoinChannel => "Join channel (title, or +TITLE to create)",
            Self::SearchUsers => "Search users",
            Self::SearchMessages => "Search messages (again: older matches)",
            Self::React { .. } => "React with (emoji or :shortcode:)",
            Self::AddMember { .. } => "Add member (username)",
            Self::AttachFile { .. } => "Attach file (path; Tab completes)",
            Self::Command => ":command (Tab completes; help lists them)",
        }
    }
}

/// A list in a popup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListItem {
    pub label: String,
    /// For search results: the user to open a DM with.
    pub user: Option<u64>,
}

#[derive(Clone, Debug)]
pub enum Overlay {
    None,
    /// Every key; `scroll` is the first line shown (clamped when drawn).
    Help {
        scroll: Cell<u16>,
    },
    Prompt {
        kind: PromptKind,
        input: Composer,
        /// What the last Tab matched, when it was more than one.
        completions: Vec<String>,
    },
    /// `members` is the conversation whose members are listed (`x` removes one).
    List {
        title: String,
        items: Vec<ListItem>,
        selected: usize,
        members: Option<u64>,
    },
    ConfirmDelete {
        conversation_id: u64,
        message_id: u64,
    },
    /// Which attachment of a message to save (or open).
    Attachments {
        conversation_id: u64,
        message_id: u64,
        selected: usize,
        open: bool,
    },
    /// Message search across every conversation: the state is [`App::message_search`].
    MessageSearch,
    /// Which link of a message to open.
    Links {
        urls: Vec<String>,
        selected: usize,
    },
}
