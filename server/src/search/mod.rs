//! Message search (docs/protocol.md §23): the service behind SearchMessages. It checks and folds
//! the request, narrows it to the caller's membership spans, has the indexer catch up with those
//! conversations, asks the store for a page, and checks each hit against the message's current
//! state before answering with highlights.

pub mod indexer;
pub mod normalize;
pub mod query;

use std::collections::HashMap;
use std::sync::Arc;

use confab_protocol::v1;

use crate::config::SearchConfig;
use crate::crypto::blind::BlindIndex;
use crate::error::ServerError;
use crate::session::Caller;
use crate::store::search_sql::by_conversation;
use crate::store::{
    AttachmentFilter, ConvId, Found, IndexKind, IndexProgress, Match, MessageId, MessageRec, SearchKey, SearchOrder,
    SearchSpec, Store, UserId,
};

pub use indexer::Indexer;
use normalize::Folded;
use query::Query;

/// Most conversation and sender ids one search may name.
pub const MAX_FILTER_IDS: usize = 100;
/// Most hits a page holds.
pub const MAX_LIMIT: u32 = 100;
const DEFAULT_LIMIT: u32 = 20;
/// Longest cursor the server hands out (`r.` and three 20-digit numbers), checked before parsing.
const MAX_CURSOR_BYTES: usize = 72;

/// The search service handle.
#[derive(Clone, Debug)]
pub struct Search(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    /// `None` when this node does not index (`search.indexing = false`).
    indexer: Option<Indexer>,
    config: SearchConfig,
    /// `config.max_concurrent` turns.
    turns: tokio::sync::Semaphore,
}

fn id_list<T>(field: &'static str, ids: &[u64], make: impl Fn(i64) -> T) -> Result<Vec<T>, ServerError> {
    if ids.len() > MAX_FILTER_IDS {
        return Err(ServerError::invalid(field, format!("at most {MAX_FILTER_IDS} ids")));
    }
    ids.iter()
        .map(|&v| match i64::try_from(v) {
            Ok(v) if v > 0 => Ok(make(v)),
            _ => Err(ServerError::invalid(field, "ids are positive")),
        })
        .collect()
}

fn time(field: &'static str, ms: u64) -> Result<Option<i64>, ServerError> {
    match ms {
        0 => Ok(None),
        v => i64::try_from(v).map(Some).map_err(|_| ServerError::invalid(field, "not a time in Unix milliseconds")),
    }
}

/// The opaque page cursor: the order and the last hit's position.
fn cursor_text(order: SearchOrder, k: SearchKey) -> String {
    match order {
        SearchOrder::Newest => format!("n.{}.{}", k.sent_at_ms, k.message_id.0),
        SearchOrder::Relevance => format!("r.{}.{}.{}", k.score, k.sent_at_ms, k.message_id.0),
    }
}

fn parse_cursor(order: SearchOrder, s: &str) -> Result<Option<SearchKey>, ServerError> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || ServerError::invalid("search_messages.cursor", "not a cursor of this search's order");
    if s.len() > MAX_CURSOR_BYTES {
        return Err(bad());
    }
    let parts: Vec<&str> = s.splitn(5, '.').collect();
    let num = |p: &str| p.parse::<i64>().map_err(|_| bad());
    match (order, parts.as_slice()) {
        (SearchOrder::Newest, ["n", t, id]) => {
            Ok(Some(SearchKey { score: 0, sent_at_ms: num(t)?, message_id: MessageId(num(id)?) }))
        }
        (SearchOrder::Relevance, ["r", score, t, id]) => {
            Ok(Some(SearchKey { score: num(score)?, sent_at_ms: num(t)?, message_id: MessageId(num(id)?) }))
        }
        _ => Err(bad()),
    }
}

fn lag(p: &IndexProgress) -> v1::IndexLag {
    v1::IndexLag {
        conversation_id: u64::try_from(p.conversation.0).unwrap_or(0),
        indexed_seq: u64::try_from(p.indexed_seq).unwrap_or(0),
        head_seq: u64::try_from(p.head_seq).unwrap_or(0),
    }
}

/// `m` with each needle replaced by its blind tokens.
fn blinded(b: &BlindIndex, m: &Match) -> Match {
    match m {
        Match::Contains(n) => Match::Contains(b.needle(n)),
        Match::Not(inner) => Match::Not(Box::new(blinded(b, inner))),
        Match::Any(ms) => Match::Any(ms.iter().map(|m| blinded(b, m)).collect()),
        Match::All(ms) => Match::All(ms.iter().map(|m| blinded(b, m)).collect()),
    }
}

impl Search {
    pub fn new(store: Arc<dyn Store>, indexer: Option<Indexer>, config: SearchConfig) -> Self {
        let turns = tokio::sync::Semaphore::new(config.max_concurrent as usize);
        Self(Arc::new(Inner { store, indexer, config, turns }))
    }

    /// The indexer, to subscribe to the bus (`None` when this node does not index).
    pub fn indexer(&self) -> Option<&Indexer> {
        self.0.indexer.as_ref()
    }

    /// Runs the indexer until `shutdown` (returns at once when this node does not index).
    pub async fn run_indexer(self, shutdown: tokio_util::sync::CancellationToken) {
        if let Some(i) = self.0.indexer.clone() {
            let timing =
                indexer::IndexTiming { delay: self.0.config.index_delay, sweep_interval: self.0.config.sweep_interval };
            i.run(self.0.store.clone(), timing, shutdown).await;
        }
    }

    /// §23: one page of `r`'s hits among what `caller` could see.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a query or filter out of bounds, a query with no word and no
    /// filter, or a cursor of another order; `UNAVAILABLE` when the store is down.
    pub async fn search(
        &self,
        caller: &Caller,
        r: &v1::SearchMessages,
    ) -> Result<v1::SearchMessagesResult, ServerError> {
        let query = Query::parse(&r.query).map_err(|e| ServerError::invalid("search_messages.query", e.to_string()))?;
        let only = id_list("search_messages.conversation_ids", &r.conversation_ids, ConvId)?;
        let senders = id_list("search_messages.sender_ids", &r.sender_ids, UserId)?;
        let sent_after_ms = time("search_messages.sent_after_ms", r.sent_after_ms)?;
        let sent_before_ms = time("search_messages.sent_before_ms", r.sent_before_ms)?;
        let attachments = match v1::AttachmentFilter::try_from(r.has_attachment) {
            Ok(v1::AttachmentFilter::Unspecified) => AttachmentFilter::Either,
            Ok(v1::AttachmentFilter::With) => AttachmentFilter::With,
            Ok(v1::AttachmentFilter::Without) => AttachmentFilter::Without,
            Err(_) => return Err(ServerError::invalid("search_messages.has_attachment", "unknown value")),
        };
        let order = match v1::SearchOrder::try_from(r.order) {
            Ok(v1::SearchOrder::Unspecified | v1::SearchOrder::Newest) => SearchOrder::Newest,
            Ok(v1::SearchOrder::Relevance) => SearchOrder::Relevance,
            Err(_) => return Err(ServerError::invalid("search_messages.order", "unknown value")),
        };
        if r.limit > MAX_LIMIT {
            return Err(ServerError::invalid("search_messages.limit", format!("at most {MAX_LIMIT}")));
        }
        let limit = if r.limit == 0 { DEFAULT_LIMIT } else { r.limit };
        let after = parse_cursor(order, &r.cursor)?;
        let filtered = !only.is_empty()
            || !senders.is_empty()
            || sent_after_ms.is_some()
            || sent_before_ms.is_some()
            || attachments != AttachmentFilter::Either;
        if query.wanted.is_empty() && !filtered {
            return Err(ServerError::invalid(
                "search_messages.query",
                "give a word to look for, or a filter (conversations, senders, dates, attachments)",
            ));
        }

        let _turn =
            self.0.turns.acquire().await.map_err(|_| ServerError::Unavailable("the server is shutting down".into()))?;
        let store = &self.0.store;
        let scope = store.search_scope(caller.user_id, &only).await?;
        let mut behind = scope.lagging();
        if !behind.is_empty()
            && let Some(indexer) = &self.0.indexer
        {
            let convs = behind.iter().map(|p| p.conversation).collect();
            if let Some(done) = indexer.flush(convs, self.0.config.wait).await {
                behind.retain(|b| !done.iter().any(|d| d.conversation == b.conversation));
            }
        }
        // One progress entry per conversation (`SearchScope`): the conversations to search.
        let conversations: Vec<ConvId> = scope.progress.iter().map(|p| p.conversation).collect();
        // With encryption at rest, the index holds tokens: so do the needles. Hits are checked
        // against the folded plaintext all the same (`hits`).
        let (index, matching, scored) = match store.sealer().blind_index() {
            None => (IndexKind::Folded, query.matching.clone(), query.wanted.clone()),
            Some(b) => (
                IndexKind::Blind,
                query.matching.as_ref().map(|m| blinded(b, m)),
                query.wanted.iter().map(|w| b.whole_word(w)).collect(),
            ),
        };
        let spec = SearchSpec {
            user: caller.user_id,
            index,
            matching,
            scored,
            conversations,
            senders,
            sent_after_ms,
            sent_before_ms,
            attachments,
            order,
            after,
            limit,
        };
        let mut found = store.search(&spec).await?;
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        let next_cursor = match (more, found.last()) {
            (true, Some(last)) => cursor_text(order, last.key),
            _ => String::new(),
        };
        let hits = self.hits(caller.user_id, &found, &query).await?;
        Ok(v1::SearchMessagesResult { hits, next_cursor, index_lag: behind.iter().map(lag).collect() })
    }

    /// The found messages in their current state, in `found`'s order, without those deleted or
    /// edited since the index read them that no longer match.
    async fn hits(&self, viewer: UserId, found: &[Found], query: &Query) -> Result<Vec<v1::SearchHit>, ServerError> {
        let mut current: HashMap<MessageId, MessageRec> = HashMap::with_capacity(found.len());
        for (conv, ids) in by_conversation(found) {
            for m in self.0.store.messages(conv, viewer, &ids).await? {
                current.insert(m.id, m);
            }
        }
        let mut hits = Vec::with_capacity(found.len());
        for f in found {
            let Some(m) = current.get(&f.key.message_id) else { continue };
            if m.deleted {
                continue;
            }
            let folded = Folded::new(&m.text);
            if query.matching.as_ref().is_some_and(|q| !q.matches(&folded.text)) {
                continue;
            }
            let highlights =
                folded.highlights(&query.wanted).into_iter().map(|(start, end)| v1::TextRange { start, end }).collect();
            hits.push(v1::SearchHit { message: Some(crate::wire::message(m, viewer)), highlights });
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_the_other_order() {
        let k = SearchKey { score: 2, sent_at_ms: 1_700_000_000_123, message_id: MessageId(42) };
        for order in [SearchOrder::Newest, SearchOrder::Relevance] {
            let text = cursor_text(order, k);
            let back = parse_cursor(order, &text).unwrap().unwrap();
            assert_eq!(back.message_id, k.message_id);
            assert_eq!(back.sent_at_ms, k.sent_at_ms);
            let other = if order == SearchOrder::Newest { SearchOrder::Relevance } else { SearchOrder::Newest };
            assert!(parse_cursor(other, &text).is_err());
        }
        let long = ".".repeat(100_000);
        for bad in ["x", "n.1", "n.a.b", "r.1.2", "n.1.2.3", long.as_str()] {
            assert!(parse_cursor(SearchOrder::Newest, bad).is_err(), "{bad}");
        }
    }
}
