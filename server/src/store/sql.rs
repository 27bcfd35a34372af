//! The SQL both backends share, written once: `impl_store!` expands to the `Store` impl for a
//! backend struct with `pool` and `metrics` fields (its session methods forward to
//! `sessions_sql`). Placeholders are `$1, $2, …` in ascending order of first use, which
//! PostgreSQL and SQLite both read positionally.

/// Escapes LIKE wildcards so a user's prefix matches literally (used with `ESCAPE '\'`).
pub(super) fn escape_like(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Maps a unique violation to the field it concerns.
pub(super) fn conflict(e: sqlx::Error) -> super::StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        let text = format!("{} {}", db.constraint().unwrap_or(""), db.message());
        for field in ["username", "email", "phone"] {
            if text.contains(&format!("{field}_key")) || text.contains(&format!("users.{field}")) {
                return super::StoreError::Conflict(field);
            }
        }
    }
    super::StoreError::Database(e)
}

macro_rules! impl_store {
    ($store:ty, $backend:expr) => {
        use sqlx::Row as _;
        use $crate::store::types::*;
        use $crate::store::conv_types::NotificationRec;
        use $crate::store::rows::{CredentialsRow, NotificationRow, USER_COLUMNS, UserRow, user_columns_of};
        use $crate::store::sessions_sql::SessionSql;
        use $crate::store::sql::{SqlBackend, conflict};
        use $crate::store::{Instance, Store, StoreError, timed};

        fn sql(s: String) -> sqlx::AssertSqlSafe<String> {
            sqlx::AssertSqlSafe(s)
        }

        impl $store {
            async fn init_instance(&self) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO instance (id, epoch, created_at_ms) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
                    .bind($crate::store::new_epoch()?)
                    .bind($crate::store::now_ms())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn backend(&self) -> $crate::store::Backend {
                $backend
            }

            async fn ping(&self) -> Result<(), StoreError> {
                timed(&self.metrics, "ping", async {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                })
                .await
            }

            async fn instance(&self) -> Result<Instance, StoreError> {
                timed(&self.metrics, "instance", async {
                    let row = sqlx::query("SELECT epoch, created_at_ms FROM instance WHERE id = 1").fetch_one(&self.pool).await?;
                    Ok(Instance { epoch: row.try_get(0)?, created_at_ms: row.try_get(1)? })
                })
                .await
            }

            async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
                let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
            }

            async fn close(&self) {
                self.pool.close().await;
            }

            async fn create_user(&self, u: NewUser) -> Result<User, StoreError> {
                timed(&self.metrics, "create_user", async {
                    let row = sqlx::query_as::<_, UserRow>(sql(format!(
                        "INSERT INTO users (username, username_key, display_name, email, email_key, phone, password_hash, created_at_ms, display_name_key) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {USER_COLUMNS}"
                    )))
                    .bind(&u.username)
                    .bind(&u.username_key)
                    .bind(&u.display_name)
                    .bind(&u.email)
                    .bind(&u.email_key)
                    .bind(&u.phone)
                    .bind(&u.password_hash)
                    .bind(u.created_at_ms)
                    .bind(confab_protocol::text::fold(&u.display_name))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(conflict)?;
                    Ok(row.into())
                })
                .await
            }

            async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
                timed(&self.metrics, "user", async {
                    let row = sqlx::query_as::<_, UserRow>(sql(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(User::from))
                })
                .await
            }

            async fn credentials_by_login(&self, key: &str) -> Result<Option<Credentials>, StoreError> {
                timed(&self.metrics, "credentials_by_login", async {
                    let row = sqlx::query_as::<_, CredentialsRow>(sql(format!(
                        "SELECT {USER_COLUMNS}, password_hash FROM users \
                         WHERE (username_key = $1 OR email_key = $1) AND deleted_at_ms IS NULL"
                    )))
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(|r| Credentials { user: r.user.into(), password_hash: r.password_hash }))
                })
                .await
            }

            async fn credentials(&self, id: UserId) -> Result<Option<Credentials>, StoreError> {
                timed(&self.metrics, "credentials", async {
                    let row = sqlx::query_as::<_, CredentialsRow>(sql(format!(
                        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE id = $1 AND deleted_at_ms IS NULL"
                    )))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(|r| Credentials { user: r.user.into(), password_hash: r.password_hash }))
                })
                .await
            }

            async fn user_by_phone(&self, phone: &str) -> Result<Option<User>, StoreError> {
                timed(&self.metrics, "user_by_phone", async {
                    let row = sqlx::query_as::<_, UserRow>(sql(format!(
                        "SELECT {USER_COLUMNS} FROM users WHERE phone = $1 AND deleted_at_ms IS NULL"
                    )))
                    .bind(phone)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(User::from))
                })
                .await
            }

            async fn update_profile(&self, id: UserId, p: ProfileUpdate) -> Result<Option<User>, StoreError> {
                timed(&self.metrics, "update_profile", async {
                    let row = sqlx::query_as::<_, UserRow>(sql(format!(
                        "UPDATE users SET display_name = COALESCE($1, display_name), status_text = COALESCE($2, status_text), \
                         display_name_key = COALESCE($4, display_name_key), avatar_ref = COALESCE($5, avatar_ref) \
                         WHERE id = $3 AND deleted_at_ms IS NULL RETURNING {USER_COLUMNS}"
                    )))
                    .bind(&p.display_name)
                    .bind(&p.status_text)
                    .bind(id)
                    .bind(p.display_name.as_deref().map(confab_protocol::text::fold))
                    .bind(&p.avatar_ref)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(User::from))
                })
                .await
            }

            async fn set_password(
                &self,
                id: UserId,
                hash: &str,
                keep_session: Option<&str>,
                reason: RevokeReason,
                now_ms: i64,
                entry: &$crate::store::NewAudit,
            ) -> Result<Vec<String>, StoreError> {
                timed(&self.metrics, "set_password", async {
                    let mut tx = self.pool.begin_with(<<$store as $crate::store::sql::HasDb>::Db as SqlBackend>::BEGIN).await?;
                    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2").bind(hash).bind(id).execute(&mut *tx).await?;
                    // Always with the `id <> $4` clause: `''` (no session's id) when none is kept.
                    let revoked = SessionSql::revoke_all(
                        &mut tx,
                        id,
                        Some(keep_session.unwrap_or("")),
                        reason,
                        now_ms,
                    )
                    .await?;
                    sqlx::query("DELETE FROM auth_codes WHERE user_id = $1 AND purpose = $2")
                        .bind(id)
                        .bind(CodeKind::PasswordReset as i32)
                        .execute(&mut *tx)
                        .await?;
                    $crate::store::audit_sql::AuditSql::append(&mut tx, std::slice::from_ref(entry)).await?;
                    tx.commit().await?;
                    Ok(revoked)
                })
                .await
            }

            async fn create_session(&self, s: NewSession) -> Result<SessionRecord, StoreError> {
                timed(&self.metrics, "create_session", SessionSql::create_session(&self.pool, s)).await
            }

            async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
                timed(&self.metrics, "session", SessionSql::session(&self.pool, id)).await
            }

            async fn touch_sessions(&self, touches: &[SessionTouch]) -> Result<(), StoreError> {
                timed(&self.metrics, "touch_sessions", SessionSql::touch_sessions(&self.pool, touches)).await
            }

            async fn list_sessions(&self, user: UserId) -> Result<Vec<SessionRecord>, StoreError> {
                timed(&self.metrics, "list_sessions", SessionSql::list_sessions(&self.pool, user)).await
            }

            async fn revoke_session(
                &self,
                user: UserId,
                id: &str,
                reason: RevokeReason,
                now_ms: i64,
                entry: &$crate::store::NewAudit,
            ) -> Result<bool, StoreError> {
                let f = SessionSql::revoke_session(&self.pool, user, id, reason, now_ms, entry);
                timed(&self.metrics, "revoke_session", f).await
            }

            async fn rotate_refresh(
                &self,
                old_hash: &[u8],
                new_hash: &[u8],
                now_ms: i64,
                new_expires_at_ms: i64,
                client_addr: &str,
            ) -> Result<RotateOutcome, StoreError> {
                let f = SessionSql::rotate_refresh(&self.pool, old_hash, new_hash, now_ms, new_expires_at_ms, client_addr);
                timed(&self.metrics, "rotate_refresh", f).await
            }

            async fn set_privacy(&self, user: UserId, read_receipts: Option<bool>, show_last_seen: Option<bool>) -> Result<(), StoreError> {
                timed(&self.metrics, "set_privacy", async {
                    sqlx::query("UPDATE users SET read_receipts = COALESCE($1, read_receipts), show_last_seen = COALESCE($2, show_last_seen) WHERE id = $3")
                        .bind(read_receipts.map(i32::from))
                        .bind(show_last_seen.map(i32::from))
                        .bind(user)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                })
                .await
            }

            async fn set_last_seen(&self, user: UserId, now_ms: i64) -> Result<(), StoreError> {
                sqlx::query("UPDATE users SET last_seen_at_ms = $1 WHERE id = $2").bind(now_ms).bind(user).execute(&self.pool).await?;
                Ok(())
            }

            async fn users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
                timed(&self.metrics, "users", async {
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        let row = sqlx::query_as::<_, UserRow>(sql(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
                            .bind(*id)
                            .fetch_optional(&self.pool)
                            .await?;
                        out.extend(row.map(User::from));
                    }
                    Ok(out)
                })
                .await
            }

            async fn search_users(&self, viewer: UserId, prefix: &str, after: &str, limit: u32) -> Result<Vec<User>, StoreError> {
                timed(&self.metrics, "search_users", async {
                    let escaped = $crate::store::sql::escape_like(&confab_protocol::text::fold(prefix));
                    let cols = user_columns_of("u");
                    let rows = sqlx::query_as::<_, UserRow>(sql(format!(
                        "SELECT {cols} FROM users u WHERE u.deleted_at_ms IS NULL AND u.username_key > $1 \
                         AND (u.username_key LIKE $2 ESCAPE '\\' OR u.display_name_key LIKE $2 ESCAPE '\\') \
                         AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.id AND b.blocked_id = $3) \
                         ORDER BY u.username_key LIMIT $4"
                    )))
                    .bind(after)
                    .bind(format!("{escaped}%"))
                    .bind(viewer)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().map(User::from).collect())
                })
                .await
            }

            async fn add_contact(&self, user: UserId, contact: UserId, now_ms: i64) -> Result<bool, StoreError> {
                let exists = sqlx::query("SELECT 1 FROM users WHERE id = $1 AND deleted_at_ms IS NULL").bind(contact).fetch_optional(&self.pool).await?;
                if exists.is_none() {
                    return Ok(false);
                }
                sqlx::query("INSERT INTO contacts (user_id, contact_id, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (user_id, contact_id) DO NOTHING")
                    .bind(user)
                    .bind(contact)
                    .bind(now_ms)
                    .execute(&self.pool)
                    .await?;
                Ok(true)
            }

            async fn remove_contact(&self, user: UserId, contact: UserId) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM contacts WHERE user_id = $1 AND contact_id = $2").bind(user).bind(contact).execute(&self.pool).await?;
                Ok(())
            }

            async fn contacts(&self, user: UserId) -> Result<Vec<User>, StoreError> {
                let cols = user_columns_of("u");
                let rows = sqlx::query_as::<_, UserRow>(sql(format!(
                    "SELECT {cols} FROM contacts c JOIN users u ON u.id = c.contact_id WHERE c.user_id = $1 ORDER BY u.username_key"
                )))
                .bind(user)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(User::from).collect())
            }

            async fn block(&self, user: UserId, other: UserId, now_ms: i64) -> Result<bool, StoreError> {
                let exists = sqlx::query("SELECT 1 FROM users WHERE id = $1").bind(other).fetch_optional(&self.pool).await?;
                if exists.is_none() {
                    return Ok(false);
                }
                sqlx::query("INSERT INTO blocks (user_id, blocked_id, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (user_id, blocked_id) DO NOTHING")
                    .bind(user)
                    .bind(other)
                    .bind(now_ms)
                    .execute(&self.pool)
                    .await?;
                Ok(true)
            }

            async fn unblock(&self, user: UserId, other: UserId) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2").bind(user).bind(other).execute(&self.pool).await?;
                Ok(())
            }

            async fn blocked_users(&self, user: UserId) -> Result<Vec<User>, StoreError> {
                let cols = user_columns_of("u");
                let rows = sqlx::query_as::<_, UserRow>(sql(format!(
                    "SELECT {cols} FROM blocks b JOIN users u ON u.id = b.blocked_id WHERE b.user_id = $1 ORDER BY u.username_key"
                )))
                .bind(user)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(User::from).collect())
            }

            async fn blockers(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
                let rows = sqlx::query("SELECT user_id FROM blocks WHERE blocked_id = $1").bind(user).fetch_all(&self.pool).await?;
                Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
            }

            async fn refold_keys(&self) -> Result<u64, StoreError> {
                let mut done = 0u64;
                for (select, update) in [
                    (
                        "SELECT id, display_name FROM users WHERE display_name_key = '' AND display_name <> '' LIMIT 1000",
                        "UPDATE users SET display_name_key = $1 WHERE id = $2",
                    ),
                    (
                        "SELECT id, title FROM conversations WHERE title_key = '' AND title <> '' LIMIT 1000",
                        "UPDATE conversations SET title_key = $1 WHERE id = $2",
                    ),
                ] {
                    loop {
                        let rows = sqlx::query(select).fetch_all(&self.pool).await?;
                        if rows.is_empty() {
                            break;
                        }
                        let mut tx = self.pool.begin().await?;
                        for r in &rows {
                            let (id, name): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
                            sqlx::query(update).bind(confab_protocol::text::fold(&name)).bind(id).execute(&mut *tx).await?;
                        }
                        tx.commit().await?;
                        done += rows.len() as u64;
                    }
                }
                Ok(done)
            }

            async fn deleted_members(&self) -> Result<Vec<UserId>, StoreError> {
                let rows = sqlx::query(sql(format!(
                    "SELECT DISTINCT m.user_id FROM members m JOIN users u ON u.id = m.user_id \
                     JOIN conversations c ON c.id = m.conversation_id \
                     WHERE u.deleted_at_ms IS NOT NULL AND c.kind <> {} ORDER BY m.user_id",
                    i32::from($crate::store::ConvKind::Direct)
                )))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
            }

            async fn presence_audience(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
                timed(&self.metrics, "presence_audience", async {
                    let rows = sqlx::query(
                        "SELECT DISTINCT m2.user_id FROM members m1 JOIN members m2 ON m2.conversation_id = m1.conversation_id \
                         WHERE m1.user_id = $1 AND m2.user_id <> $1 \
                         UNION SELECT contact_id FROM contacts WHERE user_id = $1",
                    )
                    .bind(user)
                    .fetch_all(&self.pool)
                    .await?;
                    let blocked = sqlx::query("SELECT blocked_id FROM blocks WHERE user_id = $1").bind(user).fetch_all(&self.pool).await?;
                    let blocked: Vec<UserId> = blocked.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
                    let mut out: Vec<UserId> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
                    out.retain(|u| !blocked.contains(u));
                    out.sort_unstable();
                    out.dedup();
                    Ok(out)
                })
                .await
            }

            async fn notifications(&self, user: UserId, before: i64, limit: u32, unread_only: bool) -> Result<(Vec<NotificationRec>, i64), StoreError> {
                timed(&self.metrics, "notifications", async {
                    let rows = sqlx::query_as::<_, NotificationRow>(
                        "SELECT id, user_id, kind, conversation_id, message_id, actor_id, role, created_at_ms, read_flag, report_id, report_action \
                         FROM notifications \
                         WHERE user_id = $1 AND id < $2 AND ($3 = 0 OR read_flag = 0) ORDER BY id DESC LIMIT $4",
                    )
                    .bind(user)
                    .bind(before)
                    .bind(i32::from(unread_only))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    let list = rows.into_iter().map(NotificationRec::from).collect();
                    let unread = sqlx::query("SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_flag = 0").bind(user).fetch_one(&self.pool).await?;
                    Ok((list, unread.try_get(0)?))
                })
                .await
            }

            async fn mark_notifications_read(&self, user: UserId, up_to: i64) -> Result<i64, StoreError> {
                sqlx::query("UPDATE notifications SET read_flag = 1 WHERE user_id = $1 AND id <= $2 AND read_flag = 0")
                    .bind(user)
                    .bind(up_to)
                    .execute(&self.pool)
                    .await?;
                let unread = sqlx::query("SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_flag = 0").bind(user).fetch_one(&self.pool).await?;
                Ok(unread.try_get(0)?)
            }

            async fn put_code(&self, c: NewCode) -> Result<(), StoreError> {
                timed(&self.metrics, "put_code", async {
                    sqlx::query(
                        "INSERT INTO auth_codes (purpose, destination, code_hash, user_id, created_at_ms, expires_at_ms, attempts, consumed_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, 0, NULL) \
                         ON CONFLICT (purpose, destination) DO UPDATE SET code_hash = excluded.code_hash, user_id = excluded.user_id, \
                         created_at_ms = excluded.created_at_ms, expires_at_ms = excluded.expires_at_ms, attempts = 0, consumed_at_ms = NULL",
                    )
                    .bind(c.kind as i32)
                    .bind(&c.destination)
                    .bind(&c.code_hash)
                    .bind(c.user_id)
                    .bind(c.created_at_ms)
                    .bind(c.expires_at_ms)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                })
                .await
            }

            async fn check_code(&self, kind: CodeKind, destination: &str, code_hash: &[u8], now_ms: i64, max_attempts: u32) -> Result<CodeCheck, StoreError> {
                timed(&self.metrics, "check_code", async {
                    let mut tx = self.pool.begin_with(<<$store as $crate::store::sql::HasDb>::Db as SqlBackend>::BEGIN).await?;
                    // Count the try first, so a code can never be tried more than max_attempts times.
                    let row = sqlx::query(
                        "UPDATE auth_codes SET attempts = attempts + 1 \
                         WHERE purpose = $1 AND destination = $2 AND consumed_at_ms IS NULL AND expires_at_ms > $3 AND attempts < $4 \
                         RETURNING code_hash, user_id",
                    )
                    .bind(kind as i32)
                    .bind(destination)
                    .bind(now_ms)
                    .bind(max_attempts as i32)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(row) = row else {
                        tx.commit().await?;
                        return Ok(CodeCheck::Invalid);
                    };
                    let stored: Vec<u8> = row.try_get(0)?;
                    let user_id: Option<UserId> = row.try_get(1)?;
                    let right: bool = subtle::ConstantTimeEq::ct_eq(stored.as_slice(), code_hash).into();
                    if right {
                        sqlx::query("UPDATE auth_codes SET consumed_at_ms = $1 WHERE purpose = $2 AND destination = $3")
                            .bind(now_ms)
                            .bind(kind as i32)
                            .bind(destination)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(if right { CodeCheck::Valid { user_id } } else { CodeCheck::Wrong })
                })
                .await
            }
        }
    };
}

pub(super) use impl_store;

/// Implemented by each backend store to name its sqlx database.
pub(super) trait HasDb {
    type Db: SqlBackend;
}

/// A database the shared SQL runs on.
pub(super) trait SqlBackend: sqlx::Database + super::rowset::PushRows {
    /// The statement a write transaction begins with: SQLite takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers never deadlock on upgrading a read lock.
    const BEGIN: &'static str;
    /// Which backend this is, where their SQL differs (search).
    const BACKEND: super::Backend;
    /// Ends a query that reads rows the transaction will decide on and write back, locking them
    /// against other writers until the commit (` FOR UPDATE OF m` on PostgreSQL, where several
    /// nodes write at once; nothing on SQLite, whose `BEGIN IMMEDIATE` already holds the only
    /// write lock).
    const LOCK_MEMBERS: &'static str;

    /// How many rows a statement changed (sqlx has no trait for it).
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

impl SqlBackend for sqlx::Sqlite {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const BACKEND: super::Backend = super::Backend::Sqlite;
    const LOCK_MEMBERS: &'static str = "";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

impl SqlBackend for sqlx::Postgres {
    const BEGIN: &'static str = "BEGIN";
    const BACKEND: super::Backend = super::Backend::Postgres;
    const LOCK_MEMBERS: &'static str = " FOR UPDATE OF m";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}
