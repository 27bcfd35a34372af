//! The writing half of every WebSocket the bench's adapters and the ceiling relay hold: one task
//! that takes queued messages, feeds all that are waiting and flushes once (write coalescing).

use futures_util::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Writes what `rx` delivers to `sink`, flushing once per burst, until the queue closes (then
/// closes the WebSocket) or a write fails.
pub async fn write_queued<S>(mut sink: S, mut rx: mpsc::Receiver<Message>)
where
    S: Sink<Message> + Unpin,
{
    while let Some(m) = rx.recv().await {
        if sink.feed(m).await.is_err() {
            return;
        }
        while let Ok(m) = rx.try_recv() {
            if sink.feed(m).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}
