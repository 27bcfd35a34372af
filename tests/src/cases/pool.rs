//! The run's shared accounts: a few accounts registered once per run and lent to every case that
//! needs only "some signed-in users", so a run against a server with the default registration
//! limit (docs/protocol.md §11.12: 20 per client IP, then 1 per 3 s) does not wait it out for
//! every case. Cases that change an account itself (sessions, password, privacy, blocks,
//! contacts, presence, notifications, calls) sign up their own; [`SIGN_UPS`] says how many.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use confab_protocol::client::ClientError;
use confab_protocol::v1::{self, ErrorCode};
use tokio::sync::Mutex;

use super::Target;

/// How many accounts the pool holds: the most one case uses at once (5), and one more.
pub const POOL_SIZE: usize = 6;

/// Registration requests each case makes itself, by case name: the accounts it signs up plus
/// the sign-ups it expects to be refused after the rate limit counted them (ALREADY_EXISTS).
/// Cases not listed make none. `tests/tests/conformance.rs` checks every number on every run.
pub const SIGN_UPS: &[(&str, u32)] = &[
    ("register_signs_the_connection_in", 1),
    ("own_security_events_are_listed", 1),
    ("register_checks_fields_and_uniqueness", 4),
    ("wrong_password_is_unauthenticated", 1),
    ("login_by_username_or_email", 1),
    ("login_attempts_are_rate_limited", 1),
    ("code_requests_answer_alike_and_are_limited", 1),
    ("refresh_rotates_and_reuse_revokes", 1),
    ("logout_ends_the_session", 1),
    ("sessions_are_listed_and_revoked", 1),
    ("change_password_ends_other_sessions", 1),
    ("password_reset_by_code", 1),
    ("profile_is_read_and_updated", 1),
    ("delete_account_removes_personal_data", 2),
    ("list_conversations_pages_by_activity", 1),
    ("read_receipts_can_be_hidden", 1),
    ("presence_follows_devices", 1),
    ("hidden_last_seen_stays_hidden", 1),
    ("contacts_see_presence", 1),
    ("profiles_and_search", 3),
    ("search_folds_case_beyond_ascii", 1),
    ("blocking_prevents_what_it_promises", 2),
    ("notifications_inbox", 2),
    ("strangers_cannot_call", 3),
    ("first_accept_wins", 2),
    ("reject_and_cancel_end_the_call", 2),
    ("signals_flow_between_the_parties_only", 2),
    ("blocked_users_cannot_add_or_notify_the_blocker", 1),
    ("account_deletion_leaves_groups_and_channels", 1),
    ("leaving_reads_the_conversations_notifications", 1),
    ("a_deleted_account_loses_its_avatar", 1),
];

/// The registration requests case `name` makes itself ([`SIGN_UPS`]).
pub fn sign_ups_of(name: &str) -> u32 {
    SIGN_UPS.iter().find(|(n, _)| *n == name).map_or(0, |(_, k)| *k)
}

/// One pooled account: who it is and the tokens of its session.
#[derive(Clone, Debug)]
struct Member {
    id: u64,
    name: String,
    auth: v1::AuthResult,
}

/// The shared accounts of one run against one server; [`Target`] holds it behind an `Arc`.
#[derive(Debug, Default)]
pub struct AccountPool {
    members: Mutex<Vec<Member>>,
    next: AtomicUsize,
    sign_ups: AtomicU32,
    /// The first `retry_after` the server answered while the pool was filled, if any.
    limited: Mutex<Option<Duration>>,
}

impl AccountPool {
    /// Registers the pool's accounts unless that is done; returns the first RATE_LIMITED wait
    /// the server imposed meanwhile (None when it registered them all at once).
    pub async fn fill(&self, t: &Target) -> anyhow::Result<Option<Duration>> {
        let mut members = self.members.lock().await;
        while members.len() < POOL_SIZE {
            let r = super::common::registration(&super::common::fresh_name("cfpool"));
            let (client, _events) = t.client().await?;
            let auth = loop {
                match client.register(r.clone()).await {
                    Err(ClientError::Server(e)) if e.code() == ErrorCode::RateLimited => {
                        let wait = Duration::from_millis(e.retry_after_ms.clamp(1, 30_000));
                        self.limited.lock().await.get_or_insert(wait);
                        tokio::time::sleep(wait).await;
                    }
                    other => break other.context("registering a pooled account")?,
                }
            };
            let me = auth.me.as_ref().context("AuthResult without me")?;
            members.push(Member { id: me.user_id, name: me.username.clone(), auth });
        }
        Ok(*self.limited.lock().await)
    }

    /// The next pooled account (round robin, so up to [`POOL_SIZE`] calls in a row give distinct
    /// users) on a new connection signed in with its access token, refreshed when expired.
    pub(super) async fn lend(&self, t: &Target) -> anyhow::Result<super::common::Account> {
        self.fill(t).await?;
        let i = self.next.fetch_add(1, Ordering::Relaxed) % POOL_SIZE;
        let m = self.members.lock().await[i].clone();
        let (client, events) = t.client().await?;
        let auth = match client.authenticate(&m.auth.access_token).await {
            Ok(_) => m.auth,
            Err(ClientError::Server(e)) if e.code() == ErrorCode::Unauthenticated => {
                let fresh = client.refresh(&m.auth.refresh_token).await.context("refreshing a pooled account")?;
                self.members.lock().await[i].auth = fresh.clone();
                fresh
            }
            Err(e) => return Err(e).context("signing in a pooled account"),
        };
        Ok(super::common::Account { client, events, id: m.id, name: m.name, auth })
    }

    /// Counts one registration request a case made itself.
    pub(super) fn count_sign_up(&self) {
        self.sign_ups.fetch_add(1, Ordering::Relaxed);
    }

    /// Registration requests the cases made themselves so far (not the pool's own).
    pub fn sign_ups(&self) -> u32 {
        self.sign_ups.load(Ordering::Relaxed)
    }
}
