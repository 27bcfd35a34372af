//! The subcommands, for scripts: each connects, does one thing, prints text or `--json`, and
//! exits non-zero with one line on stderr when it fails.

/// One typed request: `call!(client, GetMe, v1::GetMe {})` is the `Me`, or an error.
macro_rules! call {
    ($client:expr, $variant:ident, $req:expr) => {
        match $client.request(confab_protocol::v1::client_frame::Request::$variant($req)).await? {
            confab_protocol::v1::response::Result::$variant(r) => r,
            other => return Err(confab_protocol::client::unexpected(stringify!($variant), &other).into()),
        }
    };
}

mod account;
mod admin;
mod chat;
pub mod media;
pub mod output;
mod ping;
mod push;
mod reports;
mod resolve;
mod room;
pub mod search;
mod social;
mod table;
mod tail;

use clap::{Parser, Subcommand};

use crate::config::{GlobalArgs, Settings};

/// Confab terminal client. Without a subcommand it starts the full-screen client.
#[derive(Debug, Parser)]
#[command(name = "confab", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How a password is read.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input (else CONFAB_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_stdin: bool,
    /// Name of this device in the session list.
    #[arg(long)]
    pub device: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect, print the server's Welcome and the round-trip time.
    Ping {
        /// Round trips to measure.
        #[arg(long, short = 'n', default_value_t = 3)]
        count: u32,
        #[arg(long)]
        json: bool,
    },
    /// Create an account and sign in (the profile keeps the tokens).
    Register {
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
        #[arg(long)]
        json: bool,
    },
    /// Sign in with a username or email.
    Login {
        identifier: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[arg(long)]
        json: bool,
    },
    /// End this session and forget its tokens.
    Logout,
    /// The signed-in account.
    Whoami {
        #[arg(long)]
        json: bool,
    },
    /// The account's signed-in devices.
    Sessions {
        #[arg(long)]
        json: bool,
    },
    /// Conversations, most recent activity first, with unread counts.
    Conversations {
        #[arg(long)]
        json: bool,
    },
    /// Send a message; the text is the arguments, or standard input when there are none (with
    /// files the text is optional: `-` reads it from standard input).
    Send {
        /// Conversation: id, title, or @username for a DM.
        conversation: String,
        text: Vec<String>,
        /// Reply to this message id.
        #[arg(long, value_name = "MESSAGE_ID")]
        reply_to: Option<u64>,
        /// Attach this file (repeat for several, at most 10); its type is guessed from the extension.
        #[arg(long = "file", short = 'f', value_name = "PATH")]
        files: Vec<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Download an attachment (or one of its thumbnails) by media id.
    Download {
        media_id: String,
        /// Where to write: a file, a directory, or - for standard output [default: the file's
        /// own name in the current directory].
        #[arg(long, short = 'o', value_name = "PATH")]
        output: Option<std::path::PathBuf>,
        /// A thumbnail instead of the original: crop96, scale320 or scale800.
        #[arg(long, value_name = "NAME")]
        thumbnail: Option<String>,
        /// Replace the file when it exists.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Set your avatar to an image (JPEG, PNG, WebP or GIF), or remove it with --clear.
    Avatar {
        path: Option<std::path::PathBuf>,
        #[arg(long)]
        clear: bool,
        #[arg(long)]
        json: bool,
    },
    /// Messages of a conversation, oldest first.
    History {
        conversation: String,
        /// How many of the latest messages.
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: u32,
        /// Only messages below this seq.
        #[arg(long)]
        before: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Stream new messages and events as they arrive (all conversations, or one).
    Tail {
        conversation: Option<String>,
        /// Mark what arrives as read.
        #[arg(long)]
        mark_read: bool,
        #[arg(long)]
        json: bool,
    },
    /// Open (or find) the direct conversation with a user.
    CreateDm {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Create a private group with these members.
    CreateGroup {
        name: String,
        users: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create a public channel.
    CreateChannel {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Public channels whose title starts with QUERY.
    Channels {
        #[arg(default_value = "")]
        query: String,
        #[arg(long)]
        json: bool,
    },
    /// Join a channel by id or title.
    Join {
        channel: String,
        #[arg(long)]
        json: bool,
    },
    /// Leave a group or channel.
    Leave { conversation: String },
    /// Add users to a group.
    AddMember { conversation: String, users: Vec<String> },
    /// Remove a user from a group or channel.
    RemoveMember { conversation: String, user: String },
    /// Members of a conversation.
    Members {
        conversation: String,
        #[arg(long)]
        json: bool,
    },
    /// Edit one of your messages.
    Edit { conversation: String, message_id: u64, text: Vec<String> },
    /// Delete one of your messages.
    Delete { conversation: String, message_id: u64 },
    /// React to a message (emoji or :shortcode:).
    React {
        conversation: String,
        message_id: u64,
        emoji: String,
        /// Remove the reaction instead.
        #[arg(long)]
        remove: bool,
    },
    /// Pinned messages of a conversation.
    Pins {
        conversation: String,
        #[arg(long)]
        json: bool,
    },
    /// Mark a conversation read up to SEQ (default: everything).
    MarkRead { conversation: String, seq: Option<u64> },
    /// Delivery state of your message for each other member: sent, delivered, read.
    Receipts {
        conversation: String,
        message_id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Search messages by words, sender, conversation, date and attachments.
    Search(search::SearchArgs),
    /// Users whose username or display name starts with QUERY.
    SearchUsers {
        query: String,
        #[arg(long)]
        json: bool,
    },
    /// Your contacts; `contacts add USER`, `contacts remove USER` change them.
    Contacts {
        #[command(subcommand)]
        action: Option<ContactAction>,
        #[arg(long)]
        json: bool,
    },
    /// Block a user (they cannot message you; not announced to them).
    Block {
        user: String,
        /// Unblock instead.
        #[arg(long)]
        undo: bool,
    },
    /// Users you blocked.
    Blocked {
        #[arg(long)]
        json: bool,
    },
    /// Push notifications: targets, deliveries, settings, muting a conversation.
    Push {
        #[command(subcommand)]
        command: push::PushCommand,
    },
    /// Meeting rooms (owned or moderated) and their invite links.
    Room {
        #[command(subcommand)]
        command: room::RoomCommand,
    },
    /// Report a message of a conversation to its moderators and the server's administrators;
    /// the note is the remaining arguments (`-`: standard input).
    Report {
        /// Conversation: id, title, or @username for a DM.
        conversation: String,
        message_id: u64,
        #[arg(long, value_enum)]
        reason: reports::Reason,
        note: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Reports you may act on (as a moderator of their conversation, or a server administrator),
    /// newest first: open ones, or with --resolved the resolved ones.
    Reports {
        /// Only this conversation's (id, title, or @username).
        #[arg(long, value_name = "CONV")]
        conversation: Option<String>,
        #[arg(long)]
        resolved: bool,
        /// At most this many (the server's pages are followed).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Resolve an open report; the reporter is told what was done, with the note (the remaining
    /// arguments, `-`: standard input).
    Resolve {
        report_id: u64,
        #[arg(value_enum)]
        action: reports::Action,
        note: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Your account's security events, newest first: sign-ins (and failed ones), sessions ended,
    /// password changes, with the device and the address.
    Security {
        /// At most this many.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Server administration (server administrators only): accounts, suspension, deletion,
    /// content, limits, the server's figures and the audit log.
    #[command(after_long_help = admin::EXAMPLES)]
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Where this profile keeps its files.
    Paths,
}

#[derive(Debug, Subcommand)]
pub enum ContactAction {
    Add { user: String },
    Remove { user: String },
}

/// Runs a subcommand.
pub async fn run(settings: Settings, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ping { count, json } => ping::ping(&settings, count, json).await,
        Command::Register { username, display_name, email, password, json } => {
            account::register(&settings, &username, display_name, email, &password, json).await
        }
        Command::Login { identifier, password, json } => account::login(&settings, &identifier, &password, json).await,
        Command::Logout => account::logout(&settings).await,
        Command::Whoami { json } => account::whoami(&settings, json).await,
        Command::Sessions { json } => account::sessions(&settings, json).await,
        Command::Paths => {
            println!("config      {}", settings.config_file.display());
            println!("profile     {} ({})", settings.profile, settings.profile_dir.display());
            println!("credentials {}", settings.creds().path().display());
            Ok(())
        }
        Command::Tail { conversation, mark_read, json } => tail::tail(settings, conversation, mark_read, json).await,
        Command::Download { media_id, output, thumbnail, force, json } => {
            media::download(&settings, &media_id, output, thumbnail, force, json).await
        }
        Command::Avatar { path, clear, json } => media::avatar(&settings, path, clear, json).await,
        Command::Search(args) => search::run(&settings, args).await,
        Command::Push { command } => push::run(&settings, command).await,
        Command::Room { command } => room::run(&settings, command).await,
        Command::Admin { command } => admin::run(&settings, command).await,
        Command::Report { conversation, message_id, reason, note, json } => {
            let c = reports::ReportsCommand::Report { conversation, message: message_id, reason, note, json };
            reports::run(&settings, c).await
        }
        Command::Reports { conversation, resolved, limit, json } => {
            reports::run(&settings, reports::ReportsCommand::List { conversation, resolved, limit, json }).await
        }
        Command::Resolve { report_id, action, note, json } => {
            reports::run(&settings, reports::ReportsCommand::Resolve { report: report_id, action, note, json }).await
        }
        Command::Security { limit, json } => {
            reports::run(&settings, reports::ReportsCommand::Security { limit, json }).await
        }
        other => chat::run(&settings, other).await,
    }
}

/// The text of `send`/`edit`: the arguments joined, or standard input when there are none.
pub fn text_arg(words: Vec<String>) -> anyhow::Result<String> {
    let text = optional_text(words, true)?;
    if text.trim().is_empty() {
        anyhow::bail!("empty message");
    }
    Ok(text)
}

/// The arguments joined; standard input for `-`, and for no arguments when `stdin_if_none`.
pub fn optional_text(words: Vec<String>, stdin_if_none: bool) -> anyhow::Result<String> {
    Ok(if (words.is_empty() && stdin_if_none) || words == ["-"] {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        words.join(" ")
    })
}
