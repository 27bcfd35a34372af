//! Meeting rooms (docs/protocol.md §25): rooms that belong to no conversation, their invites and
//! guests, the lobby, moderation, and rooms closing when they expire or stay empty. A room's call
//! is the SFU's (`CallKey::Meeting`); this service decides who may do what ([`rules`]) and keeps
//! each room's lobby (in memory, on the node the room's participants reach).

mod guests;
mod lobby;
pub mod rules;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, event};

use crate::auth::AuthService;
use crate::bus::{Bus, DomainEvent, Subscriber};
use crate::calls::sfu::{Limits, Sfu};
use crate::config::CallsConfig;
use crate::error::ServerError;
use crate::hub::Audience;
use crate::session::{Caller, Guest};
use crate::store::{InviteRec, RoomChange, RoomCloseReason, RoomId, RoomRec, RoomRole, Store, UserId, now_ms};
pub use rules::Principal;

/// Longest room name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Most moderators a room names.
const MAX_MODERATORS: usize = 50;
/// Furthest an expiry may lie ahead.
const MAX_AHEAD_MS: u64 = 366 * 86_400_000;
/// An invite's default and longest lifetime.
const INVITE_DEFAULT_MS: u64 = 7 * 86_400_000;
const INVITE_MAX_MS: u64 = 30 * 86_400_000;
/// Rooms closed per sweep at most.
const SWEEP_BATCH: i64 = 500;

/// Someone waiting in a room's lobby.
#[derive(Clone, Debug)]
struct Knock {
    guest: Guest,
    session: String,
    since_ms: u64,
}

/// A room's lobby on this node: who knocks, who was admitted (by guest id).
#[derive(Debug, Default)]
struct Lobby {
    knocks: Vec<Knock>,
    admitted: std::collections::HashSet<String>,
}

struct Inner {
    store: Arc<dyn Store>,
    sfu: Sfu,
    auth: AuthService,
    bus: Arc<dyn Bus>,
    config: CallsConfig,
    lobbies: Mutex<HashMap<RoomId, Lobby>>,
    /// The guests in meeting calls on this node, by session.
    guests: Mutex<HashMap<String, Guest>>,
}

/// The meeting-rooms service: a cheap-clone handle.
#[derive(Clone)]
pub struct Rooms(Arc<Inner>);

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn no_room() -> ServerError {
    ServerError::NotFound("no such room".into())
}

fn frame(ev: event::Event) -> Bytes {
    encode_server(&event_frame(ev))
}

/// A room as the wire has it.
pub fn wire_room(r: &RoomRec) -> v1::Room {
    v1::Room {
        room_id: r.id.to_string(),
        name: r.name.clone(),
        owner_id: crate::wire::user(r.owner),
        max_publishers: r.max_publishers,
        max_participants: r.max_participants,
        empty_timeout_ms: r.empty_timeout_ms,
        expires_at_ms: r.expires_at_ms,
        lobby: r.lobby,
        locked: r.locked,
        moderator_ids: r.moderators.iter().map(|m| crate::wire::user(*m)).collect(),
        created_at_ms: r.created_at_ms,
        closed_at_ms: r.closed_at_ms.unwrap_or(0),
        close_reason: r.close_reason.map_or(0, i32::from),
    }
}

fn wire_invite(v: &InviteRec, token: String) -> v1::RoomInvite {
    v1::RoomInvite {
        invite_id: v.id.clone(),
        room_id: v.room.to_string(),
        role: v.role.into(),
        token,
        expires_at_ms: v.expires_at_ms,
        max_uses: v.max_uses,
        uses: v.uses,
        created_at_ms: v.created_at_ms,
        revoked_at_ms: v.revoked_at_ms.unwrap_or(0),
        created_by: crate::wire::user(v.created_by),
    }
}

fn now() -> u64 {
    now_ms().max(0) as u64
}

fn check_name(field: &'static str, name: &str) -> Result<String, ServerError> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(ServerError::invalid(field, format!("1..={MAX_NAME_CHARS} characters")));
    }
    Ok(name.to_string())
}

impl Rooms {
    pub fn new(config: CallsConfig, store: Arc<dyn Store>, sfu: Sfu, auth: AuthService, bus: Arc<dyn Bus>) -> Self {
        let rooms = Self(Arc::new(Inner {
            store,
            sfu,
            auth,
            bus,
            config,
            lobbies: Mutex::new(HashMap::new()),
            guests: Mutex::new(HashMap::new()),
        }));
        tokio::spawn(sweep(Arc::downgrade(&rooms.0)));
        rooms
    }

    /// §25.3: a guest's rights last while its invite stands (not revoked, not expired) and
    /// neither it nor the invite is barred; an account's while it is not barred.
    async fn still_welcome(&self, who: &Principal<'_>, room: &RoomRec) -> Result<(), ServerError> {
        let gone = || ServerError::PermissionDenied("you may no longer take part in this room".into());
        if let Principal::Guest(g) = who {
            let invite = self.0.store.room_invite(&room.id, &g.invite_id).await?;
            if invite.is_none_or(|i| i.revoked_at_ms.is_some() || i.expires_at_ms <= now()) {
                return Err(gone());
            }
        }
        if self.0.store.barred_from_room(&room.id, &who.bars()).await? {
            return Err(gone());
        }
        Ok(())
    }

    /// GetIceServers from a guest: only while it may take part in its room (TURN credentials are
    /// not for anyone holding an old link).
    pub async fn check_guest(&self, g: &Guest) -> Result<(), ServerError> {
        let who = Principal::Guest(g);
        let (room, _) = self.open_room(&who, "room_id", g.room.as_str()).await?;
        self.still_welcome(&who, &room).await
    }

    fn limits(&self, r: &RoomRec) -> Limits {
        let c = &self.0.config;
        let pick = |own: u32, server: u32| if own == 0 { server } else { own.min(server) };
        Limits {
            max_publishers: pick(r.max_publishers, c.max_publishers),
            max_participants: pick(r.max_participants, c.max_participants),
        }
    }

    /// The open or closed room `room_id` and the principal's role in it: NOT_FOUND for an account
    /// that neither owns nor moderates it (and for a malformed id), PERMISSION_DENIED for a guest
    /// of another room.
    async fn room_for(
        &self,
        who: &Principal<'_>,
        field: &'static str,
        room_id: &str,
    ) -> Result<(RoomRec, RoomRole), ServerError> {
        if room_id.is_empty() {
            return Err(ServerError::invalid(field, "required"));
        }
        if let Principal::Guest(g) = who
            && g.room.as_str() != room_id
        {
            return Err(rules::outside_room());
        }
        let id = RoomId::parse(room_id).ok_or_else(no_room)?;
        let room = self.0.store.meeting_room(&id).await?.ok_or_else(no_room)?;
        let role = rules::role_in(who, &room).ok_or_else(no_room)?;
        if role != RoomRole::Owner {
            self.still_welcome(who, &room).await?;
        }
        Ok((room, role))
    }

    /// Like [`room_for`](Self::room_for), for a room that must be open.
    async fn open_room(
        &self,
        who: &Principal<'_>,
        field: &'static str,
        room_id: &str,
    ) -> Result<(RoomRec, RoomRole), ServerError> {
        let (room, role) = self.room_for(who, field, room_id).await?;
        if !room.is_open() {
            return Err(ServerError::FailedPrecondition("the room is closed".into()));
        }
        Ok((room, role))
    }

    /// §25.1
    pub async fn create(&self, a: &Caller, r: v1::CreateRoom) -> Result<v1::Room, ServerError> {
        let now = now();
        let name = check_name("create_room.name", &r.name)?;
        let c = &self.0.config;
        if r.max_participants > c.max_participants {
            return Err(ServerError::invalid(
                "create_room.max_participants",
                format!("at most {}", c.max_participants),
            ));
        }
        if r.max_publishers > c.max_publishers {
            return Err(ServerError::invalid("create_room.max_publishers", format!("at most {}", c.max_publishers)));
        }
        rules::check_timing("create_room", r.empty_timeout_ms, r.expires_at_ms, now, MAX_AHEAD_MS)?;
        let moderators = self.check_moderators("create_room.moderator_ids", a.user_id, &r.moderator_ids).await?;
        let room = RoomRec {
            id: RoomId::random(),
            name,
            owner: a.user_id,
            max_publishers: r.max_publishers,
            max_participants: r.max_participants,
            empty_timeout_ms: r.empty_timeout_ms,
            expires_at_ms: r.expires_at_ms,
            lobby: r.lobby,
            locked: false,
            moderators,
            created_at_ms: now,
            empty_since_ms: Some(now),
            closed_at_ms: None,
            close_reason: None,
        };
        self.0.store.create_meeting_room(&room).await?;
        Ok(wire_room(&room))
    }

    async fn check_moderators(
        &self,
        field: &'static str,
        owner: UserId,
        ids: &[u64],
    ) -> Result<Vec<UserId>, ServerError> {
        if ids.len() > MAX_MODERATORS {
            return Err(ServerError::invalid(field, format!("at most {MAX_MODERATORS}")));
        }
        let mut out: Vec<UserId> = Vec::new();
        for &m in ids {
            let u = crate::access::id::<UserId>(field, m)?;
            if u == owner || out.contains(&u) {
                continue;
            }
            if self.0.store.user(u).await?.is_none() {
                return Err(ServerError::NotFound(format!("no user {m}")));
            }
            out.push(u);
        }
        Ok(out)
    }

    /// §25.1
    pub async fn get(
        &self,
        who: &Principal<'_>,
        session: &str,
        r: v1::GetRoom,
    ) -> Result<v1::GetRoomResult, ServerError> {
        let (room, role) = self.room_for(who, "get_room.room_id", &r.room_id).await?;
        let participants: Vec<v1::RoomParticipant> =
            self.0.sfu.roster(&room.id).await.into_iter().map(room_participant).collect();
        // The caller's seat, looked up once (not per participant).
        let seat = self.0.sfu.participant_of(session);
        let you = participants.iter().find(|p| seat.as_deref() == Some(p.participant_id.as_str())).cloned();
        let knocks = if role.moderates() { self.knocks(&room.id) } else { Vec::new() };
        let you = you.or_else(|| {
            let lobbies = lock(&self.0.lobbies);
            let k = lobbies.get(&room.id)?.knocks.iter().find(|k| k.session == session)?.clone();
            Some(v1::RoomParticipant {
                participant_id: k.guest.guest_id.clone(),
                user_id: 0,
                display_name: k.guest.name.clone(),
                role: k.guest.role.into(),
                publishing: false,
                tracks: Vec::new(),
            })
        });
        Ok(v1::GetRoomResult { room: Some(wire_room(&room)), you, participants, knocks, role: role.into() })
    }

    fn knocks(&self, room: &RoomId) -> Vec<v1::Knock> {
        let lobbies = lock(&self.0.lobbies);
        lobbies.get(room).map_or_else(Vec::new, |l| l.knocks.iter().map(wire_knock).collect())
    }

    /// §25.1
    pub async fn list(&self, a: &Caller, r: v1::ListRooms) -> Result<v1::ListRoomsResult, ServerError> {
        let rooms = self.0.store.meeting_rooms_of(a.user_id, r.include_closed).await?;
        Ok(v1::ListRoomsResult { rooms: rooms.iter().map(wire_room).collect() })
    }

    /// §25.1
    pub async fn update(&self, who: &Principal<'_>, r: v1::UpdateRoom) -> Result<v1::Room, ServerError> {
        let (room, role) = self.open_room(who, "update_room.room_id", &r.room_id).await?;
        let owner_fields = r.name.is_some()
            || r.max_publishers.is_some()
            || r.max_participants.is_some()
            || r.empty_timeout_ms.is_some()
            || r.expires_at_ms.is_some()
            || r.set_moderators;
        rules::may_update(role, owner_fields)?;
        let c = &self.0.config;
        let mut change = RoomChange { lobby: r.lobby, locked: r.locked, ..RoomChange::default() };
        if let Some(name) = &r.name {
            change.name = Some(check_name("update_room.name", name)?);
        }
        if let Some(n) = r.max_participants {
            if n > c.max_participants {
                return Err(ServerError::invalid(
                    "update_room.max_participants",
                    format!("at most {}", c.max_participants),
                ));
            }
            change.max_participants = Some(n);
        }
        if let Some(n) = r.max_publishers {
            if n > c.max_publishers {
                return Err(ServerError::invalid(
                    "update_room.max_publishers",
                    format!("at most {}", c.max_publishers),
                ));
            }
            change.max_publishers = Some(n);
        }
        rules::check_timing(
            "update_room",
            r.empty_timeout_ms.unwrap_or(0),
            r.expires_at_ms.unwrap_or(0),
            now(),
            MAX_AHEAD_MS,
        )?;
        change.empty_timeout_ms = r.empty_timeout_ms;
        change.expires_at_ms = r.expires_at_ms;
        if r.set_moderators {
            change.moderators =
                Some(self.check_moderators("update_room.moderator_ids", room.owner, &r.moderator_ids).await?);
        }
        let updated = self
            .0
            .store
            .update_meeting_room(&room.id, &change)
            .await?
            .ok_or_else(|| ServerError::FailedPrecondition("the room is closed".into()))?;
        self.0.sfu.set_limits(&room.id, self.limits(&updated));
        let ev = event::Event::RoomUpdated(v1::RoomUpdated { room: Some(wire_room(&updated)) });
        self.to_room(&room.id, frame(ev));
        if r.lobby == Some(false) {
            // No lobby any more: whoever waits is admitted.
            let knocks = lock(&self.0.lobbies).get_mut(&room.id).map(|l| std::mem::take(&mut l.knocks));
            for k in knocks.unwrap_or_default() {
                self.decide(&room, k, true, who.user_id());
            }
        }
        Ok(wire_room(&updated))
    }

    /// §25.1: owner only.
    pub async fn close(&self, who: &Principal<'_>, r: v1::CloseRoom) -> Result<(), ServerError> {
        let (room, role) = self.open_room(who, "close_room.room_id", &r.room_id).await?;
        rules::owner_only(role)?;
        self.close_now(&room.id, RoomCloseReason::Closed).await
    }

    async fn close_now(&self, room: &RoomId, reason: RoomCloseReason) -> Result<(), ServerError> {
        if self.0.store.close_meeting_room(room, reason, now()).await? {
            tracing::info!(room = %room, ?reason, "meeting room closed");
        }
        self.close_local(room, reason);
        Ok(())
    }

    /// Ends what this node holds of a closed room: its call, and its lobby (whoever knocks is
    /// told too).
    fn close_local(&self, room: &RoomId, reason: RoomCloseReason) {
        self.0.sfu.close_meeting(room, reason);
        let lobby = lock(&self.0.lobbies).remove(room);
        let ev = frame(event::Event::RoomClosed(v1::RoomClosed { room_id: room.to_string(), reason: reason.into() }));
        for k in lobby.map(|l| l.knocks).unwrap_or_default() {
            self.0.sfu.devices().session(&k.session, ev.clone());
        }
    }

    /// §25.2: moderators and the owner.
    pub async fn create_invite(
        &self,
        who: &Principal<'_>,
        r: v1::CreateRoomInvite,
    ) -> Result<v1::RoomInvite, ServerError> {
        let (room, role) = self.open_room(who, "create_room_invite.room_id", &r.room_id).await?;
        rules::moderator_only(role)?;
        let invite_role = match v1::RoomRole::try_from(r.role) {
            Ok(v1::RoomRole::Guest) => RoomRole::Guest,
            Ok(v1::RoomRole::Speaker) => RoomRole::Speaker,
            Ok(v1::RoomRole::Moderator) => RoomRole::Moderator,
            _ => return Err(ServerError::invalid("create_room_invite.role", "GUEST, SPEAKER or MODERATOR")),
        };
        let now = now();
        let expires = match r.expires_at_ms {
            0 if room.expires_at_ms > now => room.expires_at_ms.min(now + INVITE_MAX_MS),
            0 => now + INVITE_DEFAULT_MS,
            t if t <= now || t > now + INVITE_MAX_MS => {
                return Err(ServerError::invalid(
                    "create_room_invite.expires_at_ms",
                    "in the future, at most 30 days ahead",
                ));
            }
            t => t,
        };
        if r.max_uses > 1_000_000 {
            return Err(ServerError::invalid("create_room_invite.max_uses", "at most 1000000"));
        }
        let invite = InviteRec {
            id: guests::random_hex(8),
            room: room.id.clone(),
            role: invite_role,
            expires_at_ms: expires,
            max_uses: r.max_uses,
            uses: 0,
            created_by: who.user_id_typed(),
            created_at_ms: now,
            revoked_at_ms: None,
        };
        self.0.store.create_room_invite(&invite).await?;
        let token = guests::invite_token(self.0.auth.tokens(), &invite)?;
        Ok(wire_invite(&invite, token))
    }

    /// §25.2: moderators and the owner; tokens are never shown again.
    pub async fn list_invites(
        &self,
        who: &Principal<'_>,
        r: v1::ListRoomInvites,
    ) -> Result<v1::ListRoomInvitesResult, ServerError> {
        let (room, role) = self.room_for(who, "list_room_invites.room_id", &r.room_id).await?;
        rules::moderator_only(role)?;
        let invites = self.0.store.room_invites(&room.id).await?;
        Ok(v1::ListRoomInvitesResult { invites: invites.iter().map(|v| wire_invite(v, String::new())).collect() })
    }

    /// Frames for everyone in the room's call.
    fn to_room(&self, room: &RoomId, frame: Bytes) {
        for s in self.0.sfu.meeting_sessions(room) {
            self.0.sfu.devices().session(&s, frame.clone());
        }
    }

    /// Frames for the room's moderators: the owner's and moderators' devices, and the guests
    /// with a moderator invite in its call.
    fn to_moderators(&self, room: &RoomRec, frame: Bytes) {
        let mut users = room.moderators.clone();
        users.push(room.owner);
        self.0
            .bus
            .publish(DomainEvent::Frames { frames: vec![(Audience::Users(users), frame.clone())], droppable: false });
        let guests: Vec<String> = lock(&self.0.guests)
            .iter()
            .filter(|(_, g)| g.room == room.id && g.role.moderates())
            .map(|(s, _)| s.clone())
            .collect();
        for s in guests {
            self.0.sfu.devices().session(&s, frame.clone());
        }
    }

    /// §25.3: a Hello with a room token: the guest it makes (an invite's use counted, or a
    /// resume token's guest again) and what Welcome tells it.
    pub async fn enter(&self, token: &str, display_name: &str) -> Result<(Guest, v1::GuestInfo), ServerError> {
        guests::enter(self, token, display_name).await
    }

    /// A guest's connection went away for good (after the reconnect grace the SFU handles its
    /// call): it leaves the lobby.
    fn guest_gone(&self, session: &str) {
        let mut gone: Vec<Knock> = Vec::new();
        for l in lock(&self.0.lobbies).values_mut() {
            let (left, keep): (Vec<Knock>, Vec<Knock>) = l.knocks.drain(..).partition(|k| k.session == session);
            l.knocks = keep;
            gone.extend(left);
        }
        if !gone.is_empty() {
            let rooms = self.clone();
            tokio::spawn(async move {
                for k in gone {
                    if let Ok(Some(room)) = rooms.0.store.meeting_room(&k.guest.room).await {
                        rooms.knock_gone(&room, &k);
                    }
                }
            });
        }
        if !self.0.sfu.in_call(session) {
            lock(&self.0.guests).remove(session);
        }
    }

    /// §21: the rooms a deleted account owned close.
    async fn owner_gone(&self, user: UserId) {
        let owned = match self.0.store.meeting_rooms_of(user, false).await {
            Ok(rooms) => rooms.into_iter().filter(|r| r.owner == user).collect::<Vec<_>>(),
            Err(e) => return tracing::warn!(error = %e, "listing a deleted account's meeting rooms"),
        };
        for r in owned {
            if let Err(e) = self.close_now(&r.id, RoomCloseReason::Closed).await {
                tracing::warn!(error = %e, room = %r.id, "closing a deleted account's meeting room");
            }
        }
    }

    async fn sweep_once(&self) {
        let now = now();
        let default_empty = self.0.config.meeting_empty_timeout.as_millis() as u64;
        match self.0.store.meeting_rooms_due(now, default_empty, SWEEP_BATCH).await {
            Ok(due) => {
                for (room, reason) in due {
                    if let Err(e) = self.close_now(&room, reason).await {
                        tracing::warn!(error = %e, room = %room, "closing a meeting room");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "looking for meeting rooms to close"),
        }
        // What this node holds of rooms closed elsewhere (CloseRoom on another node, or its sweep
        // won) ends here too; a call with people in it keeps its room from closing empty.
        let mut local = self.0.sfu.meeting_rooms();
        local.extend(lock(&self.0.lobbies).keys().cloned());
        local.sort();
        local.dedup();
        for room in local {
            match self.0.store.meeting_room(&room).await {
                Ok(Some(r)) if !r.is_open() => {
                    self.close_local(&room, r.close_reason.unwrap_or(RoomCloseReason::Closed))
                }
                Ok(Some(r)) if r.empty_since_ms.is_some() && !self.0.sfu.meeting_sessions(&room).is_empty() => {
                    if let Err(e) = self.0.store.set_meeting_room_empty(&room, None).await {
                        tracing::warn!(error = %e, room = %room, "marking a meeting room in use");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, room = %room, "reading a meeting room"),
            }
        }
        // Guests whose call ended (room closed, removed) and who knock nowhere are forgotten.
        let sfu = self.0.sfu.clone();
        lock(&self.0.guests).retain(|s, _| sfu.in_call(s));
    }
}

fn wire_knock(k: &Knock) -> v1::Knock {
    v1::Knock {
        participant_id: k.guest.guest_id.clone(),
        user_id: 0,
        display_name: k.guest.name.clone(),
        role: k.guest.role.into(),
        since_ms: k.since_ms,
    }
}

fn room_participant(p: v1::Participant) -> v1::RoomParticipant {
    v1::RoomParticipant {
        publishing: !p.tracks.is_empty(),
        participant_id: p.participant_id,
        user_id: p.user_id,
        display_name: p.display_name,
        role: p.role,
        tracks: p.tracks,
    }
}

/// Closes rooms that expired or stayed empty, every `calls.meeting_sweep_interval`; first, rooms
/// a crash left recorded as in use count as empty from now.
async fn sweep(rooms: std::sync::Weak<Inner>) {
    if let Some(inner) = rooms.upgrade()
        && let Err(e) = inner.store.reset_meeting_rooms_in_use(now()).await
    {
        tracing::warn!(error = %e, "resetting meeting rooms left in use");
    }
    let every = rooms.upgrade().map_or(Duration::from_secs(5), |r| r.config.meeting_sweep_interval);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = rooms.upgrade() else { return };
        Rooms(inner).sweep_once().await;
    }
}

/// Rooms follow guests' connections.
impl Subscriber for Rooms {
    fn name(&self) -> &'static str {
        "rooms"
    }

    fn handle(&self, event: &DomainEvent) {
        match event {
            DomainEvent::SessionDetached { caller, remaining: 0, .. } if caller.user_id == UserId(0) => {
                self.guest_gone(&caller.session_id);
            }
            // §21: a deleted account's rooms close (its calls end: the SFU saw it leave).
            DomainEvent::AccountDeleted { user, .. } => {
                let (rooms, user) = (self.clone(), *user);
                tokio::spawn(async move { rooms.owner_gone(user).await });
            }
            _ => {}
        }
    }
}
