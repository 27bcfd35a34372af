//! `confab admin …`: a server administrator's requests (docs/protocol.md §26, the audit log
//! §28.3): accounts with their figures, suspension, deletion, sessions, any message or
//! conversation, media quarantine, per-account limits, the server's figures and the audit log.
//! To anyone else the server answers each with the same `NOT_FOUND`, which is printed with a hint.

mod audit;
mod content;
mod users;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use confab_protocol::client::{Client, ClientError, unexpected};
use confab_protocol::v1::{self, ErrorCode, client_frame::Request, response::Result as R};

use crate::config::Settings;
use crate::session;
pub use audit::action_name;

/// Examples for `confab admin --help`.
pub const EXAMPLES: &str = "\
Examples:
  confab admin users                          # every account, by id: figures, state
  confab admin users ali --deleted --json     # usernames or display names starting with ali
  confab admin user alice                     # one account (a username, #ID or an id)
  confab admin suspend mallory --reason \"spam wave\"
  confab admin reactivate mallory
  confab admin revoke-sessions bob            # end every session; bob may sign in again
  confab admin delete mallory --erase --yes   # delete the account and every message it sent
  confab admin delete-message 42 1007         # conversation id, message id
  confab admin delete-conversation 42 --yes
  confab admin quarantine MEDIA_ID --reason \"reported\"
  confab admin limits bob                     # show bob's limits
  confab admin limits bob --media-quota 2GiB --messages-per-minute 30
  confab admin limits bob --media-quota default --reset-sign-in-limits
  confab admin stats --json
  confab admin audit --since 24h --action sign_in_failed --action account_suspended
  confab admin audit --target mallory --limit 200 --json

Only a server administrator may use these (`confab-server admin grant USER` on the server's
machine makes one); anyone else gets \"not found\". Every change, and every read of other users'
data, is recorded in the server's audit log.";

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Accounts whose username or display name starts with QUERY (all without one), by id.
    Users {
        query: Option<String>,
        /// Accounts with an id above this.
        #[arg(long, value_name = "ID")]
        after: Option<u64>,
        /// At most this many (the server's pages are followed).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Deleted accounts too.
        #[arg(long)]
        deleted: bool,
        #[arg(long)]
        json: bool,
    },
    /// One account: figures, state, sessions, connections and limits.
    User {
        /// A username, #ID, or an id.
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Suspend an account: its sessions end now and it cannot sign in until reactivated.
    Suspend {
        user: String,
        /// Why (kept in the audit log; one line, at most 500 bytes).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Lift a suspension.
    Reactivate {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete an account as it could itself; with --erase also every message it sent.
    Delete {
        user: String,
        /// Also delete every message the account sent.
        #[arg(long)]
        erase: bool,
        /// Do not ask (required when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// End every session of an account (it may sign in again).
    RevokeSessions {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete any message, by conversation id and message id.
    DeleteMessage {
        conversation: String,
        message: u64,
        #[arg(long)]
        json: bool,
    },
    /// Delete a conversation: every member is removed, its messages are deleted.
    DeleteConversation {
        conversation: String,
        /// Do not ask (required when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Quarantine a media item: nobody can download it, the same bytes cannot be uploaded again.
    Quarantine {
        media_id: String,
        /// Why (kept in the audit log; one line, at most 500 bytes).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show an account's limits, or change them (`default`: back to the server's value).
    Limits {
        user: String,
        /// Media the account may store: bytes, or 500MB, 2GiB, …
        #[arg(long, value_name = "BYTES", value_parser = users::quota_arg)]
        media_quota: Option<users::Setting<u64>>,
        /// Uploads begun and not finished at once.
        #[arg(long, value_name = "N", value_parser = users::count_arg)]
        max_pending_uploads: Option<users::Setting<u32>>,
        /// Messages per minute (0: unlimited).
        #[arg(long, value_name = "N", value_parser = users::count_arg)]
        messages_per_minute: Option<users::Setting<u32>>,
        /// Forget the account's failed sign-in attempts.
        #[arg(long)]
        reset_sign_in_limits: bool,
        #[arg(long)]
        json: bool,
    },
    /// The server's figures: connections, accounts, messages (per day), storage.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// The audit log, newest first, with filters (all must hold).
    Audit(audit::AuditArgs),
}

/// Runs `confab admin …`.
pub async fn run(settings: &Settings, command: AdminCommand) -> anyhow::Result<()> {
    let c = session::connect(settings).await?;
    let result = execute(&c.client, command).await;
    c.client.close().await;
    result.map_err(hint)
}

async fn execute(client: &Client, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Users { query, after, limit, deleted, json } => {
            users::list(client, query.unwrap_or_default(), after.unwrap_or(0), limit, deleted, json).await
        }
        AdminCommand::User { user, json } => users::show(client, &user, json).await,
        AdminCommand::Suspend { user, reason, json } => users::suspend(client, &user, reason, json).await,
        AdminCommand::Reactivate { user, json } => users::reactivate(client, &user, json).await,
        AdminCommand::Delete { user, erase, yes, json } => users::delete(client, &user, erase, yes, json).await,
        AdminCommand::RevokeSessions { user, json } => users::revoke_sessions(client, &user, json).await,
        AdminCommand::Limits {
            user,
            media_quota,
            max_pending_uploads,
            messages_per_minute,
            reset_sign_in_limits,
            json,
        } => {
            let change =
                users::LimitsChange { media_quota, max_pending_uploads, messages_per_minute, reset_sign_in_limits };
            users::limits(client, &user, change, json).await
        }
        AdminCommand::DeleteMessage { conversation, message, json } => {
            content::delete_message(client, &conversation, message, json).await
        }
        AdminCommand::DeleteConversation { conversation, yes, json } => {
            content::delete_conversation(client, &conversation, yes, json).await
        }
        AdminCommand::Quarantine { media_id, reason, json } => {
            content::quarantine(client, media_id, reason, json).await
        }
        AdminCommand::Stats { json } => content::stats(client, json).await,
        AdminCommand::Audit(args) => audit::run(client, args).await,
    }
}

/// The line for the server's refusal of an administrator's request (§26.1): "not found" is all
/// it says to a non-administrator, so the line says what that may mean; a server without
/// administration answers `UNIMPLEMENTED`.
fn hint(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Server(s)) if s.code() == ErrorCode::NotFound && s.message == "not found" => {
            anyhow!("not found (or you are not a server administrator)")
        }
        Some(ClientError::Server(s)) if s.code() == ErrorCode::Unimplemented => {
            anyhow!("this server does not offer it: {}", s.message)
        }
        _ => e,
    }
}

/// An account an administrator names.
#[derive(Clone, Debug)]
pub struct Target {
    pub user_id: u64,
    /// The username, when the lookup found one.
    pub username: Option<String>,
}

impl Target {
    /// The username, else `#ID`.
    pub fn name(&self) -> String {
        self.username.clone().unwrap_or_else(|| format!("#{}", self.user_id))
    }
}

/// An account by `#ID`, by username (exact, case-insensitive, `@` allowed), or by a number no
/// username spells (its id). Usernames are looked up with the ordinary search, then, for an
/// account the search does not show (one that blocked the administrator), with AdminListUsers.
pub async fn target(client: &Client, spec: &str) -> anyhow::Result<Target> {
    if let Some(id) = spec.strip_prefix('#').and_then(|s| s.parse::<u64>().ok()) {
        return Ok(Target { user_id: id, username: None });
    }
    let name = spec.strip_prefix('@').unwrap_or(spec);
    if name.is_empty() {
        bail!("no user given");
    }
    let req = v1::SearchUsers { query: name.to_string(), page_token: String::new(), limit: 100 };
    let found = match client.request(Request::SearchUsers(req)).await.with_context(|| format!("looking up {name}"))? {
        R::SearchUsers(r) => r.users.into_iter().find(|u| u.username.eq_ignore_ascii_case(name)),
        other => return Err(unexpected("SearchUsersResult", &other).into()),
    };
    if let Some(u) = found {
        return Ok(Target { user_id: u.user_id, username: Some(u.username) });
    }
    if let Ok(id) = spec.parse::<u64>() {
        return Ok(Target { user_id: id, username: None });
    }
    let req = v1::AdminListUsers { query: name.to_string(), after_user_id: 0, limit: 100, include_deleted: false };
    let found = match client.request(Request::AdminListUsers(req)).await? {
        R::AdminListUsers(r) => r.users.into_iter().find(|u| u.username.eq_ignore_ascii_case(name)),
        other => return Err(unexpected("AdminListUsersResult", &other).into()),
    };
    match found {
        Some(u) => Ok(Target { user_id: u.user_id, username: Some(u.username) }),
        None => bail!("no user named {name:?}"),
    }
}

/// A conversation id: a number (`#` before it allowed) as it is, else one of the account's own
/// conversations by title or `@username` (an administrator acts on conversations it is not in,
/// which only their ids name).
pub async fn conversation_id(client: &Client, spec: &str) -> anyhow::Result<u64> {
    match spec.trim_start_matches('#').parse::<u64>() {
        Ok(id) => Ok(id),
        Err(_) => Ok(super::resolve::conversation(client, spec).await?.0.conversation_id),
    }
}

/// Asks `question` on the terminal unless `yes`; refuses when standard input is not a terminal.
pub async fn confirm(question: String, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} Refusing without --yes: standard input is not a terminal");
    }
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        eprint!("{question} [y/N] ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line)
    })
    .await
    .context("asking")??;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("cancelled"),
    }
}
