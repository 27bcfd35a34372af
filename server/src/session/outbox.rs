//! A connection's outbound queue: encoded frames for its writer task, bounded, never waited on
//! by who pushes, with the connection's abort (slow consumer) and kick (close after what is
//! queued) signals. One allocation per connection holds all of it, and the queue itself takes no
//! memory while empty: an idle connection is most of what a server holds (W1,
//! docs/benchmarks.md), and a tokio mpsc channel with two watch channels cost about 2.3 KB each.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use confab_protocol::CloseCode;
use tokio::sync::Notify;

use super::Close;

/// What a connection's writer task receives.
#[derive(Debug)]
pub enum Outbound {
    /// An encoded frame, shared (fan-out encodes once).
    Frame(Bytes),
    /// Close after what is queued before it.
    Close(Close),
}

/// A queue that grew past this many slots gives its memory back once it is empty again.
const SHRINK_ABOVE: usize = 64;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outbound>,
    /// Set when the queue overflowed (or could not take the final close): close at once.
    abort: Option<Close>,
    /// Set by [`Outbox::kick`]: close after the queued frames.
    kick: Option<Close>,
    /// Live [`Outbox`] handles; at 0 the writer sees the queue's end.
    senders: usize,
    /// The writer's end is gone: nothing queued would be written.
    receiver_gone: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Bytes queued and not yet written to the transport.
    bytes: AtomicUsize,
    /// The writer task's wake-up: something queued, the last handle dropped (one waiter).
    queued: Notify,
    /// Abort was set (the writer and the connection loop wait for it).
    aborted: Notify,
    /// Kick was set (the connection loop waits for it).
    kicked: Notify,
    /// The writer wrote a batch (bulk answers wait for room).
    written: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the abort (keeping the first one unless `replace`) and wakes whoever waits for it.
    fn abort(&self, close: Close, replace: bool) {
        {
            let mut s = self.state();
            if replace || s.abort.is_none() {
                s.abort = Some(close);
            }
        }
        self.aborted.notify_waiters();
        self.queued.notify_one();
    }
}

/// The sending side of a connection (cheap to clone): a bounded queue to its writer task, an
/// abort that bypasses the queue, and a kick asking the connection loop to close after what is
/// queued.
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The connection's own ends of an [`Outbox`]: the writer task's queue and the signals the
/// connection loop waits for.
#[derive(Debug)]
pub struct OutboxEnds {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("queued", &self.shared.state().queue.len()).finish()
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.state().senders += 1;
        Self { shared: self.shared.clone() }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let last = {
            let mut s = self.shared.state();
            s.senders -= 1;
            s.senders == 0
        };
        if last {
            self.shared.queued.notify_one();
        }
    }
}

impl Drop for OutboxEnds {
    fn drop(&mut self) {
        let mut s = self.shared.state();
        s.receiver_gone = true;
        s.queue.clear();
    }
}

impl Outbox {
    /// A new outbox holding at most `capacity` frames, and the connection's ends of it.
    pub fn new(capacity: usize) -> (Self, OutboxEnds) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { senders: 1, ..State::default() }),
            capacity: capacity.max(1),
            bytes: AtomicUsize::new(0),
            queued: Notify::new(),
            aborted: Notify::new(),
            kicked: Notify::new(),
            written: Notify::new(),
        });
        (Self { shared: shared.clone() }, OutboxEnds { shared })
    }

    /// Waits until fewer than `limit` bytes are queued for this connection: a bulk answer (a
    /// media chunk) is read only when the client is taking what came before, so a client that
    /// does not read costs at most `limit` plus one answer per request in flight.
    pub async fn room_for_bulk(&self, limit: usize) {
        loop {
            let written = self.shared.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if self.shared.bytes.load(Ordering::Relaxed) < limit || self.shared.state().receiver_gone {
                return;
            }
            written.await;
        }
    }

    /// Queues an encoded frame without waiting. A full queue means the client is not reading:
    /// the connection is closed as a slow consumer and `false` returned.
    pub fn push(&self, frame: Bytes) -> bool {
        self.queue(frame, self.shared.capacity, true)
    }

    /// Queues a frame that may be lost (typing): dropped, without closing anything, when the queue
    /// is more than half full, so it never displaces what matters.
    pub fn push_droppable(&self, frame: Bytes) -> bool {
        self.queue(frame, self.shared.capacity / 2, false)
    }

    fn queue(&self, frame: Bytes, limit: usize, overflow_aborts: bool) -> bool {
        let n = frame.len();
        {
            let mut s = self.shared.state();
            if s.receiver_gone {
                return false;
            }
            if s.queue.len() >= limit {
                drop(s);
                if overflow_aborts {
                    self.shared
                        .abort(Close::new(CloseCode::SlowConsumer, "outbound queue full; reconnect and sync"), false);
                }
                return false;
            }
            // Counted under the lock, before the writer can take the frame, so its subtraction
            // never comes first.
            self.shared.bytes.fetch_add(n, Ordering::Relaxed);
            s.queue.push_back(Outbound::Frame(frame));
            // The writer sleeps only after finding the queue empty (under this lock), so only
            // the push that ends an empty queue has anyone to wake: a fan-out burst costs one
            // wake-up per connection, not one per frame.
            if s.queue.len() > 1 {
                return true;
            }
        }
        self.shared.queued.notify_one();
        true
    }

    /// The close the outbox forced (a slow consumer), if any.
    pub fn aborted(&self) -> Option<Close> {
        self.shared.state().abort
    }

    /// Asks the connection to close with `close` once the frames queued so far are sent.
    pub fn kick(&self, close: Close) {
        self.shared.state().kick = Some(close);
        self.shared.kicked.notify_waiters();
    }

    /// Queues the final close behind whatever is queued; aborts when the queue is stuck.
    pub fn finish(&self, close: Close) {
        let queued = {
            let mut s = self.shared.state();
            if s.queue.len() < self.shared.capacity {
                s.queue.push_back(Outbound::Close(close));
                true
            } else {
                false
            }
        };
        if queued {
            self.shared.queued.notify_one();
        } else {
            self.shared.abort(close, true);
        }
    }
}

/// Gives back what a burst grew once the queue is empty again.
fn shrink_when_drained(queue: &mut VecDeque<Outbound>) {
    if queue.is_empty() && queue.capacity() > SHRINK_ABOVE {
        queue.shrink_to_fit();
    }
}

impl OutboxEnds {
    /// Waits until something is queued (or the queue has ended), then moves up to `max` queued
    /// frames into `batch` under one lock. Returns the close that came next: one queued with
    /// [`Outbox::finish`] behind the frames, or a normal close once every [`Outbox`] handle is
    /// gone and the queue is empty; `None` when only frames were taken. Cancel-safe: nothing is
    /// taken before the wait is over.
    pub async fn take(&self, batch: &mut Vec<Bytes>, max: usize) -> Option<Close> {
        loop {
            {
                let mut s = self.shared.state();
                let mut close = None;
                batch.reserve(s.queue.len().min(max.saturating_sub(batch.len())));
                while batch.len() < max {
                    match s.queue.pop_front() {
                        Some(Outbound::Frame(b)) => batch.push(b),
                        Some(Outbound::Close(c)) => {
                            close = Some(c);
                            break;
                        }
                        None => break,
                    }
                }
                shrink_when_drained(&mut s.queue);
                if close.is_some() || !batch.is_empty() {
                    return close;
                }
                if s.senders == 0 {
                    return Some(Close::new(CloseCode::Normal, ""));
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check and
            // here is not missed.
            self.shared.queued.notified().await;
        }
    }

    /// The writer wrote `n` bytes of queued frames.
    pub fn wrote(&self, n: usize) {
        self.shared.bytes.fetch_sub(n, Ordering::Relaxed);
        self.shared.written.notify_waiters();
    }

    /// The abort, once set (the queue overflowed, or the final close could not be queued).
    /// Cancel-safe.
    pub async fn aborted(&self) -> Close {
        self.signal(&self.shared.aborted, |s| s.abort).await
    }

    /// The abort if it is set now.
    pub fn abort_now(&self) -> Option<Close> {
        self.shared.state().abort
    }

    /// The kick, once set. Cancel-safe.
    pub async fn kicked(&self) -> Close {
        self.signal(&self.shared.kicked, |s| s.kick).await
    }

    /// The close `get` reads from the state, once set; `notify` is woken when it is.
    async fn signal(&self, notify: &Notify, get: impl Fn(&State) -> Option<Close>) -> Close {
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(close) = get(&self.shared.state()) {
                return close;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[tokio::test]
    async fn frames_come_out_in_order_then_the_end_when_every_handle_is_gone() {
        let (outbox, ends) = Outbox::new(8);
        let other = outbox.clone();
        assert!(outbox.push(frame(1)));
        assert!(other.push(frame(2)));
        drop(outbox);
        let mut batch = Vec::new();
        assert!(ends.take(&mut batch, 64).await.is_none());
        assert_eq!(batch.iter().map(Bytes::len).collect::<Vec<_>>(), vec![1, 2]);
        batch.clear();
        let pending = tokio::time::timeout(Duration::from_millis(50), ends.take(&mut batch, 64)).await;
        assert!(pending.is_err(), "one handle is still alive: take waits");
        drop(other);
        assert_eq!(ends.take(&mut batch, 64).await.map(|c| c.code), Some(CloseCode::Normal));
    }

    #[tokio::test]
    async fn a_full_queue_aborts_once_and_wakes_both_waiters() {
        let (outbox, ends) = Outbox::new(2);
        let ends = Arc::new(ends);
        let e2 = ends.clone();
        let waiter = tokio::spawn(async move { e2.aborted().await });
        tokio::task::yield_now().await;
        assert!(outbox.push(frame(1)) && outbox.push(frame(1)));
        assert!(!outbox.push(frame(1)), "the third frame overflows");
        assert!(!outbox.push(frame(1)));
        let close = waiter.await.expect("waiter");
        assert_eq!(close.code, CloseCode::SlowConsumer);
        assert_eq!(ends.aborted().await.code, CloseCode::SlowConsumer);
        assert_eq!(outbox.aborted().map(|c| c.code), Some(CloseCode::SlowConsumer));
    }

    #[tokio::test]
    async fn droppable_frames_give_way_at_half_without_aborting() {
        let (outbox, ends) = Outbox::new(4);
        assert!(outbox.push_droppable(frame(1)) && outbox.push_droppable(frame(1)));
        assert!(!outbox.push_droppable(frame(1)), "half full: dropped");
        assert!(outbox.push(frame(1)), "a frame that matters still fits");
        assert!(outbox.aborted().is_none() && ends.abort_now().is_none());
    }

    #[tokio::test]
    async fn finish_queues_the_close_behind_the_frames_or_aborts_when_stuck() {
        let (outbox, ends) = Outbox::new(2);
        outbox.push(frame(3));
        outbox.finish(Close::new(CloseCode::Normal, ""));
        let mut batch = Vec::new();
        assert_eq!(ends.take(&mut batch, 64).await.map(|c| c.code), Some(CloseCode::Normal));
        assert_eq!(batch.len(), 1, "the frame before the close");
        let (stuck, ends) = Outbox::new(1);
        stuck.push(frame(1));
        stuck.finish(Close::new(CloseCode::GoingAway, "bye"));
        assert_eq!(ends.abort_now().map(|c| c.code), Some(CloseCode::GoingAway));
    }

    #[tokio::test]
    async fn kick_wakes_the_loop_and_bulk_waits_for_room() {
        let (outbox, ends) = Outbox::new(16);
        let o2 = outbox.clone();
        let kicked = tokio::spawn(async move {
            let ends = ends;
            let c = ends.kicked().await;
            (c, ends)
        });
        tokio::task::yield_now().await;
        o2.kick(Close::new(CloseCode::SessionRevoked, "session revoked"));
        let (c, ends) = kicked.await.expect("kicked");
        assert_eq!(c.code, CloseCode::SessionRevoked);
        outbox.push(frame(1000));
        let o3 = outbox.clone();
        let bulk = tokio::spawn(async move { o3.room_for_bulk(500).await });
        tokio::task::yield_now().await;
        assert!(!bulk.is_finished(), "1,000 bytes queued: no room under 500");
        let mut batch = Vec::new();
        assert!(ends.take(&mut batch, 64).await.is_none());
        ends.wrote(1000);
        tokio::time::timeout(Duration::from_secs(5), bulk).await.expect("room").expect("task");
        drop(ends);
        assert!(!outbox.push(frame(1)), "no writer: nothing is queued");
    }

    #[tokio::test]
    async fn take_moves_a_burst_under_one_lock_and_stops_at_a_close() {
        let (outbox, ends) = Outbox::new(16);
        for n in 1..=5 {
            assert!(outbox.push(frame(n)));
        }
        let mut batch = Vec::new();
        assert!(ends.take(&mut batch, 3).await.is_none());
        assert_eq!(batch.iter().map(Bytes::len).collect::<Vec<_>>(), vec![1, 2, 3], "at most max, in order");
        batch.clear();
        outbox.finish(Close::new(CloseCode::GoingAway, "bye"));
        outbox.push(frame(9));
        let close = ends.take(&mut batch, 64).await;
        assert_eq!(batch.iter().map(Bytes::len).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(close.map(|c| c.code), Some(CloseCode::GoingAway), "the close behind the frames");
        batch.clear();
        assert!(ends.take(&mut batch, 64).await.is_none());
        assert_eq!(batch.len(), 1, "what was queued after the close is still there");
        batch.clear();
        // A push onto a queue the writer has not drained wakes nobody; the writer finds it anyway.
        let waiting = tokio::time::timeout(Duration::from_millis(20), ends.take(&mut batch, 64)).await;
        assert!(waiting.is_err() && batch.is_empty(), "an empty queue waits, and a cancelled take took nothing");
        outbox.push(frame(1));
        outbox.push(frame(2));
        assert!(ends.take(&mut batch, 64).await.is_none());
        assert_eq!(batch.len(), 2);
        batch.clear();
        drop(outbox);
        assert_eq!(ends.take(&mut batch, 64).await.map(|c| c.code), Some(CloseCode::Normal), "the queue's end");
    }

    #[test]
    fn an_idle_outbox_is_one_small_allocation_and_a_drained_queue_shrinks() {
        // The whole per-connection state: one Arc of this size, no queue buffer until a push.
        let size = std::mem::size_of::<Shared>();
        assert!(size <= 320, "Shared is {size} bytes");
        let (outbox, ends) = Outbox::new(1024);
        assert_eq!(outbox.shared.state().queue.capacity(), 0);
        for _ in 0..200 {
            outbox.push(frame(1));
        }
        let mut batch = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        assert!(rt.block_on(ends.take(&mut batch, 1024)).is_none());
        assert_eq!(batch.len(), 200);
        assert!(outbox.shared.state().queue.capacity() <= SHRINK_ABOVE);
    }
}
