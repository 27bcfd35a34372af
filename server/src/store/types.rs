//! Domain types the store returns. Wire types never come out of the store.

/// An id newtype over an `i64` column: transparent to sqlx and serde, built from the number,
/// shown as the number. `wire` converts it to and from the wire's `u64`.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type, serde::Serialize,
            serde::Deserialize,
        )]
        #[sqlx(transparent)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl From<i64> for $name {
            fn from(id: i64) -> Self {
                Self(id)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
pub(crate) use id_type;

id_type!(
    /// A user's id: the `users.id` column, and the wire's `user_id`s (`wire` converts).
    UserId
);

/// An account, as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub status_text: String,
    /// The media id of the avatar (§22.10); empty when none.
    pub avatar_ref: String,
    pub created_at_ms: i64,
    pub has_password: bool,
    pub deleted: bool,
    pub read_receipts: bool,
    pub show_last_seen: bool,
    pub last_seen_at_ms: Option<i64>,
}

/// A user with the hash to check a password against.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: User,
    pub password_hash: Option<String>,
}

/// What creating an account needs. `*_key` fields are the case-folded unique keys.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub username_key: String,
    pub display_name: String,
    pub email: Option<String>,
    pub email_key: Option<String>,
    pub phone: Option<String>,
    pub password_hash: Option<String>,
    pub created_at_ms: i64,
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ProfileUpdate {
    pub display_name: Option<String>,
    pub status_text: Option<String>,
    /// A media id the media service checked (the caller's own AVATAR image), or empty to clear.
    pub avatar_ref: Option<String>,
}

/// A session's last use, to record (`Store::touch_sessions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTouch {
    /// The session id.
    pub id: String,
    /// When it was used, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// One device's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: UserId,
    pub device_name: String,
    pub client_name: String,
    pub created_at_ms: i64,
    pub last_seen_at_ms: i64,
    pub revoked: bool,
}

/// What creating a session needs, with its first refresh token (hash only).
#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: String,
    pub user_id: UserId,
    /// The client's address, for the audit log's sign-in entry.
    pub client_addr: String,
    pub device_name: String,
    pub client_name: String,
    pub now_ms: i64,
    pub refresh_hash: Vec<u8>,
    pub refresh_expires_at_ms: i64,
}

/// Why a session ended; stored, and sent in SessionRevoked (same numbers as the wire enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeReason {
    LoggedOut = 1,
    Revoked = 2,
    PasswordChanged = 3,
    PasswordReset = 4,
    RefreshReused = 5,
    AccountDeleted = 6,
    /// A server administrator suspended the account (§26.3).
    Suspended = 7,
}

impl RevokeReason {
    /// The reason with this wire number.
    pub fn from_wire(v: i32) -> Option<Self> {
        Some(match v {
            1 => Self::LoggedOut,
            2 => Self::Revoked,
            3 => Self::PasswordChanged,
            4 => Self::PasswordReset,
            5 => Self::RefreshReused,
            6 => Self::AccountDeleted,
            7 => Self::Suspended,
            _ => return None,
        })
    }
}

/// The result of presenting a refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was current: it is now spent, and `new_hash` is the session's refresh token.
    Rotated(SessionRecord),
    /// The token was already spent: the session has been revoked (reuse detection).
    Reused { session_id: String, user_id: UserId },
    /// Unknown, expired, or of a revoked session.
    Invalid,
}

/// What a code is for (same numbers as the wire's CodePurpose where one exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeKind {
    SignIn = 1,
    PasswordReset = 100,
}

/// A one-time code to store (hash only). A new code for the same kind and destination replaces the old.
#[derive(Clone, Debug)]
pub struct NewCode {
    pub kind: CodeKind,
    pub destination: String,
    pub code_hash: Vec<u8>,
    pub user_id: Option<UserId>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// The result of trying a code. Every try counts, right or wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right: the code is now consumed.
    Valid { user_id: Option<UserId> },
    /// Wrong, with tries left.
    Wrong,
    /// No live code: none sent, expired, consumed, or out of tries.
    Invalid,
}

/// One shared rate-limit bucket (table `rate_buckets`): which limit, and the key it counts for,
/// hashed by the caller (keys hold IP addresses, account names and phone numbers, which the table
/// must not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateBucket {
    /// The limit's name, e.g. `"login_ip"` (at most 32 bytes).
    pub kind: &'static str,
    /// A keyed hash of the key (32 bytes of HMAC-SHA256 in the accounts service).
    pub key_hash: Vec<u8>,
}
