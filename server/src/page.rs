//! Named results the services return instead of tuples: a slice of a list with whether more
//! follows, the one rule for page sizes, and a sent message.

use crate::store::{MessageId, UserId};

/// A page size as requested: 0 means `default`, anything above `max` is `max`.
pub fn page_limit(requested: u32, default: u32, max: u32) -> u32 {
    match requested {
        0 => default,
        n => n.min(max),
    }
}

/// Part of a list, and whether more follows it (the store is asked for `limit + 1` rows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

impl<T> Slice<T> {
    /// Cuts a store answer fetched with `limit + 1` rows down to `limit`.
    pub fn cut(mut items: Vec<T>, limit: u32) -> Self {
        let has_more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Self { items, has_more }
    }
}

/// A message the batched writer accepted (docs/protocol.md §13.2): ids and time in the units of
/// the log (milliseconds since the Unix epoch); `duplicate` when the idempotency key was known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub message_id: MessageId,
    pub seq: i64,
    pub created_at_ms: i64,
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cuts() {
        assert_eq!(page_limit(0, 50, 100), 50);
        assert_eq!(page_limit(7, 50, 100), 7);
        assert_eq!(page_limit(1000, 50, 100), 100);
        assert_eq!(Slice::cut(vec![1, 2, 3], 2), Slice { items: vec![1, 2], has_more: true });
        assert_eq!(Slice::cut(vec![1, 2], 2), Slice { items: vec![1, 2], has_more: false });
    }
}

/// How far a member got with a message (§15.2; same numbers as the wire's `ReceiptState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReceiptState {
    /// Neither delivered to nor read by the member yet.
    Sent = 1,
    /// Delivered to one of the member's devices.
    Delivered = 2,
    /// Read (shown only when the member shares read receipts).
    Read = 3,
}

/// One member's receipt for a message (GetReceipts, §15.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub user_id: UserId,
    pub state: ReceiptState,
}
