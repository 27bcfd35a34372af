//! The participants seated in this node's rooms, indexed both ways (by participant id and by
//! session), so neither lookup scans every participant.

use std::collections::HashMap;

/// The participants seated on this node: participant id → (session, user; 0 for a guest), and
/// session → participant id (a session holds at most one seat). Changed only through `seat` and
/// `unseat`, so the two maps agree.
#[derive(Default)]
pub(super) struct Seats {
    by_pid: HashMap<String, (String, u64)>,
    by_session: HashMap<String, String>,
}

impl Seats {
    /// Seats participant `pid` for `session` (of `user`); a seat of the same id moves.
    pub(super) fn seat(&mut self, pid: &str, session: &str, user: u64) {
        if let Some((old, _)) = self.by_pid.insert(pid.to_string(), (session.to_string(), user)) {
            self.by_session.remove(&old);
        }
        self.by_session.insert(session.to_string(), pid.to_string());
    }

    /// Frees participant `pid`'s seat (nothing when it has none).
    pub(super) fn unseat(&mut self, pid: &str) {
        if let Some((session, _)) = self.by_pid.remove(pid)
            && self.by_session.get(&session).is_some_and(|p| p == pid)
        {
            self.by_session.remove(&session);
        }
    }

    /// Participant `pid`'s session and user (0 for a guest).
    pub(super) fn of_pid(&self, pid: &str) -> Option<&(String, u64)> {
        self.by_pid.get(pid)
    }

    /// The participant id of `session`'s seat.
    pub(super) fn of_session(&self, session: &str) -> Option<&String> {
        self.by_session.get(session)
    }
}

#[cfg(test)]
mod tests {
    use super::Seats;

    #[test]
    fn both_indexes_follow_seat_and_unseat() {
        let mut s = Seats::default();
        s.seat("p1", "s1", 7);
        s.seat("p2", "guest-9", 0);
        assert_eq!(s.by_session.get("s1").map(String::as_str), Some("p1"));
        assert_eq!(s.by_pid.get("p2"), Some(&("guest-9".to_string(), 0)));
        // The same participant id seated again (a new session) drops the old session's entry.
        s.seat("p1", "s3", 7);
        assert!(!s.by_session.contains_key("s1"));
        assert_eq!(s.by_session.get("s3").map(String::as_str), Some("p1"));
        s.unseat("p1");
        s.unseat("p1");
        assert!(!s.by_pid.contains_key("p1") && !s.by_session.contains_key("s3"));
        assert_eq!(s.by_session.len(), 1);
        assert_eq!(s.by_pid.len(), 1);
    }
}
