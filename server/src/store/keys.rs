//! Encryption at rest in the store (docs/operations.md "Encryption at rest"): the keyring that
//! finds, creates and caches data keys (one per conversation — or for files, or for the search
//! index — per period and generation, each kept wrapped by the operator's key-encryption key),
//! and the [`Sealer`] the SQL modules seal contents with before writing and open after reading.
//! Off (no key configured, database never encrypted), every function passes texts through.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::StoreConfig;
use crate::crypto::blind::BlindIndex;
use crate::crypto::{self, CryptoError, Kek, Place, SecretKey};

use super::conv_types::{ConvId, ConvView, LogBody, LogEvent, MessageRec};
use super::media_types::{AttachmentRec, MediaRec, UploadRec};
use super::{MessageId, StoreError};

/// What a data key seals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A conversation's message texts, edits, log entries and attachment names.
    Conversation(ConvId),
    /// Files: blobs, upload chunks, file names of media items and uploads.
    Media,
    /// The blind search index's HMAC key (one, never rotated by `rotate-data`).
    Search,
}

impl Scope {
    /// The name kept in `data_keys.scope`.
    pub fn name(&self) -> String {
        match self {
            Self::Conversation(c) => format!("c{}", c.0),
            Self::Media => "media".into(),
            Self::Search => "search".into(),
        }
    }
}

/// The database's encryption row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptionState {
    pub enabled_at_ms: i64,
    /// Data keys of this generation seal new contents (`keys rotate-data` adds one).
    pub generation: i64,
    pub rotated_at_ms: i64,
}

/// A data key row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub id: i64,
    pub scope: String,
    pub period: i64,
    pub generation: i64,
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

impl StoredKey {
    /// What the wrapping binds the key to: its slot (unique per database).
    pub fn slot(&self) -> String {
        slot_name(&self.scope, self.period, self.generation)
    }
}

fn slot_name(scope: &str, period: i64, generation: i64) -> String {
    format!("{scope}/{period}/{generation}")
}

/// The data-key table, as the keyring needs it (`keys_sql::SqlKeys` on each backend).
#[async_trait::async_trait]
pub trait KeyTable: Send + Sync + fmt::Debug {
    /// The encryption row; `None` for a database never encrypted.
    async fn state(&self) -> Result<Option<EncryptionState>, StoreError>;
    /// Marks the database encrypted (generation 1) and empties the search index, which the
    /// indexer rebuilds blind; returns the row (the existing one when already marked).
    async fn enable(&self, now_ms: i64) -> Result<EncryptionState, StoreError>;
    async fn keys_by_id(&self, ids: &[i64]) -> Result<Vec<StoredKey>, StoreError>;
    async fn key_in_slot(&self, scope: &str, period: i64, generation: i64) -> Result<Option<StoredKey>, StoreError>;
    /// Inserts a key unless the slot holds one already (another node was first).
    async fn insert_key(&self, key: &StoredKey, now_ms: i64) -> Result<(), StoreError>;
    /// Each key-encryption key id that wraps data keys, with how many.
    async fn kek_usage(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Removes search documents in clear (a node without the key indexed them) and resets the
    /// progress of their conversations; returns how many were removed.
    async fn purge_clear_index(&self) -> Result<u64, StoreError>;
    /// Marks every pass of the re-encryption job unfinished (a node wrote in clear).
    async fn restart_jobs(&self) -> Result<(), StoreError>;
}

struct Loaded {
    generation: i64,
    key: SecretKey,
}

/// The keys of an encrypted database.
struct Keyring {
    /// `[0]` wraps new keys; the others only unwrap.
    keks: Vec<Kek>,
    table: Arc<dyn KeyTable>,
    period_ms: i64,
    generation: AtomicI64,
    /// When the current generation began (its first pass of the job waits for every node).
    rotated_at_ms: AtomicI64,
    keys: RwLock<HashMap<i64, Arc<Loaded>>>,
    /// `(scope, period, generation)` → key id.
    slots: RwLock<HashMap<(Scope, i64, i64), i64>>,
    index: BlindIndex,
}

/// Most data keys kept unwrapped in memory; past it the caches start over (keys reload on use).
const MAX_CACHED_KEYS: usize = 100_000;

/// A server with encryption off watching for another node turning it on.
#[derive(Debug)]
struct Watch {
    table: Arc<dyn KeyTable>,
    encrypted: AtomicBool,
}

/// Seals and opens contents; a cheap clone. Off for a database that is not encrypted.
#[derive(Clone, Default)]
pub struct Sealer(Option<Arc<Keyring>>, Option<Arc<Watch>>);

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Sealer(off)"),
            Some(k) => f
                .debug_struct("Sealer")
                .field("keks", &k.keks.iter().map(|k| k.id.as_str()).collect::<Vec<_>>())
                .field("generation", &k.generation.load(Ordering::Relaxed))
                .finish_non_exhaustive(),
        }
    }
}

/// The error for a data key the write path did not prepare (a bug, never the client's).
fn unprepared(scope: Scope) -> CryptoError {
    CryptoError::Format(format!("no data key prepared for {}", scope.name()))
}

impl Sealer {
    /// A sealer that seals nothing.
    pub fn off() -> Self {
        Self(None, None)
    }

    /// Opens the keyring for `table`'s database: off when no key file is configured and the
    /// database was never encrypted; turns encryption on when a key is configured for the first
    /// time and `may_enable` (a server start; never a `keys` command).
    ///
    /// # Errors
    /// `Setup` when the database is encrypted and no key is configured (encryption cannot be
    /// turned off), a key file cannot be read, or data keys are wrapped by a key-encryption key
    /// that is not configured.
    pub async fn open(
        table: Arc<dyn KeyTable>,
        cfg: &StoreConfig,
        now_ms: i64,
        may_enable: bool,
    ) -> Result<Self, StoreError> {
        let state = table.state().await?;
        let Some(path) = &cfg.encryption_key_file else {
            return match state {
                None => Ok(Self(None, Some(Arc::new(Watch { table, encrypted: AtomicBool::new(false) })))),
                Some(_) => Err(StoreError::Setup(
                    "this database is encrypted at rest: start the server with its key-encryption key \
                     (--encryption-key-file, CONFAB_ENCRYPTION_KEY_FILE or store.encryption_key_file); \
                     encryption cannot be turned off"
                        .into(),
                )),
            };
        };
        let mut keks = vec![Kek::load(path)?];
        for p in &cfg.encryption_previous_key_files {
            let k = Kek::load(p)?;
            if !keks.iter().any(|have| have.id == k.id) {
                keks.push(k);
            }
        }
        for (kek_id, count) in table.kek_usage().await? {
            if !keks.iter().any(|k| k.id == kek_id) {
                return Err(CryptoError::MissingKek(format!(
                    "{kek_id} ({count} data keys; configured: {})",
                    keks.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", ")
                ))
                .into());
            }
        }
        let state = match state {
            Some(s) => {
                // What a node without the key wrote to the index meanwhile is rebuilt blind.
                let purged = table.purge_clear_index().await?;
                if purged > 0 {
                    tracing::warn!(
                        documents = purged,
                        "search documents in clear removed; the indexer rebuilds them blind"
                    );
                }
                s
            }
            None if !may_enable => return Ok(Self::off()),
            None => {
                let s = table.enable(now_ms).await?;
                tracing::info!(kek = %keks[0].id, "encryption at rest turned on for this database");
                s
            }
        };
        let period_ms = i64::try_from(cfg.data_key_period.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut ring = Keyring {
            keks,
            table,
            period_ms,
            generation: AtomicI64::new(state.generation),
            rotated_at_ms: AtomicI64::new(state.rotated_at_ms),
            keys: RwLock::default(),
            slots: RwLock::default(),
            index: BlindIndex::new(SecretKey::random()),
        };
        let (_, index_key) = ring.slot_key(Scope::Search, 0, 0, now_ms).await?;
        ring.index = BlindIndex::new(index_key);
        Ok(Self(Some(Arc::new(ring)), None))
    }

    /// The id of the key-encryption key that wraps new data keys; `None` when off.
    pub fn current_kek_id(&self) -> Option<String> {
        self.0.as_ref().map(|k| k.keks[0].id.clone())
    }

    /// `old` unwrapped by its KEK and wrapped by the current one.
    ///
    /// # Errors
    /// `MissingKek` when its KEK is not configured, `Inauthentic` when it does not unwrap.
    pub fn rewrap(&self, old: &StoredKey) -> Result<Vec<u8>, StoreError> {
        let Some(k) = &self.0 else { return Err(CryptoError::MissingKek(old.kek_id.clone()).into()) };
        let key = k.unwrap_stored(old)?;
        Ok(k.keks[0].wrap(&old.slot(), &key))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The blind search index, when encryption is on.
    pub fn blind_index(&self) -> Option<&BlindIndex> {
        self.0.as_ref().map(|k| &k.index)
    }

    /// The generation new contents are sealed under (0 when off).
    pub fn generation(&self) -> i64 {
        self.0.as_ref().map_or(0, |k| k.generation.load(Ordering::Relaxed))
    }

    /// Rereads the generation (after `keys rotate-data` on any node); the server calls it
    /// every few seconds.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        if let Some(k) = &self.0
            && let Some(s) = k.table.state().await?
        {
            k.generation.store(s.generation, Ordering::Relaxed);
            k.rotated_at_ms.store(s.rotated_at_ms, Ordering::Relaxed);
        }
        if let Some(w) = &self.1
            && !w.encrypted.load(Ordering::Relaxed)
            && w.table.state().await?.is_some()
        {
            // Another node turned encryption on: this one refuses to write in clear from now
            // on, and the job runs again over whatever it wrote.
            w.encrypted.store(true, Ordering::Relaxed);
            w.table.restart_jobs().await?;
            tracing::error!(
                "another node turned encryption at rest on: this server refuses writes; restart it with the key \
                 (--encryption-key-file)"
            );
        }
        Ok(())
    }

    /// Whether this server may write: not when it runs without the key on a database another
    /// node has encrypted since it started (its refresh found out).
    ///
    /// # Errors
    /// `Setup`, saying so.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        match &self.1 {
            Some(w) if w.encrypted.load(Ordering::Relaxed) => Err(StoreError::Setup(
                "the database was encrypted at rest by another node: restart this server with the key".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the refresher has anything to do (encryption on, or off and watching).
    pub fn watches(&self) -> bool {
        self.0.is_some() || self.1.is_some()
    }

    /// When the current generation began (0 when off).
    pub fn rotated_at_ms(&self) -> i64 {
        self.0.as_ref().map_or(0, |k| k.rotated_at_ms.load(Ordering::Relaxed))
    }

    /// Of `scopes`, those whose current data key at `at_ms` is not at hand (empty when off).
    pub fn unprepared(&self, scopes: impl IntoIterator<Item = Scope>, at_ms: i64) -> Vec<Scope> {
        let Some(k) = &self.0 else { return Vec::new() };
        let generation = k.generation.load(Ordering::Relaxed);
        let slots = k.slots.read().expect("keyring lock");
        scopes.into_iter().filter(|s| !slots.contains_key(&(*s, k.period(*s, at_ms), generation))).collect()
    }

    /// Makes sure the current data keys of `scopes` at `at_ms` are at hand, so the write path
    /// can seal without waiting; creates those that do not exist yet.
    ///
    /// # Errors
    /// When the database cannot be read or written.
    pub async fn prepare(&self, scopes: impl IntoIterator<Item = Scope>, at_ms: i64) -> Result<(), StoreError> {
        let Some(k) = &self.0 else { return Ok(()) };
        let generation = k.generation.load(Ordering::Relaxed);
        for scope in scopes {
            let period = k.period(scope, at_ms);
            if !k.slots.read().expect("keyring lock").contains_key(&(scope, period, generation)) {
                k.slot_key(scope, period, generation, at_ms).await?;
            }
        }
        Ok(())
    }

    /// The current key of `scope` at `at_ms` (id and key), creating it when needed; `None` when off.
    ///
    /// # Errors
    /// When the database cannot be read or written.
    pub async fn current_key(&self, scope: Scope, at_ms: i64) -> Result<Option<(i64, SecretKey)>, StoreError> {
        let Some(k) = &self.0 else { return Ok(None) };
        let generation = k.generation.load(Ordering::Relaxed);
        let period = k.period(scope, at_ms);
        let cached = k.slots.read().expect("keyring lock").get(&(scope, period, generation)).copied();
        if let Some(loaded) = cached.and_then(|id| k.cached(id).map(|l| (id, l))) {
            return Ok(Some((loaded.0, loaded.1.key.clone())));
        }
        Ok(Some(k.slot_key(scope, period, generation, at_ms).await?))
    }

    /// Data key `id`, loaded from the database when not cached.
    ///
    /// # Errors
    /// `UnknownKey` when the database does not hold it; when off, `UnknownKey` too.
    pub async fn key(&self, id: i64) -> Result<SecretKey, StoreError> {
        let Some(k) = &self.0 else { return Err(CryptoError::UnknownKey(id).into()) };
        k.load(&[id]).await?;
        k.cached(id).map(|l| l.key.clone()).ok_or_else(|| CryptoError::UnknownKey(id).into())
    }

    /// The generation of data key `id` (for the re-encryption job).
    ///
    /// # Errors
    /// As [`Sealer::key`].
    pub async fn key_generation(&self, id: i64) -> Result<i64, StoreError> {
        let Some(k) = &self.0 else { return Err(CryptoError::UnknownKey(id).into()) };
        k.load(&[id]).await?;
        k.cached(id).map(|l| l.generation).ok_or_else(|| CryptoError::UnknownKey(id).into())
    }

    /// `text` sealed for `place` under `scope`'s key prepared for `at_ms` (see
    /// [`Sealer::prepare`]), as kept in a text column; the text itself when off or empty.
    ///
    /// # Errors
    /// When the key was not prepared.
    pub fn seal_text(&self, scope: Scope, at_ms: i64, place: &Place<'_>, text: &str) -> Result<String, CryptoError> {
        let Some(k) = &self.0 else { return Ok(text.to_string()) };
        if text.is_empty() {
            return Ok(String::new());
        }
        // The current generation's key, or (a rotation landed since `prepare`) the newest one
        // prepared for this scope and period.
        let period = k.period(scope, at_ms);
        let id = {
            let slots = k.slots.read().expect("keyring lock");
            let generation = k.generation.load(Ordering::Relaxed);
            slots.get(&(scope, period, generation)).copied().or_else(|| {
                slots
                    .iter()
                    .filter(|((s, p, _), _)| *s == scope && *p == period)
                    .max_by_key(|((_, _, g), _)| *g)
                    .map(|(_, id)| *id)
            })
        }
        .ok_or_else(|| unprepared(scope))?;
        let loaded = k.cached(id).ok_or_else(|| unprepared(scope))?;
        Ok(crypto::to_text(&crypto::seal(id, &loaded.key, place, text.as_bytes())))
    }

    /// Opens every sealed text of `items` in place (plaintext ones stay as they are).
    ///
    /// # Errors
    /// `Inauthentic` for a sealed text that was altered or moved, `UnknownKey` for a key the
    /// database does not hold; a sealed text on a database with encryption off is `UnknownKey`.
    pub async fn open_all(&self, items: &mut [(Place<'_>, &mut String)]) -> Result<(), StoreError> {
        let mut sealed: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, (_, text)) in items.iter().enumerate() {
            if let Some(bytes) = crypto::from_text(text)? {
                sealed.push((i, bytes));
            }
        }
        if sealed.is_empty() {
            return Ok(());
        }
        let Some(k) = &self.0 else {
            let id = crypto::sealed_key_id(&sealed[0].1).unwrap_or(0);
            return Err(CryptoError::UnknownKey(id).into());
        };
        let mut ids: Vec<i64> = sealed.iter().filter_map(|(_, b)| crypto::sealed_key_id(b)).collect();
        ids.sort_unstable();
        ids.dedup();
        k.load(&ids).await?;
        for (i, bytes) in sealed {
            let id = crypto::sealed_key_id(&bytes).ok_or(CryptoError::Inauthentic)?;
            let loaded = k.cached(id).ok_or(CryptoError::UnknownKey(id))?;
            let (place, text) = &mut items[i];
            let plain = crypto::open(&loaded.key, place, &bytes)?;
            **text = String::from_utf8(plain).map_err(|_| CryptoError::Inauthentic)?;
        }
        Ok(())
    }

    /// Opens messages' texts (`messages.text`) and their attachments' names.
    ///
    /// # Errors
    /// As [`Sealer::open_all`].
    pub async fn open_messages<'a>(
        &self,
        msgs: impl IntoIterator<Item = &'a mut MessageRec>,
    ) -> Result<(), StoreError> {
        if self.0.is_none() {
            return Ok(());
        }
        let mut items: Vec<(Place<'_>, &mut String)> = Vec::new();
        for m in msgs {
            push_message(&mut items, m, None);
        }
        self.open_all(&mut items).await
    }

    /// Opens log entries' texts (posted and edited) and posted messages' attachment names.
    ///
    /// # Errors
    /// As [`Sealer::open_all`].
    pub async fn open_events(&self, events: &mut [LogEvent]) -> Result<(), StoreError> {
        if self.0.is_none() {
            return Ok(());
        }
        let mut items: Vec<(Place<'_>, &mut String)> = Vec::new();
        for e in events.iter_mut() {
            let (conv, seq) = (e.conversation_id.0, e.seq);
            match &mut e.body {
                LogBody::Posted(m) => push_message(&mut items, m, Some(Place::Log { conv, seq })),
                LogBody::Edited { text, .. } => items.push((Place::Log { conv, seq }, text)),
                _ => {}
            }
        }
        self.open_all(&mut items).await
    }

    /// Opens conversation views' last messages.
    ///
    /// # Errors
    /// As [`Sealer::open_all`].
    pub async fn open_views<'a>(&self, views: impl IntoIterator<Item = &'a mut ConvView>) -> Result<(), StoreError> {
        self.open_messages(views.into_iter().filter_map(|v| v.last_message.as_mut())).await
    }

    /// Opens attachment names as `attachments` lists them.
    ///
    /// # Errors
    /// As [`Sealer::open_all`].
    pub async fn open_attachments(&self, list: &mut [(MessageId, AttachmentRec)]) -> Result<(), StoreError> {
        if self.0.is_none() {
            return Ok(());
        }
        // Listed by message, then position: a message's n-th is at position n.
        let mut position = 0i64;
        let mut last = None;
        let mut items: Vec<(Place<'_>, &mut String)> = Vec::with_capacity(list.len());
        for (m, a) in list.iter_mut() {
            position = if last == Some(*m) { position + 1 } else { 0 };
            last = Some(*m);
            items.push((Place::Attachment { message: m.0, position, media: a.media_id.0.as_str() }, &mut a.file_name));
        }
        self.open_all(&mut items).await
    }

    /// Opens a media item's file name.
    ///
    /// # Errors
    /// As [`Sealer::open_all`].
    pub async fn open_media(&self, m: &mut MediaRec) -> Result<(), StoreError> {
        let MediaRec { id, file_name, .. } = m;
        self.open_all(&mut [(Place::MediaName { media: id.0.as_str() }, file_name)]).await
    }

    /// Opens an upload's file name.
    ///
    /// # Errors
    /// As [`Sealer::open_all`].
    pub async fn open_upload(&self, u: &mut UploadRec) -> Result<(), StoreError> {
        let UploadRec { id, file_name, .. } = u;
        self.open_all(&mut [(Place::UploadName { upload: id.0.as_str() }, file_name)]).await
    }
}

/// A message's text (at `place`, default `messages.text`'s) and attachment names, to open.
fn push_message<'a>(items: &mut Vec<(Place<'a>, &'a mut String)>, m: &'a mut MessageRec, place: Option<Place<'a>>) {
    let place = place.unwrap_or(Place::Message { conv: m.conversation_id.0, seq: m.seq });
    let MessageRec { id, text, attachments, .. } = m;
    items.push((place, text));
    for (position, a) in (0i64..).zip(attachments.iter_mut()) {
        let AttachmentRec { media_id, file_name, .. } = a;
        items.push((Place::Attachment { message: id.0, position, media: media_id.0.as_str() }, file_name));
    }
}

impl Keyring {
    /// The period of `scope` at `at_ms`: periods of different scopes start at different times
    /// (offset by a hash of the scope), so keys are not all created in the same instant.
    fn period(&self, scope: Scope, at_ms: i64) -> i64 {
        let offset = scope
            .name()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let offset = i64::try_from(offset % u64::try_from(self.period_ms).unwrap_or(1)).unwrap_or(0);
        match scope {
            Scope::Search => 0,
            _ => at_ms.saturating_add(offset).div_euclid(self.period_ms),
        }
    }

    fn cached(&self, id: i64) -> Option<Arc<Loaded>> {
        self.keys.read().expect("keyring lock").get(&id).cloned()
    }

    fn unwrap_stored(&self, s: &StoredKey) -> Result<SecretKey, StoreError> {
        let kek =
            self.keks.iter().find(|k| k.id == s.kek_id).ok_or_else(|| CryptoError::MissingKek(s.kek_id.clone()))?;
        Ok(kek.unwrap(&s.slot(), &s.wrapped)?)
    }

    fn remember(&self, scope: Option<Scope>, s: &StoredKey, key: SecretKey) {
        let mut keys = self.keys.write().expect("keyring lock");
        if keys.len() >= MAX_CACHED_KEYS {
            // Start over rather than grow without bound; the search key stays.
            keys.retain(|id, _| self.slots.read().expect("keyring lock").get(&(Scope::Search, 0, 0)) == Some(id));
            self.slots.write().expect("keyring lock").retain(|(scope, _, _), _| *scope == Scope::Search);
        }
        keys.insert(s.id, Arc::new(Loaded { generation: s.generation, key }));
        drop(keys);
        if let Some(scope) = scope {
            self.slots.write().expect("keyring lock").insert((scope, s.period, s.generation), s.id);
        }
    }

    /// Loads the keys of `ids` not cached yet.
    async fn load(&self, ids: &[i64]) -> Result<(), StoreError> {
        let missing: Vec<i64> = {
            let keys = self.keys.read().expect("keyring lock");
            ids.iter().copied().filter(|id| !keys.contains_key(id)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        for s in self.table.keys_by_id(&missing).await? {
            let key = self.unwrap_stored(&s)?;
            self.remember(None, &s, key);
        }
        Ok(())
    }

    /// The key in a slot, created (wrapped by the current KEK) when the slot is empty.
    async fn slot_key(
        &self,
        scope: Scope,
        period: i64,
        generation: i64,
        now_ms: i64,
    ) -> Result<(i64, SecretKey), StoreError> {
        let name = scope.name();
        let stored = match self.table.key_in_slot(&name, period, generation).await? {
            Some(s) => s,
            None => {
                let key = SecretKey::random();
                let kek = &self.keks[0];
                let mut new = StoredKey {
                    id: 0,
                    scope: name.clone(),
                    period,
                    generation,
                    kek_id: kek.id.clone(),
                    wrapped: Vec::new(),
                };
                new.wrapped = kek.wrap(&new.slot(), &key);
                self.table.insert_key(&new, now_ms).await?;
                self.table
                    .key_in_slot(&name, period, generation)
                    .await?
                    .ok_or_else(|| StoreError::Setup(format!("data key {} vanished as it was created", new.slot())))?
            }
        };
        let key = self.unwrap_stored(&stored)?;
        self.remember(Some(scope), &stored, key.clone());
        Ok((stored.id, key))
    }
}
