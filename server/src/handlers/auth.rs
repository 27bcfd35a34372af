//! Accounts, sessions and tokens (docs/protocol.md §11): wire requests to the accounts service
//! and its results back to wire messages.

use confab_protocol::CloseCode;
use confab_protocol::v1::{self, response::Result as R};

use super::session::{announce_presence, bind, bind_quietly, unbind, unbind_quietly};
use crate::auth::Issued;
use crate::error::ServerError;
use crate::session::Close;
use crate::session::{Caller, Session};
use crate::state::AppState;
use crate::store::{ProfileUpdate, RevokeReason};
use crate::wire;

type Out = Result<R, ServerError>;

/// Binds the connection to a new session and builds the answer. The session is checked live
/// once the connection is attached, as for a token (§11.5): a revocation (a suspension, §26.3)
/// that committed between the sign-in's commit and the attach would otherwise miss it. Not for
/// Refresh, which answers its rotation even when a racing reuse revokes the session at once
/// (§11.6: of two racing refreshes, one wins).
async fn auth_result(state: &AppState, session: &Session, i: Issued) -> Result<v1::AuthResult, ServerError> {
    bind_quietly(state, session, i.caller.clone());
    if let Err(e) = state.auth().check_live(&i.caller).await {
        unbind_quietly(state, session);
        return Err(e);
    }
    announce_presence(state, i.caller.user_id);
    Ok(wire::results::auth_result(i))
}

/// §11.2
pub(crate) async fn register(state: &AppState, session: &Session, r: v1::Register) -> Out {
    let i = state
        .auth()
        .register(
            session,
            &r.username,
            &r.password,
            r.display_name.as_deref(),
            r.email.as_deref(),
            r.phone.as_deref(),
            &r.device_name,
        )
        .await?;
    Ok(R::Register(auth_result(state, session, i).await?))
}

/// §11.3
pub(crate) async fn login(state: &AppState, session: &Session, r: v1::Login) -> Out {
    let i = state.auth().login(session, &r.identifier, &r.password, &r.device_name).await?;
    Ok(R::Login(auth_result(state, session, i).await?))
}

/// §11.4
pub(crate) async fn request_code(state: &AppState, session: &Session, r: v1::RequestCode) -> Out {
    check_code_purpose(&r)?;
    let (expires_in_ms, max_attempts) = state.auth().request_code(session, &r.phone).await?;
    Ok(R::RequestCode(v1::RequestCodeResult { expires_in_ms, max_attempts }))
}

/// §11.4: sign-in is the only purpose defined; anything else is `INVALID_ARGUMENT`.
pub(crate) fn check_code_purpose(r: &v1::RequestCode) -> Result<(), ServerError> {
    if r.purpose() != v1::CodePurpose::SignIn {
        return Err(ServerError::invalid("request_code.purpose", "only CODE_PURPOSE_SIGN_IN is defined"));
    }
    Ok(())
}

/// §11.4
pub(crate) async fn verify_code(state: &AppState, session: &Session, r: v1::VerifyCode) -> Out {
    let i = state.auth().verify_code(session, &r.phone, &r.code, &r.device_name, r.username.as_deref()).await?;
    Ok(R::VerifyCode(auth_result(state, session, i).await?))
}

/// §11.5 (and Hello.access_token, §4.4): binds the connection before checking the session in
/// the store, so a revocation racing the check still reaches it; unbinds when the check fails.
pub(crate) async fn authenticate_token(
    state: &AppState,
    session: &Session,
    token: &str,
) -> Result<Caller, ServerError> {
    let caller = state.auth().verify_token(token)?;
    // Attached first, so a revocation racing the check reaches this connection; announced only
    // once the session proved live.
    bind_quietly(state, session, caller.clone());
    if let Err(e) = state.auth().check_live(&caller).await {
        unbind_quietly(state, session);
        return Err(e);
    }
    announce_presence(state, caller.user_id);
    Ok(caller)
}

/// §11.5
pub(crate) async fn authenticate(state: &AppState, session: &Session, r: v1::Authenticate) -> Out {
    let a = authenticate_token(state, session, &r.access_token).await?;
    Ok(R::Authenticate(wire::auth_info(&a)))
}

/// §11.6
pub(crate) async fn refresh(state: &AppState, session: &Session, r: v1::Refresh) -> Out {
    let i = state.auth().refresh(session, &r.refresh_token).await?;
    bind(state, session, i.caller.clone());
    Ok(R::Refresh(wire::results::auth_result(i)))
}

/// §11.7
pub(crate) async fn logout(state: &AppState, session: &Session, a: &Caller) -> Out {
    unbind(state, session);
    state.auth().logout(session, a).await?;
    Ok(R::Logout(v1::LogoutResult {}))
}

/// §11.7
pub(crate) async fn list_sessions(state: &AppState, a: &Caller) -> Out {
    let (sessions, current) = state.auth().list_sessions(a).await?;
    Ok(R::ListSessions(v1::ListSessionsResult {
        sessions: sessions.into_iter().map(|s| wire::session(s, &current)).collect(),
    }))
}

/// §11.7
pub(crate) async fn revoke_session(state: &AppState, session: &Session, a: &Caller, r: v1::RevokeSession) -> Out {
    state.auth().revoke_session(session, a, &r.session_id).await?;
    Ok(R::RevokeSession(v1::RevokeSessionResult {}))
}

/// §11.8
pub(crate) async fn change_password(state: &AppState, session: &Session, a: &Caller, r: v1::ChangePassword) -> Out {
    let revoked_sessions = state.auth().change_password(session, a, &r.current_password, &r.new_password).await?;
    Ok(R::ChangePassword(v1::ChangePasswordResult { revoked_sessions }))
}

/// §11.9
pub(crate) async fn request_password_reset(state: &AppState, session: &Session, r: v1::RequestPasswordReset) -> Out {
    let expires_in_ms = state.auth().request_password_reset(session, &r.identifier).await?;
    Ok(R::RequestPasswordReset(v1::RequestPasswordResetResult { expires_in_ms }))
}

/// §11.9
pub(crate) async fn reset_password(state: &AppState, session: &Session, r: v1::ResetPassword) -> Out {
    state.auth().reset_password(session, &r.identifier, &r.code, &r.new_password).await?;
    Ok(R::ResetPassword(v1::ResetPasswordResult {}))
}

/// §11.10
pub(crate) async fn get_me(state: &AppState, a: &Caller) -> Out {
    Ok(R::GetMe(wire::me(&state.auth().me(a).await?)))
}

/// §28.4: the caller's own security events, newest first.
pub(crate) async fn list_security_events(state: &AppState, a: &Caller, r: v1::ListSecurityEvents) -> Out {
    let page = state.auth().security_events(a, r.before_seq, r.limit).await?;
    Ok(R::ListSecurityEvents(v1::ListSecurityEventsResult {
        events: page.items.iter().map(wire::audit_entry).collect(),
        has_more: page.has_more,
    }))
}

/// §11.10
pub(crate) async fn update_profile(state: &AppState, a: &Caller, r: v1::UpdateProfile) -> Out {
    if let Some(avatar) = &r.avatar_ref {
        state.media().own_image(a, avatar, crate::store::MediaPurpose::Avatar, "update_profile.avatar_ref").await?;
    }
    let update = ProfileUpdate { display_name: r.display_name, status_text: r.status_text, avatar_ref: r.avatar_ref };
    let u = state.auth().update_profile(a, update).await?;
    Ok(R::UpdateProfile(wire::me(&u)))
}

/// §11.11
pub(crate) async fn delete_account(state: &AppState, session: &Session, a: &Caller, r: v1::DeleteAccount) -> Out {
    state.auth().confirm_deletion(a, &r.password).await?;
    // This connection is answered, told and closed here; the revocation closes the others.
    unbind_quietly(state, session);
    if let Err(e) = state.auth().delete_account(a).await {
        // Nothing was deleted: the connection stays signed in.
        bind(state, session, a.clone());
        return Err(e);
    }
    session.outbox.push(wire::session_revoked_frame_bytes(&a.session_id, RevokeReason::AccountDeleted));
    session.close_after_response(Close::new(CloseCode::SessionRevoked, "session revoked"));
    Ok(R::DeleteAccount(v1::DeleteAccountResult {}))
}
