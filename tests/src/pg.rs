//! Throwaway PostgreSQL databases for tests: one fresh database per test, dropped afterwards.
//! The server comes from `CONFAB_TEST_DATABASE_URL` (scripts/test sets it up).

use anyhow::{Context, bail};
use sqlx::Connection;

/// The variable naming the PostgreSQL server tests create databases on.
pub const ENV: &str = "CONFAB_TEST_DATABASE_URL";

/// The admin URL, or an error that names the fix. Never a silent skip.
pub fn admin_url() -> anyhow::Result<String> {
    match std::env::var(ENV) {
        Ok(u) if !u.is_empty() => Ok(u),
        _ => bail!(
            "{ENV} is not set: the PostgreSQL tests need a server. Run ./scripts/test (it starts a \
             throwaway PostgreSQL), or export {ENV}=postgres://USER@HOST:PORT/postgres"
        ),
    }
}

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    admin: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> anyhow::Result<Self> {
        let admin = admin_url()?;
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("random: {e}"))?;
        let name = format!("confab_t_{:016x}", u64::from_le_bytes(r));
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .with_context(|| format!("connecting to {ENV}; is the test PostgreSQL running?"))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
        conn.close().await?;
        let mut url = url_with_db(&admin, &name)?;
        if url.ends_with('/') {
            url.push_str(&name);
        }
        Ok(Self { admin, name, url })
    }

    pub async fn drop_db(&self) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.admin).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }

    /// Drops the database from a side thread with its own runtime, ignoring errors: for `Drop`
    /// implementations, when a test failed before it could call [`TestDatabase::drop_db`].
    pub fn drop_blocking(self) {
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(self.drop_db());
            }
        })
        .join();
    }
}

fn url_with_db(admin: &str, db: &str) -> anyhow::Result<String> {
    // postgres://user@host:port/dbname?params → replace the path.
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let scheme_end = base.find("://").context("database URL has no scheme")? + 3;
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    let mut url = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_replaces_the_path() {
        assert_eq!(
            super::url_with_db("postgres://u@h:5/postgres?host=/tmp", "x").expect("url"),
            "postgres://u@h:5/x?host=/tmp"
        );
        assert_eq!(super::url_with_db("postgres://u@h:5", "x").expect("url"), "postgres://u@h:5/x");
    }
}
