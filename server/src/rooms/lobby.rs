//! The lobby and moderation of meeting rooms (docs/protocol.md §25.3–§25.5): JoinCall through
//! the lobby, admitting and denying knocks, removing (and barring) participants, muting their
//! tracks, and revoking invites.

use confab_protocol::v1::{self, event};

use super::{Knock, Rooms, frame, lock, now, rules, wire_knock};
use crate::calls::sfu::Attendee;
use crate::error::ServerError;
use crate::rooms::Principal;
use crate::session::Guest;
use crate::store::{Barred, RoomChange, RoomCloseReason, RoomRec, UserId};

impl Rooms {
    /// §25.2: the invite stops working; guests who came through it leave the room.
    pub async fn revoke_invite(&self, who: &Principal<'_>, r: v1::RevokeRoomInvite) -> Result<(), ServerError> {
        let (room, role) = self.open_room(who, "revoke_room_invite.room_id", &r.room_id).await?;
        rules::moderator_only(role)?;
        if self.0.store.room_invite(&room.id, &r.invite_id).await?.is_none() {
            return Err(ServerError::NotFound("no such invite in this room".into()));
        }
        self.0.store.revoke_room_invite(&room.id, &r.invite_id, now()).await?;
        self.expel(&room, |g| g.invite_id == r.invite_id, RoomCloseReason::Revoked).await;
        Ok(())
    }

    /// Makes every guest of `room` that `pick` selects leave: from the call and from the lobby.
    async fn expel(&self, room: &RoomRec, pick: impl Fn(&Guest) -> bool, reason: RoomCloseReason) {
        let sessions: Vec<String> =
            lock(&self.0.guests).iter().filter(|(_, g)| g.room == room.id && pick(g)).map(|(s, _)| s.clone()).collect();
        for s in sessions {
            if let Some(pid) = self.0.sfu.participant_of(&s) {
                let _ = self.0.sfu.remove_participant(&room.id, pid, reason, false).await;
            }
        }
        let knocks: Vec<Knock> = {
            let mut lobbies = lock(&self.0.lobbies);
            let Some(l) = lobbies.get_mut(&room.id) else { return };
            let (gone, keep): (Vec<Knock>, Vec<Knock>) = l.knocks.drain(..).partition(|k| pick(&k.guest));
            l.knocks = keep;
            let admitted: Vec<String> = l.admitted.iter().cloned().collect();
            let sessions = lock(&self.0.guests);
            for id in admitted {
                let expelled = sessions.values().any(|g| g.guest_id == id && pick(g))
                    || gone.iter().any(|k| k.guest.guest_id == id);
                if expelled {
                    l.admitted.remove(&id);
                }
            }
            gone
        };
        for k in knocks {
            self.unknock(room, &k, reason, false);
        }
    }

    /// A knock ends without an answer: the knocker is told why, the moderators that it is gone
    /// (`LobbyDecision` not admitted, by nobody).
    pub(super) fn unknock(&self, room: &RoomRec, k: &Knock, reason: RoomCloseReason, barred: bool) {
        let ev = v1::ParticipantRemoved {
            room_id: room.id.to_string(),
            participant_id: k.guest.guest_id.clone(),
            reason: reason.into(),
            barred,
        };
        self.0.sfu.devices().session(&k.session, frame(event::Event::ParticipantRemoved(ev)));
        self.knock_gone(room, k);
    }

    /// Tells the moderators a knock is gone without an answer.
    pub(super) fn knock_gone(&self, room: &RoomRec, k: &Knock) {
        let ev = frame(event::Event::LobbyDecision(v1::LobbyDecision {
            room_id: room.id.to_string(),
            participant_id: k.guest.guest_id.clone(),
            admitted: false,
            by_user_id: 0,
        }));
        self.to_moderators(room, ev);
    }

    /// §25.3, §25.4: JoinCall for a meeting room: the lobby, or a seat in the call.
    pub async fn join(
        &self,
        who: &Principal<'_>,
        session: &str,
        r: &v1::JoinCall,
    ) -> Result<v1::JoinCallResult, ServerError> {
        let (room, role) = self.open_room(who, "join_call.room_id", &r.room_id).await?;
        if room.locked && !role.moderates() {
            return Err(ServerError::FailedPrecondition("the room is locked".into()));
        }
        if let Principal::Guest(g) = who
            && room.lobby
            && !role.moderates()
            && !lock(&self.0.lobbies).get(&room.id).is_some_and(|l| l.admitted.contains(&g.guest_id))
        {
            return Ok(self.knock(&room, g, session));
        }
        let name = match who {
            Principal::Guest(g) => g.name.clone(),
            Principal::Account(a) => match self.0.store.user(a.user_id).await? {
                Some(u) if !u.display_name.is_empty() => u.display_name,
                Some(u) => u.username,
                None => String::new(),
            },
        };
        let attendee = Attendee { session: session.to_string(), user: who.user_id(), name, role: Some(role) };
        if let Principal::Guest(g) = who {
            lock(&self.0.guests).insert(session.to_string(), (*g).clone());
        }
        let joined = self.0.sfu.join_meeting(&room.id, attendee, self.limits(&room)).await?;
        // A close that committed while the seat was being made found no call to end: look again.
        if !self.0.store.meeting_room(&room.id).await?.is_some_and(|r| r.is_open()) {
            self.0.sfu.close_meeting(&room.id, RoomCloseReason::Closed);
            return Err(ServerError::FailedPrecondition("the room is closed".into()));
        }
        Ok(joined)
    }

    /// §25.4: `g` waits in the lobby; the room's moderators are told.
    fn knock(&self, room: &RoomRec, g: &Guest, session: &str) -> v1::JoinCallResult {
        let k = Knock { guest: g.clone(), session: session.to_string(), since_ms: now() };
        let fresh = {
            let mut lobbies = lock(&self.0.lobbies);
            let l = lobbies.entry(room.id.clone()).or_default();
            match l.knocks.iter_mut().find(|x| x.guest.guest_id == g.guest_id) {
                Some(x) => {
                    x.session = session.to_string();
                    false
                }
                None => {
                    l.knocks.push(k.clone());
                    true
                }
            }
        };
        if fresh {
            let ev = frame(event::Event::RoomKnock(v1::RoomKnock {
                room_id: room.id.to_string(),
                knock: Some(wire_knock(&k)),
            }));
            self.to_moderators(room, ev);
        }
        v1::JoinCallResult {
            participant_id: g.guest_id.clone(),
            participants: Vec::new(),
            ice_servers: Vec::new(),
            in_lobby: true,
        }
    }

    /// §25.4: moderators admit or deny a knock.
    pub async fn answer_knock(&self, who: &Principal<'_>, r: v1::AnswerKnock) -> Result<(), ServerError> {
        let (room, role) = self.open_room(who, "answer_knock.room_id", &r.room_id).await?;
        rules::moderator_only(role)?;
        let knock = {
            let mut lobbies = lock(&self.0.lobbies);
            let l =
                lobbies.get_mut(&room.id).ok_or_else(|| ServerError::NotFound("nobody knocks by that id".into()))?;
            let i = l
                .knocks
                .iter()
                .position(|k| k.guest.guest_id == r.participant_id)
                .ok_or_else(|| ServerError::NotFound("nobody knocks by that id".into()))?;
            l.knocks.remove(i)
        };
        self.decide(&room, knock, r.admit, who.user_id());
        Ok(())
    }

    pub(super) fn decide(&self, room: &RoomRec, k: Knock, admit: bool, by: u64) {
        if admit {
            lock(&self.0.lobbies).entry(room.id.clone()).or_default().admitted.insert(k.guest.guest_id.clone());
        }
        let ev = frame(event::Event::LobbyDecision(v1::LobbyDecision {
            room_id: room.id.to_string(),
            participant_id: k.guest.guest_id.clone(),
            admitted: admit,
            by_user_id: by,
        }));
        self.0.sfu.devices().session(&k.session, ev.clone());
        self.to_moderators(room, ev);
    }

    /// §25.5: moderators make a participant leave, optionally barring them.
    pub async fn remove(&self, who: &Principal<'_>, r: v1::RemoveParticipant) -> Result<(), ServerError> {
        let (room, role) = self.open_room(who, "remove_participant.room_id", &r.room_id).await?;
        rules::moderator_only(role)?;
        let Some(target_session) = self.0.sfu.participant_session(&r.participant_id) else {
            return self.remove_knock(&room, &r).await;
        };
        let guest = lock(&self.0.guests).get(&target_session).cloned();
        if guest.is_none() && target_session.starts_with("guest-") {
            return Err(ServerError::Unavailable("that guest is still taking its seat; retry".into()));
        }
        let target_user = self.0.sfu.participant_user(&r.participant_id).map(|u| UserId(u as i64));
        rules::may_remove(role, target_user, room.owner)?;
        let (_, user) =
            self.0.sfu.remove_participant(&room.id, r.participant_id.clone(), RoomCloseReason::Removed, r.bar).await?;
        if let Some(g) = &guest
            && let Some(l) = lock(&self.0.lobbies).get_mut(&room.id)
        {
            l.admitted.remove(&g.guest_id);
        }
        if r.bar {
            let now = now();
            match guest {
                Some(g) => {
                    self.0.store.bar_from_room(&room.id, &Barred::Guest(g.guest_id.clone()), now).await?;
                    self.0.store.bar_from_room(&room.id, &Barred::Invite(g.invite_id.clone()), now).await?;
                }
                None if user != 0 => {
                    let user = UserId(user as i64);
                    self.0.store.bar_from_room(&room.id, &Barred::User(user), now).await?;
                    // A barred moderator moderates no more.
                    if room.moderators.contains(&user) {
                        let moderators = room.moderators.iter().copied().filter(|m| *m != user).collect();
                        let change = RoomChange { moderators: Some(moderators), ..RoomChange::default() };
                        self.0.store.update_meeting_room(&room.id, &change).await?;
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    /// RemoveParticipant naming someone in the lobby (by its guest id): the knock ends, and with
    /// `bar` the guest and its invite are barred.
    async fn remove_knock(&self, room: &RoomRec, r: &v1::RemoveParticipant) -> Result<(), ServerError> {
        let knock = {
            let mut lobbies = lock(&self.0.lobbies);
            let l = lobbies.get_mut(&room.id);
            let i = l.as_ref().and_then(|l| l.knocks.iter().position(|k| k.guest.guest_id == r.participant_id));
            match (l, i) {
                (Some(l), Some(i)) => {
                    l.admitted.remove(&r.participant_id);
                    l.knocks.remove(i)
                }
                _ => return Err(ServerError::NotFound("no such participant in this room".into())),
            }
        };
        if r.bar {
            let now = now();
            self.0.store.bar_from_room(&room.id, &Barred::Guest(knock.guest.guest_id.clone()), now).await?;
            self.0.store.bar_from_room(&room.id, &Barred::Invite(knock.guest.invite_id.clone()), now).await?;
        }
        self.unknock(room, &knock, RoomCloseReason::Removed, r.bar);
        Ok(())
    }

    /// §25.5: moderators mute a participant's track(s).
    pub async fn mute(&self, who: &Principal<'_>, r: v1::MuteParticipant) -> Result<(), ServerError> {
        let (room, role) = self.open_room(who, "mute_participant.room_id", &r.room_id).await?;
        rules::moderator_only(role)?;
        self.0.sfu.hold_track(&room.id, r.participant_id, r.track_id, who.user_id()).await
    }
}
