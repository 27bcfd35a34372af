//! Attachments in the TUI: the attach prompt's upload that becomes a message, saving and
//! opening an attachment, transfer progress for the status line, and inline image previews
//! (ratatui-image: kitty, sixel, iTerm2 or half-blocks, as its picker found the terminal), kept
//! in a bounded in-memory cache.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};

use confab_protocol::v1;
use ratatui::layout::Size;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::Protocol;
use ratatui_image::{FilterType, Resize};

use super::app::{App, Effect, Overlay, PromptKind};
use super::complete;
use crate::media::{human_size, preview_source, safe_file_name};
use crate::net::{Command, OutAttachment, Outgoing, Sink, Transfer, TransferKind, Transferred, new_client_msg_id};
use crate::store::Pending;

/// Most previews kept; the oldest goes first.
pub const PREVIEW_CACHE: usize = 32;
/// The box a preview is fitted into, in cells.
pub const PREVIEW_COLS: u16 = 40;
pub const PREVIEW_ROWS: u16 = 10;

/// A decoded, encoded image ready to draw.
#[derive(Clone)]
pub struct Preview {
    pub protocol: Protocol,
}

impl std::fmt::Debug for Preview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preview").field("size", &self.protocol.size()).finish()
    }
}

impl Preview {
    /// Cells the image takes.
    pub fn size(&self) -> Size {
        self.protocol.size()
    }
}

/// Inline previews: how to draw images (none when previews are off), and what is cached,
/// being fetched, or failed.
#[derive(Debug, Default)]
pub struct Previews {
    picker: Option<Picker>,
    ready: HashMap<String, Preview>,
    order: VecDeque<String>,
    loading: HashSet<String>,
    failed: HashSet<String>,
    /// Attachments drawn without their preview at the last draw: (media id, thumbnail).
    pub wanted: RefCell<Vec<(String, &'static str)>>,
}

impl Previews {
    /// Previews drawn with `picker`; `None` turns them off.
    pub fn new(picker: Option<Picker>) -> Self {
        Self { picker, ..Default::default() }
    }

    pub fn enabled(&self) -> bool {
        self.picker.is_some()
    }

    pub fn get(&self, media_id: &str) -> Option<&Preview> {
        self.ready.get(media_id)
    }

    /// Called while drawing: this attachment is on screen without its preview.
    pub fn want(&self, a: &v1::Attachment) {
        if !self.enabled() || self.ready.contains_key(&a.media_id) || self.failed.contains(&a.media_id) {
            return;
        }
        if let Some(thumb) = preview_source(a) {
            self.wanted.borrow_mut().push((a.media_id.clone(), thumb));
        }
    }

    /// Decodes an image and encodes it for the terminal, fitted into the preview box.
    pub fn insert(&mut self, media_id: &str, bytes: &[u8]) -> Result<(), String> {
        self.loading.remove(media_id);
        let Some(picker) = &self.picker else { return Ok(()) };
        let made = image::load_from_memory(bytes).map_err(|e| e.to_string()).and_then(|img| {
            picker
                .new_protocol(img, Size::new(PREVIEW_COLS, PREVIEW_ROWS), Resize::Fit(Some(FilterType::Triangle)))
                .map_err(|e| e.to_string())
        });
        match made {
            Ok(protocol) => {
                if self.ready.insert(media_id.to_string(), Preview { protocol }).is_none() {
                    self.order.push_back(media_id.to_string());
                }
                while self.order.len() > PREVIEW_CACHE {
                    if let Some(old) = self.order.pop_front() {
                        self.ready.remove(&old);
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.failed.insert(media_id.to_string());
                Err(e)
            }
        }
    }

    fn failed(&mut self, media_id: &str) {
        self.loading.remove(media_id);
        self.failed.insert(media_id.to_string());
    }

    /// Back online: previews that failed (a download cut, or not connected) are tried again
    /// when next drawn.
    pub fn retry_failed(&mut self) {
        self.failed.clear();
    }

    /// How many previews are cached.
    pub fn len(&self) -> usize {
        self.ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }
}

/// What a transfer is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferPurpose {
    /// An upload to send as a message in this conversation.
    Attach {
        conversation_id: u64,
    },
    Preview {
        media_id: String,
    },
    Save,
    Open,
}

/// A transfer under way, as the status line shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferView {
    pub name: String,
    pub upload: bool,
    pub done: u64,
    pub total: u64,
    pub purpose: TransferPurpose,
}

impl TransferView {
    /// `⇡ photo.png 45%`.
    pub fn label(&self) -> String {
        let arrow = if self.upload { "⇡" } else { "⇣" };
        let pct = (self.done * 100).checked_div(self.total).unwrap_or(0);
        format!("{arrow} {} {pct}% of {}", self.name, human_size(self.total))
    }
}

impl App {
    fn start_transfer(&mut self, view: TransferView, kind: TransferKind) {
        self.next_transfer += 1;
        let id = self.next_transfer;
        self.transfers.insert(id, view);
        self.effects.push(Effect::Net(Command::Transfer(Transfer { id, kind })));
    }

    /// The attach prompt answered: upload the file; it is sent once the server has it.
    pub(crate) fn attach(&mut self, conversation_id: u64, input: &str) {
        let path = complete::resolve(input, &self.cwd);
        let file = match crate::media::LocalFile::inspect(&path) {
            Ok(f) => f,
            Err(e) => return self.say(format!("{e:#}")),
        };
        let view = TransferView {
            name: file.file_name.clone(),
            upload: true,
            done: 0,
            total: file.size,
            purpose: TransferPurpose::Attach { conversation_id },
        };
        self.start_transfer(view, TransferKind::Upload { path });
    }

    /// Opens the attach prompt for the open conversation.
    pub(crate) fn attach_prompt(&mut self) {
        let Some(conversation_id) = self.open else { return self.say("open a conversation first") };
        self.overlay = Overlay::Prompt {
            kind: PromptKind::AttachFile { conversation_id },
            input: Default::default(),
            completions: Vec::new(),
        };
    }

    /// Tab in the attach prompt.
    pub(crate) fn complete_prompt(&mut self) {
        let cwd = self.cwd.clone();
        if let Overlay::Prompt { kind: PromptKind::AttachFile { .. }, input, completions } = &mut self.overlay {
            let c = complete::complete_path(&input.text(), &cwd);
            input.set(&c.text);
            *completions = c.candidates;
        }
    }

    /// The save (`open` false) or open key on the selected message: its only attachment, or a
    /// list to pick one from.
    pub(crate) fn attachment_key(&mut self, open: bool) {
        let Some((conversation_id, m)) = self.target() else { return self.say("no message selected") };
        match m.attachments.len() {
            0 => self.say("no attachment on this message"),
            1 => self.fetch_attachment(&m.attachments[0], open),
            _ => self.overlay = Overlay::Attachments { conversation_id, message_id: m.id, selected: 0, open },
        }
    }

    /// Saves an attachment to the downloads directory, or fetches it and opens it.
    pub(crate) fn fetch_attachment(&mut self, a: &v1::Attachment, open: bool) {
        let name = safe_file_name(&a.file_name, &a.media_id);
        let (path, replace, purpose) = if open {
            (self.open_dir.join(&a.media_id).join(&name), true, TransferPurpose::Open)
        } else {
            (self.media.downloads().join(&name), false, TransferPurpose::Save)
        };
        let view = TransferView { name, upload: false, done: 0, total: a.size, purpose };
        let kind = TransferKind::Download {
            media_id: a.media_id.clone(),
            thumbnail: String::new(),
            sink: Sink::File { path, replace },
        };
        self.start_transfer(view, kind);
    }

    /// After a draw: fetch the previews it lacked.
    pub fn request_previews(&mut self) {
        let wanted = std::mem::take(&mut *self.previews.wanted.borrow_mut());
        for (media_id, thumbnail) in wanted {
            if !self.previews.loading.insert(media_id.clone()) {
                continue;
            }
            let view = TransferView {
                name: media_id.clone(),
                upload: false,
                done: 0,
                total: 0,
                purpose: TransferPurpose::Preview { media_id: media_id.clone() },
            };
            let kind = TransferKind::Download { media_id, thumbnail: thumbnail.to_string(), sink: Sink::Memory };
            self.start_transfer(view, kind);
        }
    }

    /// Transfers the status line shows (previews load quietly).
    pub fn visible_transfers(&self) -> impl Iterator<Item = &TransferView> {
        self.transfers.values().filter(|t| !matches!(t.purpose, TransferPurpose::Preview { .. }))
    }

    pub(crate) fn on_transfer(&mut self, id: u64, done: u64, total: u64) {
        if let Some(t) = self.transfers.get_mut(&id) {
            t.done = done;
            t.total = total;
        }
    }

    pub(crate) fn on_transfer_done(&mut self, id: u64, result: Result<Transferred, String>) {
        let Some(t) = self.transfers.remove(&id) else { return };
        match (t.purpose, result) {
            (TransferPurpose::Preview { media_id }, Ok(Transferred::Bytes(b))) => {
                if let Err(e) = self.previews.insert(&media_id, &b) {
                    tracing::debug!("preview of {media_id}: {e}");
                }
            }
            (TransferPurpose::Preview { media_id }, _) => self.previews.failed(&media_id),
            (TransferPurpose::Attach { conversation_id }, Ok(Transferred::Uploaded(info))) => {
                self.send_attachment(conversation_id, &info);
            }
            (TransferPurpose::Save, Ok(Transferred::Saved(path))) => self.say(format!("saved {}", path.display())),
            (TransferPurpose::Open, Ok(Transferred::Saved(path))) => {
                self.say(format!("opening {}", t.name));
                self.effects.push(Effect::Open(path));
            }
            (TransferPurpose::Attach { .. }, Err(e)) => self.say(format!("{}: upload failed: {e}", t.name)),
            (_, Err(e)) => self.say(format!("{}: download failed: {e}", t.name)),
            (_, Ok(other)) => tracing::debug!("transfer {id} ended with {other:?}"),
        }
    }

    /// The upload is stored: send it as a message (shown pending until the server has it).
    fn send_attachment(&mut self, conversation_id: u64, info: &v1::MediaInfo) {
        let out = OutAttachment {
            media_id: info.media_id.clone(),
            file_name: info.file_name.clone(),
            mime_type: info.mime_type.clone(),
            size: info.size,
        };
        let shown = v1::Attachment {
            width: info.width,
            height: info.height,
            thumbnails: info.thumbnails.iter().map(|t| t.name.clone()).collect(),
            ..out.to_proto()
        };
        let client_msg_id = new_client_msg_id();
        let pending = Pending {
            client_msg_id: client_msg_id.clone(),
            text: String::new(),
            reply_to: 0,
            created_ms: self.now_ms,
            attachments: vec![shown],
            seq: None,
            failed: None,
        };
        self.store.add_pending(conversation_id, pending);
        self.effects.push(Effect::Net(Command::Send(Outgoing {
            conversation_id,
            client_msg_id,
            text: String::new(),
            reply_to: 0,
            mentions: Vec::new(),
            attachments: vec![out],
            written_ms: self.now_ms,
        })));
        if self.open == Some(conversation_id) {
            self.selected = None;
        }
    }
}
