//! Signed-in connections: the access token goes in Hello (docs/protocol.md §4.4); an expired or
//! refused token is refreshed (§11.6) under the profile's lock, and the new tokens are written
//! before they are used.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use confab_protocol::client::{Client, ClientError, Events};
use confab_protocol::v1::ErrorCode;

use crate::config::Settings;
use crate::creds::Credentials;

/// Refresh this long before the access token expires.
pub const REFRESH_MARGIN_MS: u64 = 60_000;

/// Why a signed-in connection could not be made, when retrying will not help.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("not signed in to {server} (profile {profile}): run `confab login USER` or `confab register USER`")]
    NotSignedIn { server: String, profile: String },
    #[error("the session ended ({0}): sign in again with `confab login`")]
    SessionEnded(String),
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Connects without signing in.
pub async fn connect_anonymous(settings: &Settings) -> anyhow::Result<(Client, Events)> {
    let opts = settings.connect_options()?;
    Client::connect(&settings.server, opts).await.with_context(|| format!("connecting to {}", settings.server))
}

/// Logs in (or registers) on a fresh connection and stores the credentials in the profile.
pub async fn sign_in(
    settings: &Settings,
    username: &str,
    password: &str,
    register: bool,
    display_name: Option<String>,
    email: Option<String>,
) -> anyhow::Result<confab_protocol::v1::AuthResult> {
    let (client, _events) = connect_anonymous(settings).await?;
    let a = if register {
        let r = confab_protocol::v1::Register {
            username: username.to_string(),
            password: password.to_string(),
            display_name,
            email,
            phone: None,
            device_name: settings.device_name.clone(),
        };
        client.register(r).await.context("register")?
    } else {
        match client.login(username, password, &settings.device_name).await {
            Ok(a) => a,
            // §26.3: the right password, but the account may not sign in.
            Err(e) if e.reason() == Some(confab_protocol::v1::ErrorReason::AccountSuspended) => {
                client.close().await;
                anyhow::bail!("login: this account is suspended by the server's administrators")
            }
            Err(e) => return Err(anyhow::Error::from(e).context("login")),
        }
    };
    client.close().await;
    settings.creds().save(&Credentials::from_auth(&settings.server, &settings.trust, &a))?;
    Ok(a)
}

/// A connection signed in as the profile's account.
#[derive(Debug)]
pub struct Connected {
    pub client: Client,
    pub events: Events,
    pub creds: Credentials,
}

/// Connects and signs in with the profile's credentials, refreshing them when needed.
pub async fn connect(settings: &Settings) -> anyhow::Result<Connected> {
    let creds = settings
        .credentials()?
        .ok_or_else(|| AuthError::NotSignedIn { server: settings.server.clone(), profile: settings.profile.clone() })?;
    if creds.access_valid(now_ms(), 5_000) {
        let mut opts = settings.connect_options()?;
        opts.access_token = Some(creds.access_token.expose().to_string());
        match Client::connect(&settings.server, opts).await {
            Ok((client, events)) => return Ok(Connected { client, events, creds }),
            Err(e) if e.code() == Some(ErrorCode::Unauthenticated) => {}
            Err(e) => return Err(e).with_context(|| format!("connecting to {}", settings.server)),
        }
    }
    let (client, events) = connect_anonymous(settings).await?;
    let mut creds = creds;
    refresh(settings, &client, &mut creds).await?;
    Ok(Connected { client, events, creds })
}

/// Refreshes the tokens on `client` (which ends up authenticated) and stores them. Another
/// process of the profile may have refreshed first: then its stored token is used instead.
pub async fn refresh(settings: &Settings, client: &Client, creds: &mut Credentials) -> anyhow::Result<()> {
    let store = settings.creds();
    // A file lock between processes of the profile, held for the refresh round trip (the
    // protocol requires refreshes to be serialised); waiting for it does not block the runtime.
    let locker = store.clone();
    let _lock = tokio::task::spawn_blocking(move || locker.lock()).await.context("locking the credentials")??;
    if let Some(disk) = store.load()?.filter(|d| d.session_id == creds.session_id) {
        if disk.refresh_token != creds.refresh_token && disk.access_valid(now_ms(), 5_000) {
            match client.authenticate(disk.access_token.expose()).await {
                Ok(_) => {
                    *creds = disk;
                    return Ok(());
                }
                Err(e) if e.code() == Some(ErrorCode::Unauthenticated) => {}
                Err(e) => return Err(e.into()),
            }
        }
        *creds = disk;
    }
    match client.refresh(creds.refresh_token.expose()).await {
        Ok(a) => {
            creds.update_tokens(&a);
            store.save(creds)?;
            Ok(())
        }
        Err(ClientError::Server(e)) if e.code() == ErrorCode::Unauthenticated => {
            Err(AuthError::SessionEnded(e.message).into())
        }
        Err(e) => Err(anyhow::Error::from(e).context("refreshing the access token")),
    }
}

/// Whether an error means signing in again is needed (retrying will not help).
pub fn is_auth_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<AuthError>().is_some()
}
