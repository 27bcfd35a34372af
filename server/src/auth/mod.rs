//! The accounts service (docs/protocol.md §11): registration and sign-in (password or phone
//! code), sessions with access and refresh tokens, revocation reaching live sockets, password
//! change and reset, profile, deletion. Rate limits are checked before any password is hashed.

mod account;
pub mod codes;
pub mod keys;
pub mod limits;
pub mod password;
pub mod sender;
pub mod tokens;
pub mod touch;
pub mod validate;

use std::sync::Arc;

use crate::bus::{Bus, DomainEvent, to_completion};
use crate::config::{AuthConfig, CodeSenderKind};
use crate::error::ServerError;
use crate::session::{Caller, Session};
use crate::store::{
    AuditAction, CodeCheck, CodeKind, NewAudit, NewCode, NewSession, NewUser, ProfileUpdate, RevokeReason,
    RotateOutcome, SessionRecord, Store, StoreError, User, UserId,
};
use crate::writer::Writer;
use codes::CodeHasher;
use limits::{Limit, Limits};
use password::Passwords;
use sender::{CodeMessage, Delivery};
use tokens::Tokens;

/// Why the accounts service could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth setup: {0}")]
    Setup(String),
    #[error("invalid token")]
    InvalidToken,
}

impl From<AuthError> for ServerError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidToken => ServerError::Unauthenticated("invalid or expired access token".into()),
            AuthError::Setup(m) => ServerError::Internal(m),
        }
    }
}

/// Random bytes from the OS.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| AuthError::Setup(format!("random: {e}")))?;
    Ok(b)
}

/// Credentials issued to a device.
#[derive(Debug)]
pub struct Issued {
    /// Who the connection is now: the edge binds it to the hub.
    pub caller: Caller,
    pub user: User,
    pub session_id: String,
    pub access_token: String,
    pub access_expires_at_ms: u64,
    pub refresh_token: String,
    pub refresh_expires_at_ms: u64,
    pub created: bool,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    /// The batched writer: account deletion leaves conversations through it.
    writer: Writer,
    tokens: Tokens,
    passwords: Passwords,
    codes: CodeHasher,
    delivery: Delivery,
    limits: Limits,
    cfg: AuthConfig,
    /// Sessions' last use, written together (touch.rs).
    toucher: touch::Toucher,
}

/// Cheap-clone handle to the accounts service.
#[derive(Clone, Debug)]
pub struct AuthService(Arc<Inner>);

fn now_ms() -> u64 {
    confab_protocol::frames::now_ms()
}

/// The one answer to every failed sign-in, whatever failed.
fn bad_credentials() -> ServerError {
    ServerError::Unauthenticated("wrong username, email or password".into())
}

/// The audit entry of an account ending one of its sessions (`target`) from this connection.
fn session_entry(action: AuditAction, conn: &Session, auth: &Caller, target: &str, now_ms: i64) -> NewAudit {
    NewAudit {
        actor: Some(auth.user_id),
        target_user: Some(auth.user_id),
        target: target.to_string(),
        client_addr: conn.peer.ip().to_string(),
        ..NewAudit::new(action, now_ms)
    }
}

fn bad_code() -> ServerError {
    ServerError::Unauthenticated("invalid or expired code".into())
}

fn conflict(e: StoreError) -> ServerError {
    match e {
        StoreError::Conflict(field) => ServerError::AlreadyExists(format!("that {field} is already taken")),
        e => e.into(),
    }
}

impl AuthService {
    /// The token signer, for meeting rooms' invite and resume tokens (§25.2).
    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    /// Loads (or generates) the signing key and code secret ([`keys::load`]: configured paths,
    /// else the database on PostgreSQL, else the data dir), and starts code delivery.
    pub async fn new(
        cfg: &AuthConfig,
        data_dir: &std::path::Path,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        writer: Writer,
    ) -> Result<Self, AuthError> {
        let keys = keys::load(cfg, data_dir, store.as_ref()).await?;
        let tokens = Tokens::new(&keys.signing_pem, &cfg.issuer, &cfg.audience, cfg.access_token_ttl, cfg.leeway)?;
        let codes = CodeHasher::new(keys.code_secret);
        let limits = Limits::new(store.clone(), &cfg.rate_limits, &keys.code_secret);
        let sender: Arc<dyn sender::Sender> = match cfg.code_sender {
            CodeSenderKind::Log => {
                tracing::warn!("one-time codes go to the server log (code_sender = \"log\"): for development only");
                Arc::new(sender::LogSender)
            }
            CodeSenderKind::Webhook => {
                let url =
                    cfg.webhook_url.as_deref().ok_or_else(|| AuthError::Setup("webhook_url is not set".into()))?;
                let secret = cfg.webhook_secret.as_ref().map(|s| s.expose().to_string());
                Arc::new(sender::WebhookSender::new(url, secret).map_err(|e| AuthError::Setup(e.to_string()))?)
            }
        };
        let toucher = touch::Toucher::start(store.clone());
        Ok(Self(Arc::new(Inner {
            toucher,
            store,
            bus,
            writer,
            tokens,
            passwords: Passwords::new(cfg.hash_concurrency).await?,
            codes,
            delivery: Delivery::start(sender),
            limits,
            cfg: cfg.clone(),
        })))
    }

    fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }

    /// Creates a session for `user` on this connection; the caller binds the connection to it.
    async fn open_session(
        &self,
        conn: &Session,
        user: User,
        device_name: &str,
        created: bool,
    ) -> Result<Issued, ServerError> {
        let now = now_ms();
        let session_id = hex::encode(random_bytes::<16>()?);
        let (refresh_token, refresh_hash) = tokens::new_refresh_token()?;
        let refresh_expires_at_ms = now + self.0.cfg.refresh_token_ttl.as_millis() as u64;
        self.store()
            .create_session(NewSession {
                id: session_id.clone(),
                user_id: user.id,
                client_addr: conn.peer.ip().to_string(),
                device_name: device_name.to_string(),
                client_name: conn.client_name(),
                now_ms: now as i64,
                refresh_hash,
                refresh_expires_at_ms: refresh_expires_at_ms as i64,
            })
            .await?;
        let (access_token, access_expires_at_ms) = self.0.tokens.issue(user.id, &session_id, now)?;
        Ok(Issued {
            caller: Caller { user_id: user.id, session_id: session_id.clone(), expires_at_ms: access_expires_at_ms },
            user,
            session_id,
            access_token,
            access_expires_at_ms,
            refresh_token,
            refresh_expires_at_ms,
            created,
        })
    }

    /// Announces revoked sessions: their live connections get SessionRevoked and are closed,
    /// their calls end (subscribers of the bus).
    pub fn revoke_live(&self, sessions: &[String], reason: RevokeReason) {
        if !sessions.is_empty() {
            self.0.bus.publish(DomainEvent::SessionsRevoked { sessions: sessions.to_vec(), reason });
        }
    }

    /// §11.2 Register.
    #[allow(clippy::too_many_arguments)]
    pub async fn register(
        &self,
        conn: &Session,
        username: &str,
        password: &str,
        display_name: Option<&str>,
        email: Option<&str>,
        phone: Option<&str>,
        device_name: &str,
    ) -> Result<Issued, ServerError> {
        let (username_key, email_key) =
            validate::register(username, password, display_name, email, phone, device_name)?;
        self.0.limits.take(Limit::RegisterIp, &conn.peer.ip().to_string()).await?;
        let hash = self.0.passwords.hash(password).await?;
        let user = self
            .store()
            .create_user(NewUser {
                username: username.to_string(),
                username_key,
                display_name: display_name.unwrap_or("").to_string(),
                email: email.map(str::to_string),
                email_key,
                phone: phone.map(str::to_string),
                password_hash: Some(hash),
                created_at_ms: now_ms() as i64,
            })
            .await
            .map_err(conflict)?;
        self.open_session(conn, user, device_name, true).await
    }

    /// Appends a `sign_in_failed` entry (§28.1): `target` is what the attempt named (the login as
    /// folded, or the phone number), `user` the account it names when there is one, with the
    /// client's address.
    async fn record_failed_sign_in(
        &self,
        conn: &Session,
        user: Option<UserId>,
        target: String,
    ) -> Result<(), ServerError> {
        let entry = NewAudit {
            target_user: user,
            target,
            client_addr: conn.peer.ip().to_string(),
            ..NewAudit::new(AuditAction::SignInFailed, now_ms() as i64)
        };
        self.store().append_audit(&entry).await?;
        Ok(())
    }

    /// §11.3 Login: rate limits first, then one argon2 verification whether or not the account exists.
    pub async fn login(
        &self,
        conn: &Session,
        identifier: &str,
        password: &str,
        device_name: &str,
    ) -> Result<Issued, ServerError> {
        validate::login(identifier, password, device_name)?;
        let account_key = format!("acct:{}", identifier.to_lowercase());
        let ip_key = conn.peer.ip().to_string();
        self.0.limits.take(Limit::LoginIp, &ip_key).await?;
        self.0.limits.take(Limit::LoginAccount, &account_key).await?;
        let creds = self.store().credentials_by_login(&identifier.to_lowercase()).await?;
        let hash = creds.as_ref().and_then(|c| c.password_hash.as_deref());
        let ok = self.0.passwords.verify(password, hash).await?;
        match creds {
            Some(c) if ok => {
                // A success does not count against the account's budget.
                self.0.limits.refund(Limit::LoginAccount, &account_key).await;
                self.open_session(conn, c.user, device_name, false).await
            }
            other => {
                // Recorded whether or not the account exists (the name as folded is the target).
                self.record_failed_sign_in(conn, other.map(|c| c.user.id), identifier.to_lowercase()).await?;
                Err(bad_credentials())
            }
        }
    }

    /// §11.4 RequestCode: the same answer whether or not the number has an account.
    pub async fn request_code(&self, conn: &Session, phone: &str) -> Result<(u64, u32), ServerError> {
        validate::phone("request_code.phone", phone)?;
        self.0.limits.take(Limit::CodeRequestIp, &conn.peer.ip().to_string()).await?;
        self.0.limits.take(Limit::CodeRequestDestination, &format!("phone:{phone}")).await?;
        let user_id = self.store().user_by_phone(phone).await?.map(|u| u.id);
        self.send_code(CodeKind::SignIn, phone, user_id, "sign_in", "sms", phone).await
    }

    async fn send_code(
        &self,
        kind: CodeKind,
        destination: &str,
        user_id: Option<UserId>,
        purpose: &'static str,
        channel: &'static str,
        to: &str,
    ) -> Result<(u64, u32), ServerError> {
        let code = codes::generate()?;
        let now = now_ms();
        let expires_at_ms = now + self.0.cfg.code_ttl.as_millis() as u64;
        self.store()
            .put_code(NewCode {
                kind,
                destination: destination.to_string(),
                code_hash: self.0.codes.hash(kind, destination, &code),
                user_id,
                created_at_ms: now as i64,
                expires_at_ms: expires_at_ms as i64,
            })
            .await?;
        self.0.delivery.enqueue(CodeMessage { purpose, channel, to: to.to_string(), code, expires_at_ms });
        Ok((self.0.cfg.code_ttl.as_millis() as u64, self.0.cfg.code_max_attempts))
    }

    /// §11.4 VerifyCode: signs in, or signs up when the number has no account.
    pub async fn verify_code(
        &self,
        conn: &Session,
        phone: &str,
        code: &str,
        device_name: &str,
        username: Option<&str>,
    ) -> Result<Issued, ServerError> {
        let username_key = validate::verify_code(phone, code, device_name, username)?;
        self.0.limits.take(Limit::CodeVerifyIp, &conn.peer.ip().to_string()).await?;
        let hash = self.0.codes.hash(CodeKind::SignIn, phone, code);
        let check = self
            .store()
            .check_code(CodeKind::SignIn, phone, &hash, now_ms() as i64, self.0.cfg.code_max_attempts)
            .await?;
        if !matches!(check, CodeCheck::Valid { .. }) {
            // Recorded like a wrong password (§28.1), with the number as the target.
            let user = self.store().user_by_phone(phone).await?.map(|u| u.id);
            self.record_failed_sign_in(conn, user, phone.to_string()).await?;
            return Err(bad_code());
        }
        if let Some(user) = self.store().user_by_phone(phone).await? {
            return self.open_session(conn, user, device_name, false).await;
        }
        let (username, username_key) = match (username, username_key) {
            (Some(u), Some(k)) => (u.to_string(), k),
            _ => {
                let n = u32::from_le_bytes(random_bytes::<4>()?) % 100_000_000;
                let u = format!("user{n:08}");
                (u.clone(), u)
            }
        };
        let user = self
            .store()
            .create_user(NewUser {
                username,
                username_key,
                display_name: String::new(),
                email: None,
                email_key: None,
                phone: Some(phone.to_string()),
                password_hash: None,
                created_at_ms: now_ms() as i64,
            })
            .await
            .map_err(conflict)?;
        self.open_session(conn, user, device_name, true).await
    }

    /// §11.5 Authenticate (and Hello.access_token), first half: the token's signature and
    /// expiry. The edge binds the connection, then calls [`check_live`](Self::check_live), so a
    /// revocation racing the check still reaches the connection.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for a bad or expired token.
    pub fn verify_token(&self, token: &str) -> Result<Caller, ServerError> {
        let v = self.0.tokens.verify(token, now_ms())?;
        Ok(Caller { user_id: v.user_id, session_id: v.session_id, expires_at_ms: v.expires_at_ms })
    }

    /// §11.5 second half: the caller's session is live (not revoked, same user); records its use.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for a revoked or unknown session; store errors.
    pub async fn check_live(&self, caller: &Caller) -> Result<(), ServerError> {
        let live =
            self.store().session(&caller.session_id).await?.filter(|s| !s.revoked && s.user_id == caller.user_id);
        if live.is_none() {
            return Err(AuthError::InvalidToken.into());
        }
        self.0.toucher.touch(&caller.session_id, now_ms() as i64);
        Ok(())
    }

    /// Writes the sessions' last use recorded so far (shutdown; tests that read it back).
    pub async fn flush_touches(&self) {
        self.0.toucher.flush().await;
    }

    /// §11.6 Refresh: rotates the refresh token; reuse revokes the session.
    pub async fn refresh(&self, conn: &Session, refresh_token: &str) -> Result<Issued, ServerError> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(ServerError::Unauthenticated("invalid refresh token".into()));
        }
        let now = now_ms();
        let old_hash = tokens::hash_refresh_token(refresh_token);
        let (new_token, new_hash) = tokens::new_refresh_token()?;
        let refresh_expires_at_ms = now + self.0.cfg.refresh_token_ttl.as_millis() as u64;
        // A reused token revokes its session: the revocation is announced even if this request
        // is dropped.
        let (this, addr) = (self.clone(), conn.peer.ip().to_string());
        let rotated = to_completion(async move {
            let outcome = this
                .store()
                .rotate_refresh(&old_hash, &new_hash, now as i64, refresh_expires_at_ms as i64, &addr)
                .await?;
            if let RotateOutcome::Reused { session_id, user_id } = &outcome {
                tracing::warn!(user_id = %user_id, session = %session_id, "refresh token reused: session revoked");
                this.revoke_live(std::slice::from_ref(session_id), RevokeReason::RefreshReused);
            }
            Ok(outcome)
        })
        .await?;
        match rotated {
            RotateOutcome::Rotated(session) => {
                let user = self
                    .store()
                    .user(session.user_id)
                    .await?
                    .filter(|u| !u.deleted)
                    .ok_or_else(|| ServerError::Unauthenticated("invalid refresh token".into()))?;
                let (access_token, access_expires_at_ms) = self.0.tokens.issue(user.id, &session.id, now)?;
                Ok(Issued {
                    caller: Caller {
                        user_id: user.id,
                        session_id: session.id.clone(),
                        expires_at_ms: access_expires_at_ms,
                    },
                    user,
                    session_id: session.id,
                    access_token,
                    access_expires_at_ms,
                    refresh_token: new_token,
                    refresh_expires_at_ms,
                    created: false,
                })
            }
            RotateOutcome::Reused { .. } => {
                Err(ServerError::Unauthenticated("refresh token already used; the session is revoked".into()))
            }
            RotateOutcome::Invalid => Err(ServerError::Unauthenticated("invalid refresh token".into())),
        }
    }

    /// §11.7 Logout: ends the caller's session; its other connections are closed (the edge
    /// unbinds the calling connection first, so it is answered rather than closed).
    pub async fn logout(&self, conn: &Session, auth: &Caller) -> Result<(), ServerError> {
        let (this, auth) = (self.clone(), auth.clone());
        let now = now_ms() as i64;
        let entry = session_entry(AuditAction::LoggedOut, conn, &auth, &auth.session_id, now);
        to_completion(async move {
            this.store().revoke_session(auth.user_id, &auth.session_id, RevokeReason::LoggedOut, now, &entry).await?;
            this.revoke_live(std::slice::from_ref(&auth.session_id), RevokeReason::LoggedOut);
            Ok(())
        })
        .await
    }

    /// §28.4: the caller's own security events (`AuditAction::SECURITY` with the caller as
    /// target), newest first, entries below `before_seq` (0: from the newest).
    pub async fn security_events(
        &self,
        auth: &Caller,
        before_seq: u64,
        limit: u32,
    ) -> Result<crate::page::Slice<crate::store::AuditRec>, ServerError> {
        let limit = crate::page::page_limit(limit, 50, 100);
        let filter = crate::store::AuditFilter {
            target_user: Some(auth.user_id),
            actions: crate::store::AuditAction::SECURITY.to_vec(),
            before_seq: (before_seq > 0).then(|| i64::try_from(before_seq).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        let mut recs = self.store().audit_page(&filter, i64::from(limit) + 1).await?;
        // What another account did to this one (an administrator ending its sessions) shows
        // without who and from where (§28.4).
        for r in &mut recs {
            if r.entry.actor.is_some_and(|a| a != auth.user_id) {
                r.entry.actor = None;
                r.entry.client_addr.clear();
            }
        }
        Ok(crate::page::Slice::cut(recs, limit))
    }

    /// §11.7 ListSessions.
    pub async fn list_sessions(&self, auth: &Caller) -> Result<(Vec<SessionRecord>, String), ServerError> {
        Ok((self.store().list_sessions(auth.user_id).await?, auth.session_id.clone()))
    }

    /// §11.7 RevokeSession: another session of the caller's; NOT_FOUND for anything else.
    pub async fn revoke_session(&self, conn: &Session, auth: &Caller, session_id: &str) -> Result<(), ServerError> {
        if session_id == auth.session_id {
            return Err(ServerError::FailedPrecondition("use Logout to end this connection's own session".into()));
        }
        if session_id.len() > 64 {
            return Err(ServerError::NotFound("no such session".into()));
        }
        let (this, user, session_id) = (self.clone(), auth.user_id, session_id.to_string());
        let now = now_ms() as i64;
        let entry = session_entry(AuditAction::SessionRevoked, conn, auth, &session_id, now);
        to_completion(async move {
            if !this.store().revoke_session(user, &session_id, RevokeReason::Revoked, now, &entry).await? {
                return Err(ServerError::NotFound("no such session".into()));
            }
            this.revoke_live(&[session_id], RevokeReason::Revoked);
            Ok(())
        })
        .await
    }
}
