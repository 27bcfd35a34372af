//! `register`, `login`, `logout`, `whoami`, `sessions`.

use std::io::BufRead;

use anyhow::{Context, bail};
use confab_protocol::v1;
use serde_json::json;

use super::PasswordArgs;
use super::output::datetime;
use crate::config::Settings;
use crate::session;

/// The password: `--password-stdin`, else `CONFAB_PASSWORD`, else a prompt on the terminal.
fn read_password(args: &PasswordArgs, confirm: bool) -> anyhow::Result<String> {
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Ok(p) = std::env::var("CONFAB_PASSWORD") {
        return Ok(p);
    }
    let p = rpassword::prompt_password("Password: ")
        .context("no terminal to ask for the password: use --password-stdin or CONFAB_PASSWORD")?;
    if confirm && rpassword::prompt_password("Password again: ")? != p {
        bail!("the passwords differ");
    }
    Ok(p)
}

fn with_device(settings: &Settings, args: &PasswordArgs) -> Settings {
    let mut s = settings.clone();
    if let Some(d) = &args.device {
        s.device_name = d.clone();
    }
    s
}

fn signed_in(settings: &Settings, a: &v1::AuthResult, verb: &str, json: bool) {
    let me = a.me.clone().unwrap_or_default();
    if json {
        println!(
            "{}",
            json!({"user_id": me.user_id, "username": me.username, "server": settings.server,
                   "profile": settings.profile, "session_id": a.session_id, "created": a.created})
        );
    } else {
        println!("{verb} {} (user {}) on {} [profile {}]", me.username, me.user_id, settings.server, settings.profile);
    }
}

pub async fn register(
    settings: &Settings,
    username: &str,
    display_name: Option<String>,
    email: Option<String>,
    args: &PasswordArgs,
    json: bool,
) -> anyhow::Result<()> {
    let password = read_password(args, true)?;
    let a = session::sign_in(&with_device(settings, args), username, &password, true, display_name, email).await?;
    signed_in(settings, &a, "registered", json);
    Ok(())
}

pub async fn login(settings: &Settings, identifier: &str, args: &PasswordArgs, json: bool) -> anyhow::Result<()> {
    let password = read_password(args, false)?;
    let a = session::sign_in(&with_device(settings, args), identifier, &password, false, None, None).await?;
    signed_in(settings, &a, "signed in as", json);
    Ok(())
}

pub async fn logout(settings: &Settings) -> anyhow::Result<()> {
    let store = settings.creds();
    if store.load()?.is_none() {
        bail!("not signed in (profile {})", settings.profile);
    }
    let result = match session::connect(settings).await {
        Ok(c) => {
            let r = c.client.logout().await;
            c.client.close().await;
            r.map_err(anyhow::Error::from)
        }
        Err(e) => Err(e),
    };
    store.remove()?;
    // The cache, the unsent messages and the drafts are the account's: they go with the tokens.
    crate::cache::remove(&settings.profile_dir)?;
    let unsent = crate::net::forget_outbox(settings)?;
    if unsent > 0 {
        eprintln!("dropped {} written but never sent", crate::format::plural(unsent as u64, "message", "messages"));
    }
    match std::fs::remove_file(settings.profile_dir.join(crate::config::TUI_STATE_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    match result {
        Ok(()) => println!("signed out (profile {})", settings.profile),
        Err(e) => println!("forgot the tokens of profile {}; the server was not told: {e:#}", settings.profile),
    }
    Ok(())
}

pub async fn whoami(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let c = session::connect(settings).await?;
    let me = c.client.me().await?;
    c.client.close().await;
    if json {
        println!(
            "{}",
            json!({"user_id": me.user_id, "username": me.username, "display_name": me.display_name,
                   "email": me.email, "status_text": me.status_text, "avatar_ref": me.avatar_ref, "server": settings.server,
                   "profile": settings.profile, "session_id": c.creds.session_id})
        );
    } else {
        let display = if me.display_name.is_empty() { String::new() } else { format!(" ({})", me.display_name) };
        println!("{}{display}, user {} on {} [profile {}]", me.username, me.user_id, settings.server, settings.profile);
    }
    Ok(())
}

pub async fn sessions(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let c = session::connect(settings).await?;
    let list = c.client.sessions().await?;
    c.client.close().await;
    for s in list {
        if json {
            println!(
                "{}",
                json!({"session_id": s.session_id, "device_name": s.device_name, "client_name": s.client_name,
                       "created_at_ms": s.created_at_ms, "last_seen_at_ms": s.last_seen_at_ms, "current": s.current})
            );
        } else {
            let cur = if s.current { "* " } else { "  " };
            println!("{cur}{}  {}  last seen {}", s.session_id, s.device_name, datetime(s.last_seen_at_ms));
        }
    }
    Ok(())
}
