//! The peer-to-peer call state machine (docs/protocol.md §20.2), as pure transitions: each takes
//! the registry under its lock, changes it, and returns what must happen next (events to send,
//! the log record of an ended call). No I/O here and no lock held across an await.

use std::collections::{HashMap, HashSet};

use confab_protocol::v1::{self, CallOutcome, HangupReason, event};

use crate::error::ServerError;
use crate::hub::Audience;
use crate::store::{CallRecord, ConvId, UserId};

/// One device taking part: its user, its session, and the opaque id others address it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    pub user: UserId,
    pub session: String,
    pub party_id: String,
}

#[derive(Clone, Debug)]
enum Phase {
    Ringing,
    Active { callee: Party, answered_at_ms: i64 },
}

#[derive(Clone, Debug)]
struct Call {
    conversation: ConvId,
    media: i32,
    caller: Party,
    callees: Vec<UserId>,
    rejected: HashSet<UserId>,
    phase: Phase,
}

/// A call that ended: what the conversation log keeps, and who missed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub conversation: ConvId,
    pub caller: UserId,
    pub record: CallRecord,
    pub missed_by: Vec<UserId>,
}

/// What a transition asks the service to do.
#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<(Audience, event::Event)>,
    pub ended: Option<Ended>,
}

/// Every call in progress on this node.
#[derive(Debug, Default)]
pub struct Registry {
    calls: HashMap<String, Call>,
    by_conversation: HashMap<ConvId, String>,
    /// Sessions taking part (the caller's, and the callee's once accepted) → call id.
    by_session: HashMap<String, String>,
}

fn not_found() -> ServerError {
    ServerError::NotFound("no such call".into())
}

fn wrong_device() -> ServerError {
    ServerError::PermissionDenied("only the device taking part in the call may do this".into())
}

impl Registry {
    /// §20.2.1: a new ringing call. `callees` are the members to ring (not empty).
    pub fn start(
        &mut self,
        call_id: &str,
        conversation: ConvId,
        media: i32,
        caller: Party,
        callees: Vec<UserId>,
        ring_deadline_ms: i64,
    ) -> Result<Effects, ServerError> {
        if self.by_session.contains_key(&caller.session) {
            return Err(ServerError::FailedPrecondition("this device is already in a call".into()));
        }
        if self.by_conversation.contains_key(&conversation) {
            return Err(ServerError::FailedPrecondition("a call is already ringing or going on here".into()));
        }
        let invite = event::Event::CallInvite(v1::CallInvite {
            call_id: call_id.to_string(),
            conversation_id: crate::wire::conv(conversation),
            caller_id: crate::wire::user(caller.user),
            media,
            ring_deadline_ms: ring_deadline_ms.max(0) as u64,
        });
        self.by_conversation.insert(conversation, call_id.to_string());
        self.by_session.insert(caller.session.clone(), call_id.to_string());
        let to = Audience::Users(callees.clone());
        let call = Call { conversation, media, caller, callees, rejected: HashSet::new(), phase: Phase::Ringing };
        self.calls.insert(call_id.to_string(), call);
        Ok(Effects { events: vec![(to, invite)], ended: None })
    }

    fn call_of(&self, call_id: &str, user: UserId) -> Result<&Call, ServerError> {
        match self.calls.get(call_id) {
            Some(c) if c.caller.user == user || c.callees.contains(&user) => Ok(c),
            _ => Err(not_found()),
        }
    }

    /// §20.2.2: a callee's device rings.
    pub fn ring(&self, call_id: &str, user: UserId) -> Result<Effects, ServerError> {
        let c = self.call_of(call_id, user)?;
        if !c.callees.contains(&user) || !matches!(c.phase, Phase::Ringing) {
            return Err(ServerError::FailedPrecondition("the call is not ringing for you".into()));
        }
        let ev = event::Event::CallRinging(v1::CallRinging {
            call_id: call_id.to_string(),
            user_id: crate::wire::user(user),
        });
        Ok(Effects { events: vec![(Audience::Session(c.caller.session.clone()), ev)], ended: None })
    }

    /// §20.2.3: the first accept wins; returns the caller's party id.
    pub fn accept(&mut self, call_id: &str, callee: Party, now_ms: i64) -> Result<(String, Effects), ServerError> {
        let c = self.call_of(call_id, callee.user)?;
        if !c.callees.contains(&callee.user) {
            return Err(ServerError::FailedPrecondition("you started this call".into()));
        }
        match c.phase {
            Phase::Active { .. } => {
                return Err(ServerError::FailedPrecondition("the call was answered elsewhere".into()));
            }
            Phase::Ringing if c.rejected.contains(&callee.user) => {
                return Err(ServerError::FailedPrecondition("you declined this call".into()));
            }
            Phase::Ringing => {}
        }
        if self.by_session.contains_key(&callee.session) {
            return Err(ServerError::FailedPrecondition("this device is already in a call".into()));
        }
        let c = self.calls.get_mut(call_id).ok_or_else(not_found)?;
        let accepted = event::Event::CallAccepted(v1::CallAccepted {
            call_id: call_id.to_string(),
            user_id: crate::wire::user(callee.user),
            party_id: callee.party_id.clone(),
        });
        let elsewhere = event::Event::CallAnsweredElsewhere(v1::CallAnsweredElsewhere { call_id: call_id.to_string() });
        let events = vec![
            (Audience::Session(c.caller.session.clone()), accepted),
            (Audience::UsersExcept(c.callees.clone(), callee.session.clone()), elsewhere),
        ];
        let caller_party = c.caller.party_id.clone();
        self.by_session.insert(callee.session.clone(), call_id.to_string());
        c.phase = Phase::Active { callee, answered_at_ms: now_ms };
        Ok((caller_party, Effects { events, ended: None }))
    }

    /// §20.2.4: a callee declines; the call ends once every callee has.
    pub fn reject(
        &mut self,
        call_id: &str,
        user: UserId,
        reason: HangupReason,
        now_ms: i64,
    ) -> Result<Effects, ServerError> {
        let c = self.call_of(call_id, user)?;
        if !c.callees.contains(&user) || !matches!(c.phase, Phase::Ringing) {
            return Err(ServerError::FailedPrecondition("the call is not ringing for you".into()));
        }
        let reason = if reason == HangupReason::Busy { HangupReason::Busy } else { HangupReason::Rejected };
        let c = self.calls.get_mut(call_id).ok_or_else(not_found)?;
        c.rejected.insert(user);
        if c.callees.iter().all(|u| c.rejected.contains(u)) {
            return Ok(self.end(call_id, reason, user, now_ms));
        }
        // The call rings on for others; this user's devices stop ringing.
        let ended = event::Event::CallEnded(v1::CallEnded {
            call_id: call_id.to_string(),
            reason: reason as i32,
            by_user_id: crate::wire::user(user),
        });
        Ok(Effects { events: vec![(Audience::Users(vec![user]), ended)], ended: None })
    }

    /// §20.2.5: the caller cancels a ringing call, or a party ends an accepted one.
    pub fn hangup(
        &mut self,
        call_id: &str,
        user: UserId,
        session: &str,
        reason: HangupReason,
        now_ms: i64,
    ) -> Result<Effects, ServerError> {
        let c = self.call_of(call_id, user)?;
        match &c.phase {
            Phase::Ringing if c.caller.user != user => self.reject(call_id, user, reason, now_ms),
            Phase::Ringing if c.caller.session != session => Err(wrong_device()),
            Phase::Ringing => {
                let reason = if reason == HangupReason::Unspecified { HangupReason::Cancelled } else { reason };
                Ok(self.end(call_id, reason, user, now_ms))
            }
            Phase::Active { callee, .. } => {
                if c.caller.session != session && callee.session != session {
                    return Err(wrong_device());
                }
                let reason = if reason == HangupReason::Unspecified { HangupReason::UserHangup } else { reason };
                Ok(self.end(call_id, reason, user, now_ms))
            }
        }
    }

    /// §20.2.6: a signal from one party's device to the other's; returns where it goes.
    pub fn signal(&self, call_id: &str, user: UserId, session: &str) -> Result<(String, String), ServerError> {
        let c = self.call_of(call_id, user)?;
        let Phase::Active { callee, .. } = &c.phase else {
            return Err(ServerError::FailedPrecondition("signals flow once the call is accepted".into()));
        };
        if c.caller.session == session {
            Ok((c.caller.party_id.clone(), callee.session.clone()))
        } else if callee.session == session {
            Ok((callee.party_id.clone(), c.caller.session.clone()))
        } else {
            Err(wrong_device())
        }
    }

    /// The ringing lifetime ran out: a missed call (no-op once answered or ended).
    pub fn expire(&mut self, call_id: &str, now_ms: i64) -> Effects {
        match self.calls.get(call_id) {
            Some(c) if matches!(c.phase, Phase::Ringing) => {
                self.end(call_id, HangupReason::InviteTimeout, UserId::default(), now_ms)
            }
            _ => Effects::default(),
        }
    }

    /// A session lost its last connection for longer than the grace period.
    pub fn session_lost(&mut self, session: &str, now_ms: i64) -> Effects {
        match self.by_session.get(session).cloned() {
            Some(id) => self.end(&id, HangupReason::ConnectionLost, UserId::default(), now_ms),
            None => Effects::default(),
        }
    }

    /// `user` stopped being a member of `conversation` (left, removed, account deleted): a call
    /// they started ends for everyone (CANCELLED while ringing, USER_HANGUP once answered), an
    /// answered call they take part in ends, and a call ringing them stops ringing them
    /// (CallEnded CANCELLED to their devices; the call ends when nobody is left to answer). They
    /// never appear in the call's record.
    pub fn member_gone(&mut self, conversation: ConvId, user: UserId, now_ms: i64) -> Effects {
        let Some(call_id) = self.by_conversation.get(&conversation).cloned() else { return Effects::default() };
        let Some(c) = self.calls.get_mut(&call_id) else { return Effects::default() };
        let party = match &c.phase {
            Phase::Ringing => c.caller.user == user,
            Phase::Active { callee, .. } => c.caller.user == user || callee.user == user,
        };
        if party {
            let reason =
                if matches!(c.phase, Phase::Ringing) { HangupReason::Cancelled } else { HangupReason::UserHangup };
            return self.end(&call_id, reason, user, now_ms);
        }
        self.stop_ringing(&call_id, user, now_ms)
    }

    /// A ringing call stops ringing `user` (CallEnded CANCELLED to their devices); the call ends
    /// when nobody is left to answer. No-op unless the call rings `user`.
    fn stop_ringing(&mut self, call_id: &str, user: UserId, now_ms: i64) -> Effects {
        let Some(c) = self.calls.get_mut(call_id) else { return Effects::default() };
        if !matches!(c.phase, Phase::Ringing) || !c.callees.contains(&user) {
            return Effects::default();
        }
        let call_id = call_id.to_string();
        c.callees.retain(|u| *u != user);
        c.rejected.remove(&user);
        let nobody_left = c.callees.is_empty();
        let all_declined = !nobody_left && c.callees.iter().all(|u| c.rejected.contains(u));
        let stop = event::Event::CallEnded(v1::CallEnded {
            call_id: call_id.clone(),
            reason: HangupReason::Cancelled as i32,
            by_user_id: 0,
        });
        let mut fx = Effects { events: vec![(Audience::Users(vec![user]), stop)], ended: None };
        if nobody_left || all_declined {
            let reason = if nobody_left { HangupReason::Cancelled } else { HangupReason::Rejected };
            let ended = self.end(&call_id, reason, UserId::default(), now_ms);
            fx.events.extend(ended.events);
            fx.ended = ended.ended;
        }
        fx
    }

    /// `blocker` blocked `blocked` (§18, §21): calls `blocked` placed stop ringing `blocker`.
    pub fn blocked(&mut self, blocker: UserId, blocked: UserId, now_ms: i64) -> Vec<Effects> {
        let ids: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.caller.user == blocked && c.callees.contains(&blocker))
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter().map(|id| self.stop_ringing(&id, blocker, now_ms)).collect()
    }

    /// `user`'s account was deleted: every call they start, take part in or are rung for ends
    /// for them as in [`member_gone`](Self::member_gone); one `Effects` per call.
    pub fn user_gone(&mut self, user: UserId, now_ms: i64) -> Vec<Effects> {
        let convs: Vec<ConvId> = self
            .calls
            .values()
            .filter(|c| {
                c.caller.user == user
                    || c.callees.contains(&user)
                    || matches!(&c.phase, Phase::Active { callee, .. } if callee.user == user)
            })
            .map(|c| c.conversation)
            .collect();
        convs.into_iter().map(|conv| self.member_gone(conv, user, now_ms)).collect()
    }

    /// Whether `session` takes part in a call.
    pub fn in_call(&self, session: &str) -> bool {
        self.by_session.contains_key(session)
    }

    /// Ends a call: everyone who rang or took part hears it; the log gets the record.
    fn end(&mut self, call_id: &str, reason: HangupReason, by: UserId, now_ms: i64) -> Effects {
        let Some(c) = self.calls.remove(call_id) else { return Effects::default() };
        self.by_conversation.remove(&c.conversation);
        self.by_session.remove(&c.caller.session);
        let (outcome, duration_ms, answered_by) = match &c.phase {
            Phase::Active { callee, answered_at_ms } => {
                self.by_session.remove(&callee.session);
                (CallOutcome::Answered, (now_ms - answered_at_ms).max(0), callee.user)
            }
            Phase::Ringing => match reason {
                HangupReason::InviteTimeout => (CallOutcome::Missed, 0, UserId::default()),
                HangupReason::Rejected | HangupReason::Busy => (CallOutcome::Rejected, 0, UserId::default()),
                _ => (CallOutcome::Cancelled, 0, UserId::default()),
            },
        };
        let missed_by = if outcome == CallOutcome::Missed {
            c.callees.iter().copied().filter(|u| !c.rejected.contains(u)).collect()
        } else {
            Vec::new()
        };
        let mut everyone = c.callees.clone();
        everyone.push(c.caller.user);
        let ev = event::Event::CallEnded(v1::CallEnded {
            call_id: call_id.to_string(),
            reason: reason as i32,
            by_user_id: crate::wire::user(by),
        });
        Effects {
            events: vec![(Audience::Users(everyone), ev)],
            ended: Some(Ended {
                conversation: c.conversation,
                caller: c.caller.user,
                record: CallRecord {
                    call_id: call_id.to_string(),
                    media: c.media,
                    outcome: outcome as i32,
                    duration_ms,
                    answered_by,
                },
                missed_by,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(user: UserId, session: &str) -> Party {
        Party { user, session: session.into(), party_id: format!("p-{session}") }
    }

    fn ringing(r: &mut Registry, callees: Vec<UserId>) {
        r.start("c1", ConvId(10), 1, party(UserId(1), "s1"), callees, 45_000).expect("start");
    }

    #[test]
    fn first_accept_wins_and_others_stop_ringing() {
        let mut r = Registry::default();
        ringing(&mut r, vec![UserId(2)]);
        let (caller_party, fx) = r.accept("c1", party(UserId(2), "s2a"), 1000).expect("accept");
        assert_eq!(caller_party, "p-s1");
        assert_eq!(fx.events[0].0, Audience::Session("s1".into()));
        assert_eq!(fx.events[1].0, Audience::UsersExcept(vec![UserId(2)], "s2a".into()));
        let again = r.accept("c1", party(UserId(2), "s2b"), 1001).expect_err("second accept");
        assert!(matches!(again, ServerError::FailedPrecondition(_)));
        assert_eq!(r.signal("c1", UserId(2), "s2a").expect("party"), ("p-s2a".into(), "s1".into()));
        assert!(matches!(r.signal("c1", UserId(2), "s2b"), Err(ServerError::PermissionDenied(_))));
        assert!(matches!(r.signal("c1", UserId(3), "s3"), Err(ServerError::NotFound(_))));
        let fx = r.hangup("c1", UserId(1), "s1", HangupReason::Unspecified, 4000).expect("hangup");
        let ended = fx.ended.expect("ended");
        assert_eq!(ended.record.outcome, CallOutcome::Answered as i32);
        assert_eq!(ended.record.duration_ms, 3000);
        assert_eq!(ended.record.answered_by, UserId(2));
        assert!(!r.in_call("s1") && !r.in_call("s2a"));
    }

    #[test]
    fn timeout_is_missed_for_those_who_did_not_decline() {
        let mut r = Registry::default();
        ringing(&mut r, vec![UserId(2), UserId(3)]);
        let fx = r.reject("c1", UserId(2), HangupReason::Unspecified, 10).expect("reject");
        assert!(fx.ended.is_none(), "3 still rings");
        let fx = r.expire("c1", 45_000);
        let ended = fx.ended.expect("ended");
        assert_eq!(ended.record.outcome, CallOutcome::Missed as i32);
        assert_eq!(ended.missed_by, vec![UserId(3)]);
        assert!(r.expire("c1", 45_001).ended.is_none(), "expiry is a no-op once ended");
    }

    #[test]
    fn everyone_declining_ends_the_call() {
        let mut r = Registry::default();
        ringing(&mut r, vec![UserId(2)]);
        let fx = r.reject("c1", UserId(2), HangupReason::Busy, 10).expect("reject");
        let ended = fx.ended.expect("ended");
        assert_eq!(ended.record.outcome, CallOutcome::Rejected as i32);
        match &fx.events[0].1 {
            event::Event::CallEnded(e) => assert_eq!(e.reason, HangupReason::Busy as i32),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_call_per_device_and_per_conversation() {
        let mut r = Registry::default();
        ringing(&mut r, vec![UserId(2)]);
        assert!(
            r.start("c2", ConvId(11), 1, party(UserId(1), "s1"), vec![UserId(3)], 0).is_err(),
            "caller device busy"
        );
        assert!(r.start("c3", ConvId(10), 1, party(UserId(4), "s4"), vec![UserId(1)], 0).is_err(), "conversation busy");
        let fx = r.hangup("c1", UserId(1), "s1", HangupReason::Unspecified, 5).expect("cancel");
        assert_eq!(fx.ended.expect("ended").record.outcome, CallOutcome::Cancelled as i32);
        r.start("c4", ConvId(10), 1, party(UserId(1), "s1"), vec![UserId(2)], 0).expect("free again");
    }

    #[test]
    fn a_callee_who_leaves_stops_ringing_and_cannot_answer() {
        let mut r = Registry::default();
        ringing(&mut r, vec![UserId(2), UserId(3)]);
        let fx = r.member_gone(ConvId(10), UserId(2), 5);
        assert!(fx.ended.is_none(), "3 still rings");
        assert_eq!(fx.events.len(), 1);
        assert_eq!(fx.events[0].0, Audience::Users(vec![UserId(2)]));
        assert!(matches!(&fx.events[0].1, event::Event::CallEnded(e) if e.reason == HangupReason::Cancelled as i32));
        assert!(matches!(r.accept("c1", party(UserId(2), "s2"), 6), Err(ServerError::NotFound(_))), "no longer rung");
        let fx = r.member_gone(ConvId(10), UserId(3), 7);
        let ended = fx.ended.expect("nobody left to answer");
        assert_eq!(ended.record.outcome, CallOutcome::Cancelled as i32);
        assert!(ended.missed_by.is_empty());
        assert!(!r.in_call("s1"));
    }

    #[test]
    fn the_last_undeclined_callee_leaving_ends_the_call_as_rejected() {
        let mut r = Registry::default();
        ringing(&mut r, vec![UserId(2), UserId(3)]);
        r.reject("c1", UserId(2), HangupReason::Unspecified, 1).expect("reject");
        let fx = r.member_gone(ConvId(10), UserId(3), 2);
        assert_eq!(fx.ended.expect("ended").record.outcome, CallOutcome::Rejected as i32);
    }

    #[test]
    fn a_caller_or_party_who_leaves_ends_the_call() {
        let mut r = Registry::default();
        ringing(&mut r, vec![UserId(2)]);
        let fx = r.member_gone(ConvId(10), UserId(1), 5);
        assert_eq!(fx.ended.expect("ended").record.outcome, CallOutcome::Cancelled as i32);
        assert!(r.accept("c1", party(UserId(2), "s2"), 6).is_err());

        ringing(&mut r, vec![UserId(2)]);
        r.accept("c1", party(UserId(2), "s2"), 10).expect("accept");
        let fx = r.member_gone(ConvId(10), UserId(2), 30);
        let ended = fx.ended.expect("ended");
        assert_eq!(ended.record.outcome, CallOutcome::Answered as i32);
        assert!(matches!(&fx.events[0].1, event::Event::CallEnded(e) if e.reason == HangupReason::UserHangup as i32));
        assert!(!r.in_call("s1") && !r.in_call("s2"));
        assert!(r.member_gone(ConvId(10), UserId(2), 31).events.is_empty(), "nothing left to end");
    }

    #[test]
    fn a_block_stops_the_blockers_ringing() {
        let mut r = Registry::default();
        ringing(&mut r, vec![UserId(2), UserId(3)]);
        let fx = r.blocked(UserId(2), UserId(1), 5);
        assert_eq!(fx.len(), 1);
        assert_eq!(fx[0].events[0].0, Audience::Users(vec![UserId(2)]));
        assert!(r.accept("c1", party(UserId(2), "s2"), 6).is_err(), "the blocker is no longer rung");
        assert!(r.blocked(UserId(3), UserId(9), 7).is_empty(), "not a call of the blocked user");
        r.accept("c1", party(UserId(3), "s3"), 8).expect("3 still can answer");
    }

    #[test]
    fn a_deleted_account_ends_every_call_it_is_in() {
        let mut r = Registry::default();
        r.start("a", ConvId(10), 1, party(UserId(1), "s1"), vec![UserId(2)], 0).expect("start");
        r.start("b", ConvId(11), 1, party(UserId(3), "s3"), vec![UserId(1), UserId(4)], 0).expect("start");
        let fx = r.user_gone(UserId(1), 5);
        assert_eq!(fx.len(), 2);
        assert!(!r.in_call("s1"));
        assert!(r.accept("b", party(UserId(1), "s1b"), 6).is_err(), "1 no longer rung");
        r.accept("b", party(UserId(4), "s4"), 7).expect("4 still can answer");
    }

    #[test]
    fn losing_a_party_ends_the_call() {
        let mut r = Registry::default();
        ringing(&mut r, vec![UserId(2)]);
        r.accept("c1", party(UserId(2), "s2"), 0).expect("accept");
        let fx = r.session_lost("s2", 100);
        match &fx.events[0].1 {
            event::Event::CallEnded(e) => assert_eq!(e.reason, HangupReason::ConnectionLost as i32),
            other => panic!("{other:?}"),
        }
        assert!(r.session_lost("s2", 200).ended.is_none());
    }
}
