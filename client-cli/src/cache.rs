//! The local cache: what the client last knew of the account (who it is, the conversations with
//! their counts, read markers and last messages, the users, and the newest messages of each
//! conversation it had loaded), so the TUI starts offline showing it until the server's snapshot
//! replaces it. One file per profile, `cache.bin`: a magic, a format version byte, then one
//! length-delimited protobuf [`Cache`] of the protocol's own types. It is written atomically
//! (a temporary file renamed over it) with mode 0600, since it holds message text, and read only
//! for the account it belongs to; a missing, corrupt, other-version or other account's cache is
//! ignored.

use std::path::{Path, PathBuf};

use anyhow::Context;
use confab_protocol::v1;
use prost::Message as _;

use crate::store::{Conv, Msg, Store};

/// The cache's file name in the profile directory.
pub const FILE: &str = "cache.bin";
/// The file's first bytes.
const MAGIC: &[u8; 4] = b"CFBC";
/// The format version, after the magic: a file of another version is ignored (and replaced by
/// the next save).
pub const VERSION: u8 = 1;
/// The newest loaded messages kept per conversation.
pub const MESSAGES_PER_CONVERSATION: usize = 50;

/// Everything the cache holds, in the protocol's types.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Cache {
    /// The account.
    #[prost(message, optional, tag = "1")]
    pub me: Option<v1::Me>,
    /// The conversations the account is a member of, as last known.
    #[prost(message, repeated, tag = "2")]
    pub conversations: Vec<v1::Conversation>,
    /// The users known.
    #[prost(message, repeated, tag = "3")]
    pub users: Vec<v1::UserProfile>,
    /// The newest messages of the conversations whose history was loaded.
    #[prost(message, repeated, tag = "4")]
    pub histories: Vec<History>,
}

/// The newest loaded messages of one conversation, as a latest page of history.
#[derive(Clone, PartialEq, prost::Message)]
pub struct History {
    /// The conversation.
    #[prost(uint64, tag = "1")]
    pub conversation_id: u64,
    /// Oldest first.
    #[prost(message, repeated, tag = "2")]
    pub messages: Vec<v1::Message>,
    /// Older messages exist below these.
    #[prost(bool, tag = "3")]
    pub has_more: bool,
}

/// The cache file of a profile directory.
pub fn path(profile_dir: &Path) -> PathBuf {
    profile_dir.join(FILE)
}

impl Cache {
    /// What the store holds: the account, its member conversations, the users, and up to
    /// [`MESSAGES_PER_CONVERSATION`] of the newest loaded messages of each conversation.
    pub fn from_store(store: &Store) -> Self {
        let mut convs: Vec<&Conv> = store.convs.values().filter(|c| c.member).collect();
        convs.sort_by_key(|c| c.id);
        let mut users: Vec<v1::UserProfile> = store.users.values().cloned().collect();
        users.sort_by_key(|u| u.user_id);
        Self {
            me: Some(store.me.clone()),
            conversations: convs.iter().map(|c| conversation_to_proto(c)).collect(),
            users,
            histories: convs.iter().filter_map(|c| history(c)).collect(),
        }
    }

    /// The account the cache belongs to.
    pub fn user_id(&self) -> u64 {
        self.me.as_ref().map_or(0, |m| m.user_id)
    }

    /// The file's contents.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 1 + self.encoded_len() + 10);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        self.encode_length_delimited(&mut out).expect("a Vec grows");
        out
    }

    /// Reads the file's contents; the error says why they are not a cache of this version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or("not a confab cache")?;
        let (&version, mut body) = rest.split_first().ok_or("no format version")?;
        if version != VERSION {
            return Err(format!("format version {version}, not {VERSION}"));
        }
        // The length prefix catches a cut-short file; nothing may follow the message.
        let cache = Self::decode_length_delimited(&mut body).map_err(|e| e.to_string())?;
        if !body.is_empty() {
            return Err(format!("{} bytes after the cache", body.len()));
        }
        Ok(cache)
    }

    /// The profile's cache when it belongs to `user_id`. A missing file is `None`; so is a
    /// corrupt one, one of another format version or another account's (logged at debug level).
    pub fn load(profile_dir: &Path, user_id: u64) -> Option<Self> {
        let path = path(profile_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!("ignoring the cache {}: {e}", path.display());
                return None;
            }
        };
        match Self::from_bytes(&bytes) {
            Ok(c) if c.user_id() == user_id && user_id != 0 => Some(c),
            Ok(c) => {
                tracing::debug!("ignoring the cache {}: user {}, not {user_id}", path.display(), c.user_id());
                None
            }
            Err(e) => {
                tracing::debug!("ignoring the cache {}: {e}", path.display());
                None
            }
        }
    }
}

/// Writes the profile's cache file, private to its owner (see [`crate::config::write_private`]).
pub fn write(profile_dir: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::config::write_private(profile_dir, FILE, bytes)
}

/// Deletes the profile's cache; false when there was none.
pub fn remove(profile_dir: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path(profile_dir)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).context("removing the cache"),
    }
}

/// A conversation as the server would send it, from what the store keeps of it (the store keeps
/// no description, creation time, photo or announcement flag, so those are empty).
pub fn conversation_to_proto(c: &Conv) -> v1::Conversation {
    v1::Conversation {
        conversation_id: c.id,
        kind: c.kind as i32,
        title: c.title.clone(),
        head_seq: c.head_seq,
        last_activity_ms: c.last_activity_ms,
        member_count: c.member_count,
        description: c.description.clone(),
        my_read_seq: c.read_seq,
        unread_count: c.unread,
        last_message: c.last.as_ref().map(|m| message_to_proto(c.id, m)),
        my_role: c.my_role as i32,
        peer_user_id: c.peer,
        unread_mention_count: c.mentions,
        ..Default::default()
    }
}

/// A message as the server would send it. The store keeps whether it was edited, not when: an
/// edited message gets its creation time as the edit time.
pub fn message_to_proto(conversation_id: u64, m: &Msg) -> v1::Message {
    v1::Message {
        message_id: m.id,
        conversation_id,
        seq: m.seq,
        sender_id: m.sender,
        text: m.text.clone(),
        reply_to_message_id: m.reply_to,
        mention_user_ids: m.mentions.clone(),
        created_at_ms: m.created_ms,
        edited_at_ms: if m.edited { m.created_ms.max(1) } else { 0 },
        deleted: m.deleted,
        reactions: m.reactions.clone(),
        pinned: m.pinned,
        attachments: m.attachments.clone(),
        written_at_ms: m.written_ms,
        ..Default::default()
    }
}

/// The newest loaded messages of a conversation whose history was loaded: those of the run that
/// reaches the head (above a gap left by a jump), at most [`MESSAGES_PER_CONVERSATION`].
fn history(c: &Conv) -> Option<History> {
    if !c.history_loaded {
        return None;
    }
    let start = c.gap.map_or(0, |g| g.before);
    let run: Vec<&Msg> = c.messages.range(start..).map(|(_, m)| m).collect();
    let skip = run.len().saturating_sub(MESSAGES_PER_CONVERSATION);
    let has_more = skip > 0 || c.gap.is_some() || c.has_older;
    if run.is_empty() && has_more {
        return None;
    }
    let messages = run[skip..].iter().map(|m| message_to_proto(c.id, m)).collect();
    Some(History { conversation_id: c.id, messages, has_more })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let mut s = Store::default();
        let me = v1::Me { user_id: 1, username: "ann".into(), ..Default::default() };
        let conv = v1::Conversation { conversation_id: 5, head_seq: 80, member_count: 2, ..Default::default() };
        s.reset(&me, &[conv], &[]);
        let page: Vec<v1::Message> = (1..=80)
            .map(|seq| v1::Message {
                message_id: 100 + seq,
                conversation_id: 5,
                seq,
                sender_id: 2,
                ..Default::default()
            })
            .collect();
        s.merge_history(5, 0, 0, &page, false);
        s
    }

    #[test]
    fn keeps_the_newest_messages_and_says_older_ones_exist() {
        let cache = Cache::from_store(&store());
        let h = &cache.histories[0];
        assert_eq!(h.messages.len(), MESSAGES_PER_CONVERSATION);
        assert_eq!((h.messages[0].seq, h.messages[49].seq), (31, 80));
        assert!(h.has_more, "30 older messages were cut");
        let mut back = Store::default();
        // As ui::cached::restore feeds it: the snapshot, then each conversation's page.
        let read = Cache::from_bytes(&cache.to_bytes()).unwrap();
        back.reset(&read.me.clone().unwrap_or_default(), &read.conversations, &read.users);
        for h in &read.histories {
            back.merge_history(h.conversation_id, 0, 0, &h.messages, h.has_more);
        }
        let c = &back.convs[&5];
        assert!(c.history_loaded && c.has_older && c.gap.is_none());
        assert_eq!(c.oldest_seq(), Some(31));
    }

    #[test]
    fn a_cut_short_or_padded_file_is_refused() {
        let bytes = Cache::from_store(&store()).to_bytes();
        assert!(Cache::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(Cache::from_bytes(&padded).is_err());
        assert!(Cache::from_bytes(&bytes[..4]).is_err());
    }
}
