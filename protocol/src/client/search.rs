//! Typed helpers for message search (docs/protocol.md §23).

use super::{Client, ClientError, unexpected};
use crate::v1::{self, client_frame::Request, response::Result as R};

impl Client {
    /// SearchMessages (§23.1): one page of hits; pass `next_cursor` back as `cursor` for the next.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a query or filter out of bounds (§23.2, §23.3), or a query with no
    /// word and no filter; transport errors.
    pub async fn search_messages(&self, r: v1::SearchMessages) -> Result<v1::SearchMessagesResult, ClientError> {
        match self.request(Request::SearchMessages(r)).await? {
            R::SearchMessages(s) => Ok(s),
            other => Err(unexpected("SearchMessagesResult", &other)),
        }
    }

    /// Every hit of `r` (following cursors), at most `max` of them.
    ///
    /// # Errors
    /// As [`Client::search_messages`].
    pub async fn search_all(&self, mut r: v1::SearchMessages, max: usize) -> Result<Vec<v1::SearchHit>, ClientError> {
        let mut hits = Vec::new();
        loop {
            let page = self.search_messages(r.clone()).await?;
            hits.extend(page.hits);
            if page.next_cursor.is_empty() || hits.len() >= max {
                hits.truncate(max);
                return Ok(hits);
            }
            r.cursor = page.next_cursor;
        }
    }
}
