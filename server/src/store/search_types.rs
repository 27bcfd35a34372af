//! Domain types of message search (docs/protocol.md §23): what a search asks the store, what it
//! finds, the documents the indexer writes and how far it has read each conversation's log.

use super::conv_types::{ConvId, MessageId};
use super::types::UserId;

/// What a message's folded text (`crate::search::normalize`) must contain. Needles are folded
/// words separated by single spaces, never empty, without spaces at the ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// The text contains the needle, inside a word or not.
    Contains(String),
    Not(Box<Match>),
    /// At least one of them (`a OR b`).
    Any(Vec<Match>),
    /// All of them.
    All(Vec<Match>),
}

impl Match {
    /// Whether `folded` (a folded text, spaces at the ends) matches: the same rule the stores'
    /// SQL applies, for checking a hit against a message's current text.
    pub fn matches(&self, folded: &str) -> bool {
        match self {
            Self::Contains(n) => folded.contains(n.as_str()),
            Self::Not(m) => !m.matches(folded),
            Self::Any(ms) => ms.iter().any(|m| m.matches(folded)),
            Self::All(ms) => ms.iter().all(|m| m.matches(folded)),
        }
    }
}

/// The order of hits (wire `SearchOrder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchOrder {
    /// By `(sent_at_ms, message_id)`, descending.
    Newest,
    /// By how many of the query's needles match as whole words, then as `Newest`.
    Relevance,
}

/// Whether hits must carry attachments (wire `AttachmentFilter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachmentFilter {
    Either,
    With,
    Without,
}

/// Where a hit sits in its order; a page starts strictly after one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchKey {
    /// Whole-word matches (0 in `Newest` order).
    pub score: i64,
    pub sent_at_ms: i64,
    pub message_id: MessageId,
}

/// What the index's documents hold, and so what a search's needles are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IndexKind {
    /// Folded text: needles are folded words.
    #[default]
    Folded,
    /// Blind tokens (encryption at rest, `crypto::blind`): needles are runs of tokens.
    Blind,
}

/// One search, checked and folded by the search service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchSpec {
    pub user: UserId,
    /// What the needles are.
    pub index: IndexKind,
    /// `None`: every message the filters let through.
    pub matching: Option<Match>,
    /// Needles counted as whole words for `Relevance` (blind: the tokens of the word with the
    /// spaces around it).
    pub scored: Vec<String>,
    /// Only these conversations (the caller's, already narrowed to the request's); never empty.
    pub conversations: Vec<ConvId>,
    /// Only these senders (empty: anyone).
    pub senders: Vec<UserId>,
    /// `sent_at_ms >= after` and `< before`.
    pub sent_after_ms: Option<i64>,
    pub sent_before_ms: Option<i64>,
    pub attachments: AttachmentFilter,
    pub order: SearchOrder,
    /// Start strictly after this position.
    pub after: Option<SearchKey>,
    pub limit: u32,
}

/// A message the store found, in the spec's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub conversation: ConvId,
    pub key: SearchKey,
}

/// One stretch of a conversation a user may search: messages with `from_seq < seq <= until_seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub conversation: ConvId,
    pub from_seq: i64,
    /// `None`: still a member.
    pub until_seq: Option<i64>,
}

/// How far the index has read a conversation's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexProgress {
    pub conversation: ConvId,
    pub indexed_seq: i64,
    pub head_seq: i64,
}

/// A user's searchable spans with the index's progress in their conversations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchScope {
    pub spans: Vec<Span>,
    pub progress: Vec<IndexProgress>,
}

impl SearchScope {
    /// The conversations whose index stops before the part the user may search ends, with
    /// `head_seq` capped at that end: a former member learns nothing of what came after.
    pub fn lagging(&self) -> Vec<IndexProgress> {
        self.progress
            .iter()
            .filter_map(|p| {
                let end = self
                    .spans
                    .iter()
                    .filter(|s| s.conversation == p.conversation)
                    .map(|s| s.until_seq.unwrap_or(p.head_seq).min(p.head_seq))
                    .max()
                    .unwrap_or(0);
                (p.indexed_seq < end).then_some(IndexProgress { head_seq: end, ..*p })
            })
            .collect()
    }
}

/// Folds a message's text for the index (`crate::search::normalize::Folded`), handed to the
/// store by the search service.
pub type FoldFn = dyn Fn(&str) -> String + Send + Sync;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_reported_up_to_the_end_of_the_span() {
        let c = ConvId(1);
        let scope = |until, indexed| SearchScope {
            spans: vec![Span { conversation: c, from_seq: 0, until_seq: until }],
            progress: vec![IndexProgress { conversation: c, indexed_seq: indexed, head_seq: 10_000 }],
        };
        assert_eq!(scope(Some(50), 40).lagging(), [IndexProgress { conversation: c, indexed_seq: 40, head_seq: 50 }]);
        assert!(scope(Some(50), 50).lagging().is_empty(), "indexed past the departure");
        assert_eq!(scope(None, 40).lagging()[0].head_seq, 10_000);
    }
}
