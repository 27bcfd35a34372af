//! Handshake and heartbeat: Hello → Welcome (docs/protocol.md §4), Ping → Pong (§7.1); and the
//! one edge where a connection's session meets the hub: [`bind`] and [`unbind`], which publish
//! what changed (session attached or detached, presence) on the bus.

use confab_protocol::frames::now_ms;
use confab_protocol::v1::{Hello, Limits, Ping, Pong, Welcome};
use confab_protocol::{PROTOCOL_MAJOR, PROTOCOL_MINOR};

use crate::bus::DomainEvent;
use crate::error::ServerError;
use crate::session::{Caller, Session};
use crate::state::AppState;

/// Capabilities this server announces in Welcome (§4.3).
pub const SERVER_CAPABILITIES: &[&str] =
    &["heartbeat", "go_away", "accounts", "conversations", "social", "rooms", "reports"];

const MAX_NAME_BYTES: usize = 64;
const MAX_CAPABILITIES: usize = 32;
const MAX_TOKEN_BYTES: usize = 4096;

/// §4.1–§4.4: checks the version and fields of Hello, authenticates a token it carries, and
/// builds the Welcome.
pub(crate) async fn hello(state: &AppState, session: &Session, hello: &Hello) -> Result<Welcome, ServerError> {
    if hello.protocol_major != PROTOCOL_MAJOR {
        return Err(ServerError::UnsupportedVersion(format!(
            "this server speaks protocol {PROTOCOL_MAJOR}.x; the client asked for {}.{}",
            hello.protocol_major, hello.protocol_minor
        )));
    }
    if hello.client_name.len() > MAX_NAME_BYTES {
        return Err(ServerError::invalid("hello.client_name", "at most 64 bytes"));
    }
    if hello.client_version.len() > MAX_NAME_BYTES {
        return Err(ServerError::invalid("hello.client_version", "at most 64 bytes"));
    }
    if hello.capabilities.len() > MAX_CAPABILITIES || hello.capabilities.iter().any(|c| c.len() > MAX_NAME_BYTES) {
        return Err(ServerError::invalid("hello.capabilities", "at most 32 entries of at most 64 bytes"));
    }
    if hello.access_token.len() > MAX_TOKEN_BYTES {
        return Err(ServerError::invalid("hello.access_token", "at most 4096 bytes"));
    }
    if hello.room_token.len() > MAX_TOKEN_BYTES {
        return Err(ServerError::invalid("hello.room_token", "at most 4096 bytes"));
    }
    if !hello.room_token.is_empty() && !hello.access_token.is_empty() {
        return Err(ServerError::invalid("hello.room_token", "a guest's Hello carries no access_token"));
    }
    session.set_client_name(&hello.client_name);
    let guest = if hello.room_token.is_empty() {
        None
    } else {
        let (guest, info) = state.rooms().enter(&hello.room_token, &hello.display_name).await?;
        bind_guest(state, session, guest);
        Some(info)
    };
    let auth = if hello.access_token.is_empty() {
        None
    } else {
        let a = super::auth::authenticate_token(state, session, &hello.access_token).await?;
        Some(crate::wire::auth_info(&a))
    };
    let l = &state.config().limits;
    // The lower of the two minors (§9). With PROTOCOL_MINOR at 0 this is always 0 today.
    #[allow(clippy::unnecessary_min_or_max)]
    let protocol_minor = hello.protocol_minor.min(PROTOCOL_MINOR);
    Ok(Welcome {
        guest,
        server_version: env!("CARGO_PKG_VERSION").into(),
        protocol_major: PROTOCOL_MAJOR,
        protocol_minor,
        capabilities: SERVER_CAPABILITIES.iter().map(|s| (*s).to_string()).collect(),
        limits: Some(Limits {
            max_frame_bytes: l.max_frame_bytes,
            max_requests_in_flight: l.max_requests_in_flight,
            heartbeat_interval_ms: l.heartbeat_interval.as_millis() as u32,
            idle_timeout_ms: l.idle_timeout.as_millis() as u32,
            max_message_text_bytes: l.max_message_text_bytes,
        }),
        connection_id: session.id.clone(),
        server_time_ms: now_ms(),
        auth,
    })
}

/// §7.1: echoes the client's value with the server's clock.
pub(crate) fn ping(ping: &Ping) -> Pong {
    Pong { client_time_ms: ping.client_time_ms, server_time_ms: now_ms() }
}

/// Makes `caller` the connection's identity: attached to the hub under its session (replacing
/// a previous identity), with `SessionAttached` and any presence change published. The same
/// session again (Refresh, a new access token) only updates the expiry: nothing flaps.
pub(crate) fn bind(state: &AppState, session: &Session, caller: Caller) {
    attach(state, session, caller, true);
}

/// Like [`bind`], publishing no presence change: for a caller whose session is still being
/// checked (§11.5), announced with [`announce_presence`] once it passed.
pub(crate) fn bind_quietly(state: &AppState, session: &Session, caller: Caller) {
    attach(state, session, caller, false);
}

/// Publishes that `user`'s presence may have changed (the announcer reads the hub's state).
pub(crate) fn announce_presence(state: &AppState, user: crate::store::UserId) {
    state.bus().publish(DomainEvent::PresenceChanged { user });
}

fn attach(state: &AppState, session: &Session, caller: Caller, announce: bool) {
    if let Some(current) = session.caller()
        && current.session_id == caller.session_id
        && current.user_id == caller.user_id
    {
        session.set_caller(Some(caller));
        return;
    }
    unbind(state, session);
    session.set_caller(Some(caller.clone()));
    let presence = state.hub().attach(&caller.session_id, caller.user_id, session.key, session.outbox.clone());
    let user = caller.user_id;
    state.bus().publish(DomainEvent::SessionAttached { caller, key: session.key });
    if presence.is_some() && announce {
        state.bus().publish(DomainEvent::PresenceChanged { user });
    }
}

/// Makes the connection a meeting room's guest (§25.3): reachable as its guest session, with
/// no account and no presence. `SessionAttached` carries a caller of user 0 for it.
fn bind_guest(state: &AppState, session: &Session, guest: crate::session::Guest) {
    let session_id = guest.session_id();
    session.set_guest(Some(guest));
    state.hub().attach_guest(&session_id, session.key, session.outbox.clone());
    let caller = Caller { user_id: crate::store::UserId(0), session_id, expires_at_ms: 0 };
    state.bus().publish(DomainEvent::SessionAttached { caller, key: session.key });
}

/// Forgets the connection's identity, if any: detached from the hub, with `SessionDetached` and
/// any presence change published. Called when the connection closes and on Logout.
pub(crate) fn unbind(state: &AppState, session: &Session) {
    detach(state, session, true);
}

/// Like [`unbind`], without announcing presence: for DeleteAccount (the deletion announces the
/// user offline to everyone who saw them before it, `AccountDeleted`) and for a session that
/// failed its check (§11.5), which was never announced.
pub(crate) fn unbind_quietly(state: &AppState, session: &Session) {
    detach(state, session, false);
}

fn detach(state: &AppState, session: &Session, announce: bool) {
    if let Some(guest) = session.set_guest(None) {
        let session_id = guest.session_id();
        let remaining = state.hub().detach_guest(&session_id, session.key);
        let caller = Caller { user_id: crate::store::UserId(0), session_id, expires_at_ms: 0 };
        state.bus().publish(DomainEvent::SessionDetached { caller, key: session.key, remaining });
    }
    let Some(caller) = session.set_caller(None) else { return };
    let detached = state.hub().detach(&caller.session_id, caller.user_id, session.key);
    let user = caller.user_id;
    state.bus().publish(DomainEvent::SessionDetached { caller, key: session.key, remaining: detached.remaining });
    if detached.presence.is_some() && announce {
        state.bus().publish(DomainEvent::PresenceChanged { user });
    }
}
