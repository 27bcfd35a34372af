//! Conformance cases. Each speaks only the wire and cites the docs/protocol.md section it checks;
//! each runs against any server given its URL and how to trust it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use confab_protocol::client::{
    Client, CloseInfo, ConnectOptions, Inbound, RawConnection, ServerUrl, TransportOptions, Trust,
};
use confab_protocol::frames::client_frame;
use confab_protocol::v1::{self, CloseCode, ErrorCode, client_frame::Request, event, response, server_frame};
use prost::Message as _;

use crate::inbox::CodeInbox;
pub use pool::{AccountPool, POOL_SIZE};

/// Where a case runs: one server, or several nodes of one cluster. Every connection a case opens
/// (each [`Target::client`], [`Target::raw`], …) goes to the next URL, round robin over a counter
/// its clones share, so a case's clients spread over the nodes.
#[derive(Clone, Debug)]
pub struct Target {
    /// One URL per node, all of one transport; never empty.
    urls: Arc<[String]>,
    next: Arc<AtomicUsize>,
    pub trust: Trust,
    /// Receives the one-time codes the server sends (its webhook points here). Cases that need
    /// codes (phone sign-in, password reset) cannot run without it.
    pub codes: Option<Arc<CodeInbox>>,
    /// The run's shared accounts, registered on first use (`Target::new` makes an empty one).
    pub pool: Arc<AccountPool>,
}

impl Target {
    /// A target on one server, with an empty account pool of its own.
    pub fn new(url: String, trust: Trust, codes: Option<Arc<CodeInbox>>) -> Self {
        Self { urls: Arc::from([url]), next: Arc::default(), trust, codes, pool: Arc::default() }
    }

    /// A target over the nodes of one cluster (`urls`, one per node; `trust` must accept every
    /// node's certificate), with an empty account pool of its own. Errors when `urls` is empty or
    /// mixes WebSocket and QUIC URLs.
    pub fn over_nodes(urls: Vec<String>, trust: Trust, codes: Option<Arc<CodeInbox>>) -> anyhow::Result<Self> {
        let first = urls.first().context("a target needs at least one URL")?;
        let ws = is_websocket_url(first);
        ensure!(
            urls.iter().all(|u| is_websocket_url(u) == ws),
            "the URLs of one target must all be WebSocket (ws://, wss://) or all QUIC (quic://): {urls:?}"
        );
        Ok(Self { urls: urls.into(), next: Arc::default(), trust, codes, pool: Arc::default() })
    }

    /// Every URL, in the order they are handed out.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The URL for the next connection: the URLs in turn (always the same one for one server).
    pub fn next_url(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len();
        self.urls[i].clone()
    }

    /// This target with every connection to one node (its next URL): for what one node holds,
    /// such as a meeting room's lobby and call (docs/protocol.md §25.4, operations.md).
    pub fn one_node(&self) -> Self {
        Self { urls: Arc::from([self.next_url()]), next: Arc::default(), ..self.clone() }
    }

    pub fn is_websocket(&self) -> bool {
        is_websocket_url(&self.urls[0])
    }

    pub fn options(&self) -> ConnectOptions {
        let mut o = ConnectOptions { client_name: "confab-conformance".into(), ..Default::default() };
        o.transport = TransportOptions { trust: self.trust.clone(), ..Default::default() };
        o
    }

    /// A raw, un-handshaken connection to the next URL.
    pub async fn raw(&self) -> anyhow::Result<RawConnection> {
        Ok(RawConnection::connect(&ServerUrl::parse(&self.next_url())?, &self.options().transport).await?)
    }

    /// A client, handshaken, to the next URL.
    pub async fn client(&self) -> anyhow::Result<(Client, confab_protocol::client::Events)> {
        Ok(self.client_with(self.options()).await?)
    }

    /// A client to the next URL with `options` (e.g. an access token in Hello).
    pub async fn client_with(
        &self,
        options: ConnectOptions,
    ) -> Result<(Client, confab_protocol::client::Events), confab_protocol::client::ClientError> {
        Client::connect(&self.next_url(), options).await
    }
}

fn is_websocket_url(url: &str) -> bool {
    url.starts_with("ws")
}

type CaseFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Transports a case applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    Both,
    WebSocketOnly,
    QuicOnly,
}

/// What a case needs from its target beyond a server URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// The one-time codes the server sends: [`Target::codes`].
    Codes,
}

/// One conformance case.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub name: &'static str,
    /// The docs/protocol.md section it checks, e.g. "§4.2".
    pub section: &'static str,
    pub applies: Applies,
    pub needs: Needs,
    pub run: fn(Target) -> CaseFuture,
}

impl Case {
    pub fn applies_to(&self, target: &Target) -> bool {
        match self.applies {
            Applies::Both => true,
            Applies::WebSocketOnly => target.is_websocket(),
            Applies::QuicOnly => !target.is_websocket(),
        }
    }

    /// The registration requests this case makes itself, beyond the shared accounts it borrows
    /// ([`pool::SIGN_UPS`]).
    pub fn sign_ups(&self) -> u32 {
        pool::sign_ups_of(self.name)
    }

    /// What `target` lacks for this case, named by the runner option that provides it
    /// (e.g. "--code-sink"); None when the case can run.
    pub fn missing(&self, target: &Target) -> Option<&'static str> {
        match self.needs {
            Needs::Codes if target.codes.is_none() => Some("--code-sink"),
            _ => None,
        }
    }
}

macro_rules! case {
    ($module:ident :: $name:ident, $section:literal, $applies:ident) => {
        case!($module::$name, $section, $applies, Nothing)
    };
    ($module:ident :: $name:ident, $section:literal, $applies:ident, $needs:ident) => {
        Case {
            name: stringify!($name),
            section: $section,
            applies: Applies::$applies,
            needs: Needs::$needs,
            run: |t| Box::pin($module::$name(t)),
        }
    };
}

mod accounts;
mod admin;
mod call_lifecycle;
mod calls;
mod codes;
mod common;
mod conversations;
mod group_calls;
mod lifecycle;
mod media;
mod messaging;
mod moderation;
pub mod pool;
mod push;
mod reactions;
mod receipts;
mod roles;
mod rooms;
mod search;
mod session;
mod social;
mod suite;
mod sync;
mod text;

pub use suite::{SuiteRun, run_every_case};

/// Every case, in protocol.md section order.
pub fn all() -> Vec<Case> {
    vec![
        case!(session::ws_requires_subprotocol, "§2.1", WebSocketOnly),
        case!(session::ws_text_message_closes_1003, "§2.1", WebSocketOnly),
        case!(session::ws_oversized_message_closes_1009, "§2.1", WebSocketOnly),
        case!(session::ws_huge_declared_frame_closes_before_payload, "§2.1", WebSocketOnly),
        case!(session::ws_text_not_utf8_closes_1007, "§2.1", WebSocketOnly),
        case!(session::quic_huge_declared_length_closes_before_payload, "§2.2", QuicOnly),
        case!(session::quic_malformed_length_prefix_closes_1007, "§2.2", QuicOnly),
        case!(session::zero_request_id_is_refused, "§3.2", Both),
        case!(session::request_before_hello_is_refused, "§4.1", Both),
        case!(session::unsupported_major_is_refused_and_closed, "§4.1", Both),
        case!(session::invalid_hello_field_is_refused, "§4.1", Both),
        case!(session::second_hello_is_refused, "§4.1", Both),
        case!(session::handshake_returns_welcome, "§4.2", Both),
        case!(session::minor_version_is_negotiated_down, "§4.2", Both),
        case!(session::unknown_access_token_is_unauthenticated, "§4.4", Both),
        case!(session::unknown_request_is_unimplemented, "§5.2", Both),
        case!(text::every_string_field_obeys_the_text_rules, "§5.4", Both),
        case!(text::hello_strings_are_checked, "§5.4", Both),
        case!(text::blank_titles_and_messages_are_refused, "§5.4", Both),
        case!(session::undecodable_frame_closes_1007, "§6", Both),
        case!(session::ping_echoes_client_time, "§7.1", Both),
        case!(session::pipelined_requests_all_answered, "§8", Both),
        case!(session::in_flight_limit_is_back_pressure, "§8", Both),
        case!(accounts::requests_need_authentication, "§11.1", Both),
        case!(accounts::register_signs_the_connection_in, "§11.2", Both),
        case!(accounts::register_checks_fields_and_uniqueness, "§11.2", Both),
        case!(accounts::wrong_password_is_unauthenticated, "§11.3", Both),
        case!(accounts::login_by_username_or_email, "§11.3", Both),
        case!(accounts::login_attempts_are_rate_limited, "§11.3", Both),
        case!(codes::phone_sign_in_creates_then_signs_in, "§11.4", Both, Codes),
        case!(codes::phone_code_tries_are_limited, "§11.4", Both, Codes),
        case!(codes::code_requests_answer_alike_and_are_limited, "§11.4", Both),
        case!(accounts::token_authenticates_another_connection, "§11.5", Both),
        case!(accounts::refresh_rotates_and_reuse_revokes, "§11.6", Both),
        case!(accounts::logout_ends_the_session, "§11.7", Both),
        case!(accounts::sessions_are_listed_and_revoked, "§11.7", Both),
        case!(accounts::change_password_ends_other_sessions, "§11.8", Both),
        case!(codes::password_reset_by_code, "§11.9", Both, Codes),
        case!(accounts::profile_is_read_and_updated, "§11.10", Both),
        case!(accounts::delete_account_removes_personal_data, "§11.11", Both),
        case!(conversations::non_members_get_not_found, "§12.1", Both),
        case!(conversations::get_conversation_shows_the_callers_view, "§12.1", Both),
        case!(conversations::direct_conversation_is_unique_per_pair, "§12.2", Both),
        case!(conversations::create_checks_fields_and_starts_the_log, "§12.2", Both),
        case!(conversations::list_conversations_pages_by_activity, "§12.3", Both),
        case!(conversations::channels_are_joined_and_left, "§12.4", Both),
        case!(conversations::owner_leaving_passes_ownership, "§12.4", Both),
        case!(conversations::members_are_added_and_removed, "§12.5", Both),
        case!(conversations::list_members_pages, "§12.6", Both),
        case!(conversations::discover_channels_by_title_prefix, "§12.7", Both),
        case!(roles::settings_roles_and_ownership, "§12.8", Both),
        case!(roles::member_is_denied_by_the_matrix, "§12.8", Both),
        case!(roles::higher_roles_act_as_the_matrix_allows, "§12.8", Both),
        case!(roles::direct_conversations_have_no_roles, "§12.8", Both),
        case!(messaging::message_text_is_checked, "§13.1", Both),
        case!(messaging::client_msg_id_is_shown_to_the_sender_only, "§13.1", Both),
        case!(messaging::send_is_idempotent, "§13.2", Both),
        case!(messaging::pipelined_sends_keep_their_order, "§13.2", Both),
        case!(messaging::replies_and_mentions_are_checked, "§13.2", Both),
        case!(messaging::written_at_is_kept_within_a_day_before_receipt, "§13.2", Both),
        case!(messaging::edit_and_delete_are_log_entries, "§13.3", Both),
        case!(messaging::history_pages_both_ways, "§13.4", Both),
        case!(messaging::reactions_are_counted_per_emoji, "§13.5", Both),
        case!(reactions::one_emoji_counts_once_whatever_its_spelling, "§13.5", Both),
        case!(messaging::pins_are_listed_most_recent_first, "§13.6", Both),
        case!(sync::user_log_is_gapless, "§14.2", Both),
        case!(sync::sync_returns_missed_entries_in_order, "§14.3", Both),
        case!(sync::sync_pages_with_has_more, "§14.3", Both),
        case!(sync::another_epoch_requires_resync, "§14.3", Both),
        case!(sync::sync_ignores_foreign_cursors, "§14.3", Both),
        case!(sync::ack_moves_the_delivered_watermark, "§14.4", Both),
        case!(sync::live_events_carry_gapless_seqs, "§14.5", Both),
        case!(receipts::read_watermark_only_moves_forward, "§15.1", Both),
        case!(receipts::receipts_show_each_members_state, "§15.2", Both),
        case!(receipts::read_marker_is_a_receipt_watermark, "§15.3", Both),
        case!(receipts::read_receipts_can_be_hidden, "§15.4", Both),
        case!(receipts::typing_reaches_members, "§16", Both),
        case!(receipts::typing_stops_lapses_and_is_limited, "§16", Both),
        case!(social::presence_follows_devices, "§17", Both),
        case!(social::hidden_last_seen_stays_hidden, "§17", Both),
        case!(social::contacts_see_presence, "§17", Both),
        case!(social::profiles_and_search, "§18", Both),
        case!(text::search_folds_case_beyond_ascii, "§18/§12.7", Both),
        case!(social::blocking_prevents_what_it_promises, "§18", Both),
        case!(social::notifications_inbox, "§19", Both),
        case!(calls::ice_servers_are_listed, "§20.1", Both),
        case!(calls::strangers_cannot_call, "§20.2.1", Both),
        case!(calls::first_accept_wins, "§20.2.3", Both),
        case!(calls::reject_and_cancel_end_the_call, "§20.2.4", Both),
        case!(calls::signals_flow_between_the_parties_only, "§20.2.6", Both),
        case!(group_calls::only_members_join_a_group_call, "§20.3.2", Both),
        case!(group_calls::publish_refuses_a_malformed_offer, "§20.3.3", Both),
        case!(group_calls::leaving_is_announced, "§20.3.7", Both),
        case!(group_calls::members_hear_the_participant_count, "§20.3.2", Both),
        case!(group_calls::subscribed_quality_needs_the_call_and_a_known_track, "§20.3.10", Both),
        case!(group_calls::restart_ice_of_the_publisher_is_the_clients, "§20.3.11", Both),
        case!(call_lifecycle::a_removed_callee_stops_ringing, "§21", Both),
        case!(call_lifecycle::a_caller_who_leaves_ends_the_ringing, "§21", Both),
        case!(call_lifecycle::a_removed_member_leaves_the_group_call, "§21", Both),
        case!(lifecycle::deleting_a_message_clears_pin_reactions_and_mentions, "§21/§13.3", Both),
        case!(lifecycle::mention_counts_start_at_the_read_marker, "§21/§12.1", Both),
        case!(lifecycle::blocked_users_cannot_add_or_notify_the_blocker, "§21/§18", Both),
        case!(lifecycle::channels_show_outsiders_no_content, "§21/§12.7", Both),
        case!(lifecycle::account_deletion_leaves_groups_and_channels, "§21/§11.11", Both),
        case!(lifecycle::an_ownerless_channel_is_owned_by_its_next_joiner, "§21/§12.4", Both),
        case!(lifecycle::leaving_reads_the_conversations_notifications, "§21/§19", Both),
        case!(media::begin_upload_refuses_before_any_byte, "§22.2", Both),
        case!(media::uploads_resume_on_another_connection, "§22.3/§22.4", Both),
        case!(media::finish_checks_hash_type_and_image_size, "§22.1/§22.5", Both),
        case!(media::images_lose_their_metadata_and_get_thumbnails, "§22.6", Both),
        case!(media::downloads_take_byte_ranges, "§22.7", Both),
        case!(media::attachments_are_read_by_members_only, "§22.8/§22.10", Both),
        case!(media::quic_transfer_streams, "§22.9", QuicOnly),
        case!(media::avatars_and_photos_are_read_by_who_sees_them, "§22.10", Both),
        case!(media::a_deleted_account_loses_its_avatar, "§21/§22.10", Both),
        case!(search::search_folds_case_and_accents_and_finds_words_inside_words, "§23.2/§23.5", Both),
        case!(search::search_syntax_phrases_exclusions_and_or, "§23.2/§23.4", Both),
        case!(search::search_sees_only_membership_spans, "§23.1", Both),
        case!(search::search_follows_edits_and_deletions, "§23.1/§21", Both),
        case!(search::search_filters_orders_and_pages, "§23.3/§23.4", Both),
        case!(search::search_sees_writes_committed_before_it, "§23.6", Both),
        case!(push::push_targets_are_per_device, "§24.1", Both),
        case!(push::push_tokens_change_hands_and_leave_with_their_session, "§24.1/§21", Both),
        case!(push::push_requests_are_bounded, "§24.1/§24.5", Both),
        case!(push::push_settings_per_account_and_conversation, "§24.3", Both),
        case!(rooms::rooms_are_found_by_their_owners_only, "§25.1", Both),
        case!(rooms::invites_run_out_and_are_revoked, "§25.2/§25.3", Both),
        case!(rooms::a_guest_is_confined_to_its_room, "§25.3", Both),
        case!(rooms::a_guest_joins_through_the_lobby, "§25.4/§25.7", Both),
        case!(rooms::a_removed_guest_is_barred, "§25.5", Both),
        case!(admin::every_admin_request_is_not_found_for_others, "§26.1", Both),
        case!(moderation::non_member_report_is_not_found, "§27.1", Both),
        case!(moderation::repeat_report_answers_the_same_id, "§27.1", Both),
        case!(moderation::report_reaches_moderators, "§27.2", Both),
        case!(moderation::member_cannot_list_or_resolve_reports, "§27.3", Both),
        case!(moderation::resolution_is_told_to_the_reporter, "§27.4", Both),
        case!(admin::own_security_events_are_listed, "§28.4", Both),
    ]
}

// ---- helpers ------------------------------------------------------------------------------

const WAIT: Duration = Duration::from_secs(10);

pub fn hello(major: u32, minor: u32) -> Request {
    Request::Hello(v1::Hello {
        protocol_major: major,
        protocol_minor: minor,
        client_name: "confab-conformance".into(),
        client_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    })
}

/// Waits for the response to `request_id`, skipping events.
pub async fn response_to(raw: &mut RawConnection, request_id: u64) -> anyhow::Result<response::Result> {
    tokio::time::timeout(WAIT, async {
        loop {
            let frame = raw.recv_frame().await?;
            if let Some(server_frame::Frame::Response(r)) = frame.frame {
                ensure!(r.request_id == request_id, "expected response to {request_id}, got one to {}", r.request_id);
                return r.result.context("response without result");
            }
        }
    })
    .await
    .context("no response in time")?
}

/// Expects an error response with `code` to `request_id`.
pub async fn expect_error(raw: &mut RawConnection, request_id: u64, code: ErrorCode) -> anyhow::Result<v1::Error> {
    match response_to(raw, request_id).await? {
        response::Result::Error(e) => {
            ensure!(e.code() == code, "expected {}, got {e}", code.as_str_name());
            ensure!(!e.message.is_empty(), "error without a message");
            Ok(e)
        }
        other => bail!("expected {} error, got {other:?}", code.as_str_name()),
    }
}

/// Reads until the connection closes; returns the frames seen before and the close.
pub async fn until_closed(raw: &mut RawConnection) -> anyhow::Result<(Vec<v1::ServerFrame>, CloseInfo)> {
    tokio::time::timeout(WAIT, async {
        let mut frames = Vec::new();
        loop {
            match raw.receiver.recv().await? {
                Inbound::Frame(b) => frames.push(v1::ServerFrame::decode(b)?),
                Inbound::Closed(info) => return Ok((frames, info)),
            }
        }
    })
    .await
    .context("connection not closed in time")?
}

pub fn expect_close(info: &CloseInfo, code: CloseCode) -> anyhow::Result<()> {
    ensure!(info.code == Some(code as u32), "expected close {} ({}), got {info}", code as u32, code.as_str_name());
    Ok(())
}

/// The error in a connection-level response (request_id 0) among `frames`.
fn connection_error(frames: &[v1::ServerFrame]) -> Option<&v1::Error> {
    frames.iter().find_map(|f| match &f.frame {
        Some(server_frame::Frame::Response(v1::Response {
            request_id: 0,
            result: Some(response::Result::Error(e)),
        })) => Some(e),
        _ => None,
    })
}

pub async fn handshaken(t: &Target) -> anyhow::Result<RawConnection> {
    let mut raw = t.raw().await?;
    raw.send_frame(&client_frame(1, hello(1, 0))).await?;
    match response_to(&mut raw, 1).await? {
        response::Result::Welcome(_) => Ok(raw),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

/// A raw connection after Welcome, signed in with `access_token` by Authenticate (request 2).
pub async fn signed_in_raw(t: &Target, access_token: &str) -> anyhow::Result<RawConnection> {
    let mut raw = handshaken(t).await?;
    let auth = Request::Authenticate(v1::Authenticate { access_token: access_token.into() });
    raw.send_frame(&client_frame(2, auth)).await?;
    match response_to(&mut raw, 2).await? {
        response::Result::Authenticate(_) => Ok(raw),
        other => bail!("expected Authenticate's result, got {other:?}"),
    }
}

/// The GoAway event, if `ev` is one.
pub fn as_go_away(ev: &v1::Event) -> Option<&v1::GoAway> {
    match &ev.event {
        Some(event::Event::GoAway(g)) => Some(g),
        _ => None,
    }
}
