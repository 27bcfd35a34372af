//! Changing an account after sign-in (docs/protocol.md §11.8-§11.11): password change and reset,
//! profile, deletion.

use super::*;

impl AuthService {
    /// §11.8 ChangePassword: every other session is revoked.
    pub async fn change_password(
        &self,
        conn: &Session,
        auth: &Caller,
        current: &str,
        new: &str,
    ) -> Result<u32, ServerError> {
        validate::password("change_password.new_password", new)?;
        let account_key = format!("user:{}", auth.user_id);
        self.0.limits.take(Limit::LoginAccount, &account_key).await?;
        let creds = self
            .store()
            .credentials(auth.user_id)
            .await?
            .ok_or_else(|| ServerError::Unauthenticated("account gone".into()))?;
        if !self.0.passwords.verify(current, creds.password_hash.as_deref()).await? {
            return Err(ServerError::PermissionDenied("the current password is wrong".into()));
        }
        self.0.limits.refund(Limit::LoginAccount, &account_key).await;
        let hash = self.0.passwords.hash(new).await?;
        let (this, auth) = (self.clone(), auth.clone());
        let now = now_ms() as i64;
        let entry = NewAudit {
            actor: Some(auth.user_id),
            target_user: Some(auth.user_id),
            target: auth.session_id.clone(),
            client_addr: conn.peer.ip().to_string(),
            ..NewAudit::new(AuditAction::PasswordChanged, now)
        };
        to_completion(async move {
            let revoked = this
                .store()
                .set_password(auth.user_id, &hash, Some(&auth.session_id), RevokeReason::PasswordChanged, now, &entry)
                .await?;
            this.revoke_live(&revoked, RevokeReason::PasswordChanged);
            Ok(revoked.len() as u32)
        })
        .await
    }

    /// §11.9 RequestPasswordReset: the same answer whether or not the account exists.
    pub async fn request_password_reset(&self, conn: &Session, identifier: &str) -> Result<u64, ServerError> {
        if identifier.is_empty() || identifier.len() > 254 {
            return Err(ServerError::invalid("request_password_reset.identifier", "a username, email or phone number"));
        }
        self.0.limits.take(Limit::CodeRequestIp, &conn.peer.ip().to_string()).await?;
        self.0.limits.take(Limit::CodeRequestDestination, &format!("reset:{}", identifier.to_lowercase())).await?;
        if let Some(user) = self.find_account(identifier).await? {
            let destination = format!("user:{}", user.id);
            let target = match (&user.email, &user.phone) {
                (Some(e), _) => Some(("email", e.clone())),
                (None, Some(p)) => Some(("sms", p.clone())),
                _ => None,
            };
            if let Some((channel, to)) = target {
                self.send_code(CodeKind::PasswordReset, &destination, Some(user.id), "password_reset", channel, &to)
                    .await?;
            }
        }
        Ok(self.0.cfg.code_ttl.as_millis() as u64)
    }

    async fn find_account(&self, identifier: &str) -> Result<Option<User>, ServerError> {
        if identifier.starts_with('+') {
            return Ok(self.store().user_by_phone(identifier).await?);
        }
        Ok(self.store().credentials_by_login(&identifier.to_lowercase()).await?.map(|c| c.user))
    }

    /// §11.9 ResetPassword: every session is revoked.
    pub async fn reset_password(
        &self,
        conn: &Session,
        identifier: &str,
        code: &str,
        new: &str,
    ) -> Result<(), ServerError> {
        validate::reset_password(code, new)?;
        self.0.limits.take(Limit::CodeVerifyIp, &conn.peer.ip().to_string()).await?;
        let Some(user) = self.find_account(identifier).await? else { return Err(bad_code()) };
        let destination = format!("user:{}", user.id);
        let hash = self.0.codes.hash(CodeKind::PasswordReset, &destination, code);
        let check = self
            .store()
            .check_code(CodeKind::PasswordReset, &destination, &hash, now_ms() as i64, self.0.cfg.code_max_attempts)
            .await?;
        if !matches!(check, CodeCheck::Valid { .. }) {
            // A wrong reset code is a failed attempt on the account (§28.1).
            self.record_failed_sign_in(conn, Some(user.id), identifier.to_lowercase()).await?;
            return Err(bad_code());
        }
        let password_hash = self.0.passwords.hash(new).await?;
        let this = self.clone();
        let now = now_ms() as i64;
        let entry = NewAudit {
            target_user: Some(user.id),
            client_addr: conn.peer.ip().to_string(),
            ..NewAudit::new(AuditAction::PasswordReset, now)
        };
        to_completion(async move {
            let revoked = this
                .store()
                .set_password(user.id, &password_hash, None, RevokeReason::PasswordReset, now, &entry)
                .await?;
            this.revoke_live(&revoked, RevokeReason::PasswordReset);
            Ok(())
        })
        .await
    }

    /// §11.10 GetMe.
    pub async fn me(&self, auth: &Caller) -> Result<User, ServerError> {
        self.store()
            .user(auth.user_id)
            .await?
            .filter(|u| !u.deleted)
            .ok_or_else(|| ServerError::Unauthenticated("account gone".into()))
    }

    /// §11.10 UpdateProfile.
    pub async fn update_profile(&self, auth: &Caller, update: ProfileUpdate) -> Result<User, ServerError> {
        if let Some(d) = &update.display_name {
            validate::text("update_profile.display_name", d, 64)?;
        }
        if let Some(s) = &update.status_text {
            validate::text("update_profile.status_text", s, 140)?;
        }
        self.store()
            .update_profile(auth.user_id, update)
            .await?
            .ok_or_else(|| ServerError::Unauthenticated("account gone".into()))
    }

    /// §11.11 DeleteAccount, first half: the caller proves it is them (the password, when the
    /// account has one; rate limited per account).
    ///
    /// # Errors
    /// `PERMISSION_DENIED` for a wrong password, `RESOURCE_EXHAUSTED` past the rate limit,
    /// `UNAUTHENTICATED` when the account is already gone.
    pub async fn confirm_deletion(&self, auth: &Caller, password: &str) -> Result<(), ServerError> {
        let creds = self
            .store()
            .credentials(auth.user_id)
            .await?
            .ok_or_else(|| ServerError::Unauthenticated("account gone".into()))?;
        if creds.password_hash.is_some() {
            let account_key = format!("user:{}", auth.user_id);
            self.0.limits.take(Limit::LoginAccount, &account_key).await?;
            if !self.0.passwords.verify(password, creds.password_hash.as_deref()).await? {
                return Err(ServerError::PermissionDenied("the password is wrong".into()));
            }
        }
        Ok(())
    }

    /// §11.11 DeleteAccount, second half: through the batched writer (so members see it in
    /// commit order), personal data removed, every session revoked, every group and channel left
    /// (§21); then [`DomainEvent::AccountDeleted`] and the revocation published. The edge unbinds
    /// the calling connection first and closes it after the response.
    pub async fn delete_account(&self, auth: &Caller) -> Result<(), ServerError> {
        self.delete_user(auth.user_id, None).await
    }

    /// Deletes `user`'s account as DeleteAccount does (see [`AuthService::delete_account`]),
    /// by the account itself (`by` is `None`) or by a server administrator (§26.4: refused
    /// `NOT_FOUND` for an account already deleted, `FAILED_PRECONDITION` for their own).
    pub async fn delete_user(&self, user: UserId, by: Option<crate::store::AdminOrigin>) -> Result<(), ServerError> {
        let this = self.clone();
        // To the end even if the client goes away: a deletion is always announced.
        to_completion(async move {
            // Who sees the user now, before leaving the groups makes them strangers.
            let audience = this.store().presence_audience(user).await?;
            let op = crate::store::WriteOp::DeleteAccount { user, now_ms: now_ms() as i64, by };
            let outcome = this.0.writer.submit(op).await?;
            // The deletion first (calls end as the user's, not as lost connections), then the
            // revocation that closes the connections.
            this.0.bus.publish(DomainEvent::AccountDeleted { user, audience });
            this.revoke_live(&outcome.revoked_sessions, RevokeReason::AccountDeleted);
            Ok(())
        })
        .await
    }
}
