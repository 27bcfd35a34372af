//! Message search across every conversation (docs/protocol.md §23): the overlay's state, its
//! keys (a query line, then a list of hits), the pages asked for as the list scrolls past its
//! end, and Enter on a hit, which opens its conversation at that message.

use confab_protocol::v1::{self, client_frame::Request};
use crossterm::event::{KeyCode, KeyEvent};

use super::app::{App, Overlay, Purpose};
use super::composer::Composer;
use super::input::edit;

/// Hits asked for per page.
pub const SEARCH_PAGE: u32 = 50;

/// The search overlay: what is typed, and the hits of the last query run.
#[derive(Clone, Debug, Default)]
pub struct SearchView {
    /// The query being typed.
    pub input: Composer,
    /// Keys go to the query line; else to the list of hits.
    pub editing: bool,
    /// The query the hits are for (empty before the first search).
    pub query: String,
    pub hits: Vec<v1::SearchHit>,
    pub selected: usize,
    /// Where the next page starts; empty when there is none.
    pub next_cursor: String,
    /// The number of the page asked for last: answers with another number are stale.
    pub run: u64,
    pub loading: bool,
    /// Conversations the index had not caught up with when the last page was searched (§23.6).
    pub lag: Vec<v1::IndexLag>,
    pub error: Option<String>,
}

impl SearchView {
    fn new() -> Self {
        Self { editing: true, ..Default::default() }
    }
}

impl App {
    /// The search key: the overlay again as it was left (its hits, its query), or a new one.
    pub(crate) fn open_message_search(&mut self) {
        let view = self.message_search.get_or_insert_with(SearchView::new);
        view.input.set_selected(&view.query);
        view.editing = view.hits.is_empty();
        self.overlay = Overlay::MessageSearch;
    }

    pub(crate) fn message_search_key(&mut self, k: &KeyEvent) {
        let Some(view) = self.message_search.as_mut() else {
            self.overlay = Overlay::None;
            return;
        };
        if view.editing {
            match k.code {
                KeyCode::Esc => self.overlay = Overlay::None,
                KeyCode::Enter => {
                    let query = view.input.text().trim().to_string();
                    if !query.is_empty() {
                        self.run_message_search(query);
                    }
                }
                KeyCode::Down | KeyCode::Tab if !view.hits.is_empty() => view.editing = false,
                _ => {
                    edit(&mut view.input, k);
                }
            }
            return;
        }
        let last = view.hits.len().saturating_sub(1);
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') => self.overlay = Overlay::None,
            // The query, selected: typing replaces it, arrows edit it.
            KeyCode::Char('/') | KeyCode::Char('i') | KeyCode::Tab => {
                view.editing = true;
                view.input.set_selected(&view.query);
            }
            KeyCode::Enter => self.open_hit(),
            KeyCode::Down | KeyCode::Char('j') => self.move_hit(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_hit(-1),
            KeyCode::PageDown => self.move_hit(5),
            KeyCode::PageUp => self.move_hit(-5),
            KeyCode::Home | KeyCode::Char('g') => view.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.move_hit(last as i64),
            _ => {}
        }
    }

    /// Runs a new query: the list empties and its first page is asked for. The query stays in
    /// its line, selected, until hits arrive and the keys move to them.
    fn run_message_search(&mut self, query: String) {
        let Some(view) = self.message_search.as_mut() else { return };
        view.input.set_selected(&query);
        view.query = query;
        view.hits.clear();
        view.selected = 0;
        view.next_cursor.clear();
        view.lag.clear();
        self.search_page(String::new());
    }

    /// Asks for the page of the current query at `cursor`.
    fn search_page(&mut self, cursor: String) {
        let Some(view) = self.message_search.as_mut() else { return };
        view.run += 1;
        view.loading = true;
        view.error = None;
        let req = v1::SearchMessages { query: view.query.clone(), limit: SEARCH_PAGE, cursor, ..Default::default() };
        let run = view.run;
        self.request(Purpose::MessageSearch(run), Request::SearchMessages(req));
    }

    /// Moves through the hits; reaching the last asks for the next page, once.
    fn move_hit(&mut self, delta: i64) {
        let Some(view) = self.message_search.as_mut() else { return };
        if view.hits.is_empty() {
            return;
        }
        let last = view.hits.len() - 1;
        view.selected = (view.selected as i64 + delta).clamp(0, last as i64) as usize;
        if view.selected == last && !view.next_cursor.is_empty() && !view.loading {
            let cursor = view.next_cursor.clone();
            self.search_page(cursor);
        }
    }

    /// A page of hits for page `run`.
    pub(crate) fn message_search_page(&mut self, run: u64, page: v1::SearchMessagesResult) {
        let Some(view) = self.message_search.as_mut().filter(|v| v.run == run) else { return };
        view.loading = false;
        view.next_cursor = page.next_cursor;
        view.lag = page.index_lag;
        let senders: Vec<u64> = page.hits.iter().filter_map(|h| h.message.as_ref().map(|m| m.sender_id)).collect();
        if view.hits.is_empty() && !page.hits.is_empty() {
            view.editing = false;
        }
        view.hits.extend(page.hits);
        self.ask_users(senders);
    }

    /// Page `run` failed: the overlay says why.
    pub(crate) fn message_search_failed(&mut self, run: u64, error: String) {
        if let Some(view) = self.message_search.as_mut().filter(|v| v.run == run) {
            view.loading = false;
            view.error = Some(error);
        }
    }

    /// Enter on a hit: its conversation, opened at the message.
    fn open_hit(&mut self) {
        let Some(m) = self.message_search.as_ref().and_then(|v| v.hits.get(v.selected)).and_then(|h| h.message.clone())
        else {
            return;
        };
        if !self.store.convs.get(&m.conversation_id).is_some_and(|c| c.member) {
            return self.say("you left that conversation: its messages cannot be opened");
        }
        self.overlay = Overlay::None;
        self.open_at(m.conversation_id, m.seq);
    }
}
