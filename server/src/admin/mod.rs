//! Server administration (docs/protocol.md §26) and the audit log as administrators read it
//! (§28.3). Every request passes [`Admin::acting`] first: a caller who is not a server
//! administrator gets one `NOT_FOUND` whatever the request, and nothing else happens. The
//! changes drive other services (sessions through `auth`, media, the writer), so this module
//! sits above them (layer 8, like `rooms`).

mod content;
mod users;

use std::sync::Arc;

use confab_protocol::v1;

use crate::auth::AuthService;
use crate::bus::to_completion;
use crate::error::ServerError;
use crate::hub::Hub;
use crate::session::Caller;
use crate::store::{AuditAction, AuditFilter, ConvId, NewAudit, RevokeReason, Store, UserId, now_ms};
use crate::writer::Writer;

/// Longest suspension or quarantine reason, in bytes (§26.3, §26.7).
const MAX_REASON_BYTES: usize = 500;

/// The one answer to a caller who is not a server administrator (§26.1): the same for every
/// administration request, whatever its fields.
pub fn refused() -> ServerError {
    ServerError::NotFound("not found".into())
}

/// The answer for a user id that names no live account (§26.2).
fn no_such_user() -> ServerError {
    ServerError::NotFound("no such user".into())
}

struct Inner {
    store: Arc<dyn Store>,
    auth: AuthService,
    hub: Arc<Hub>,
    writer: Writer,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// The administration service: a cheap-clone handle.
#[derive(Clone, Debug)]
pub struct Admin(Arc<Inner>);

impl Admin {
    pub fn new(store: Arc<dyn Store>, auth: AuthService, hub: Arc<Hub>, writer: Writer) -> Self {
        Self(Arc::new(Inner { store, auth, hub, writer }))
    }

    /// The caller acting as a server administrator, from `client_addr` (§26.1). The flag is
    /// read from the store on every request, so revoking it takes effect at once.
    ///
    /// # Errors
    /// [`refused`] for anyone who is not a live server administrator; store errors as they are.
    pub async fn acting(&self, caller: &Caller, client_addr: String) -> Result<Acting, ServerError> {
        if !self.0.store.is_server_admin(caller.user_id).await? {
            return Err(refused());
        }
        Ok(Acting { admin: self.clone(), actor: caller.user_id, client_addr })
    }
}

/// A server administrator's request in progress: who acts, from where.
#[derive(Debug)]
pub struct Acting {
    admin: Admin,
    actor: UserId,
    client_addr: String,
}

impl Acting {
    fn store(&self) -> &dyn Store {
        self.admin.0.store.as_ref()
    }

    /// An audit entry of `action` by this administrator, now, about `target_user`.
    fn entry(&self, action: AuditAction, target_user: Option<UserId>) -> NewAudit {
        NewAudit {
            actor: Some(self.actor),
            target_user,
            client_addr: self.client_addr.clone(),
            ..NewAudit::new(action, now_ms())
        }
    }

    /// §26.3: suspends an account: its sessions end (their connections get SessionRevoked with
    /// reason SUSPENDED and close) and its sign-ins are refused until reactivated.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a missing id or a reason over 500 bytes; `NOT_FOUND` for no such
    /// live account; `FAILED_PRECONDITION` for the administrator's own account.
    pub async fn suspend(&self, r: v1::AdminSuspendUser) -> Result<v1::AdminSuspendUserResult, ServerError> {
        let user: UserId = crate::access::id("admin_suspend_user.user_id", r.user_id)?;
        if r.reason.len() > MAX_REASON_BYTES {
            return Err(ServerError::invalid("admin_suspend_user.reason", "at most 500 bytes"));
        }
        if user == self.actor {
            return Err(ServerError::FailedPrecondition("an administrator cannot suspend their own account".into()));
        }
        let now = now_ms();
        let entry = NewAudit {
            after: serde_json::json!({ "reason": r.reason }).to_string(),
            at_ms: now,
            ..self.entry(AuditAction::AccountSuspended, Some(user))
        };
        // To the end even if the administrator's connection goes away: revoked sessions are
        // always announced, so their connections close.
        let admin = self.admin.clone();
        let s = to_completion(async move {
            let s = admin.0.store.suspend_user(user, now, &entry).await?.ok_or_else(no_such_user)?;
            admin.0.auth.revoke_live(&s.revoked, RevokeReason::Suspended);
            Ok(s)
        })
        .await?;
        Ok(v1::AdminSuspendUserResult {
            sessions_revoked: s.revoked.len() as u32,
            suspended_at_ms: s.suspended_at_ms.max(0) as u64,
        })
    }

    /// §26.3: lifts a suspension; the account may sign in again.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a missing id; `NOT_FOUND` for no such live account.
    pub async fn reactivate(&self, r: v1::AdminReactivateUser) -> Result<v1::AdminReactivateUserResult, ServerError> {
        let user: UserId = crate::access::id("admin_reactivate_user.user_id", r.user_id)?;
        let entry = self.entry(AuditAction::AccountReactivated, Some(user));
        let reactivated = self.store().reactivate_user(user, &entry).await?.ok_or_else(no_such_user)?;
        Ok(v1::AdminReactivateUserResult { reactivated })
    }

    /// §26.5: ends every session of an account; it may sign in again.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a missing id; `NOT_FOUND` for no such live account.
    pub async fn revoke_sessions(
        &self,
        r: v1::AdminRevokeSessions,
    ) -> Result<v1::AdminRevokeSessionsResult, ServerError> {
        let user: UserId = crate::access::id("admin_revoke_sessions.user_id", r.user_id)?;
        let entry = self.entry(AuditAction::SessionsRevoked, Some(user));
        let admin = self.admin.clone();
        let revoked = to_completion(async move {
            let revoked = admin.0.store.revoke_user_sessions(user, now_ms(), &entry).await?.ok_or_else(no_such_user)?;
            admin.0.auth.revoke_live(&revoked, RevokeReason::Revoked);
            Ok(revoked)
        })
        .await?;
        Ok(v1::AdminRevokeSessionsResult { sessions_revoked: revoked.len() as u32 })
    }

    /// §28.3: the audit log with filters, newest first. The read is itself recorded
    /// (`admin_viewed`, target `admin_list_audit`), before it is made.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for more than 24 actions, or an action this server does not know.
    pub async fn list_audit(&self, r: v1::AdminListAudit) -> Result<v1::AdminListAuditResult, ServerError> {
        if r.actions.len() > 24 {
            return Err(ServerError::invalid("admin_list_audit.actions", "at most 24"));
        }
        let actions = r
            .actions
            .iter()
            .map(|a| {
                AuditAction::try_from(*a)
                    .map_err(|_| ServerError::invalid("admin_list_audit.actions", "unknown action"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let positive = |v: u64| (v > 0).then(|| i64::try_from(v).unwrap_or(i64::MAX));
        let filter = AuditFilter {
            actor: positive(r.actor_id).map(UserId),
            target_user: positive(r.target_user_id).map(UserId),
            target_conversation: positive(r.target_conversation_id).map(ConvId),
            actions,
            since_ms: positive(r.since_ms),
            before_seq: positive(r.before_seq),
        };
        let limit = crate::page::page_limit(r.limit, 50, 100);
        self.viewed("admin_list_audit", filter.target_user).await?;
        let recs = self.store().audit_page(&filter, i64::from(limit) + 1).await?;
        // After the page: every entry in it is at or below the head.
        let head = self.store().audit_head().await?;
        let page = crate::page::Slice::cut(recs, limit);
        Ok(v1::AdminListAuditResult {
            entries: page.items.iter().map(crate::wire::audit_entry).collect(),
            has_more: page.has_more,
            head_seq: head.seq.max(0) as u64,
            head_hash: head.hash.to_vec().into(),
        })
    }

    /// Records that this administrator read other users' data with `request` (§28.1
    /// `admin_viewed`), about `user` when the read named one.
    async fn viewed(&self, request: &str, user: Option<UserId>) -> Result<(), ServerError> {
        let entry = NewAudit { target: request.to_string(), ..self.entry(AuditAction::AdminViewed, user) };
        self.store().append_audit(&entry).await?;
        Ok(())
    }
}
