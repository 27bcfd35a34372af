//! `confab-server`: parses configuration, sets up logging, binds, and runs the server library.

use clap::Parser;
use confab_server::config::{Config, ConfigArgs, LogFormat};
use confab_server::limits::DescriptorLimit;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator. Each password hash works in a 19 MiB block on a
/// hashing thread; glibc's malloc, once such a block has been freed, serves the next ones
/// from per-thread arenas and keeps them, so RSS grew by about one block per thread and never
/// came down (W6 in docs/benchmarks.md: 18.8 MB to 488 MB after 200 failed logins). mimalloc
/// gives such large blocks back to the OS when they are freed. The library stays
/// allocator-neutral: only this binary chooses.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With the `dhat-heap` feature, every allocation is recorded (docs/benchmarks.md, "Where the
/// memory goes"); dhat-heap.json is written when `main` returns.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

/// The Confab realtime messaging and calling server.
///
/// Settings come from built-in defaults, then the --config file, then CONFAB_* environment
/// variables, then flags. See docs/operations.md.
#[derive(Debug, Parser)]
#[command(name = "confab-server", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Encryption at rest: keys, rotation, re-encryption (docs/operations.md "Encryption at
    /// rest"). Give the same configuration as the server (key files included).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Server administrators (docs/operations.md "Administrators"): grant, revoke, list.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// The audit log (docs/operations.md "Audit log").
    Audit {
        #[command(subcommand)]
        action: AuditCmd,
    },
}

#[derive(Debug, clap::Subcommand)]
enum AdminAction {
    /// Make USER (a username, or #ID) a server administrator; recorded in the audit log.
    Grant { user: String },
    /// Take the flag back from USER; recorded in the audit log.
    Revoke { user: String },
    /// The server administrators.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum AuditCmd {
    /// Check the whole hash chain: every entry unaltered, none removed, inserted or reordered,
    /// and the chain ending at its recorded head. Exits 1 when it is broken. Print the head and
    /// keep it elsewhere: a later run that ends at another hash for that seq shows a rewrite.
    Verify {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum KeysAction {
    /// Whether the database is encrypted, its data keys by key-encryption key and generation,
    /// the re-encryption job's progress, and what is still stored in clear.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-wrap every data key under the current key-encryption key (--encryption-key-file),
    /// unwrapping with the previous ones (--encryption-previous-key-files). No message is
    /// rewritten; afterwards the previous key files can be retired.
    RotateKek,
    /// Start a new data-key generation: contents written from now on are sealed under new
    /// keys. Run `keys reencrypt` (or let the server's background job run) to re-seal old ones.
    RotateData,
    /// Seal everything stored in clear or under an older generation, now, with progress.
    /// Resumable: stopping it loses nothing.
    Reencrypt,
}

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    let cli = Cli::parse();
    let config = Config::load(&cli.config)?;
    if cli.print_config {
        print!("{}", config.to_redacted_toml());
        return Ok(());
    }
    init_logging(&config);
    if let Some(command) = cli.command {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return match command {
            Command::Keys { action } => runtime.block_on(keys(&config, action)),
            Command::Admin { action } => runtime.block_on(admin(&config, action)),
            Command::Audit { action: AuditCmd::Verify { json } } => {
                let intact = runtime.block_on(audit_verify(&config, json))?;
                if !intact {
                    std::process::exit(1);
                }
                Ok(())
            }
        };
    }
    // Before any other thread exists: every WebSocket connection holds a descriptor, and the
    // default soft limit (often 1,024) is far below what the server can serve.
    match DescriptorLimit::raise_soft_to_hard() {
        Ok(l) => tracing::info!(soft = ?l.soft, hard = ?l.hard, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit to its hard limit"),
    }
    tracing::debug!(?config, "configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listeners = confab_server::Listeners::bind(&config).await?;
        confab_server::run(config, listeners, shutdown_signal()).await?;
        Ok(())
    })
}

/// A user named on the command line: `#ID`, or a username (as folded).
async fn find_user(st: &dyn confab_server::store::Store, spec: &str) -> anyhow::Result<confab_server::store::User> {
    let found = match spec.strip_prefix('#').map(str::parse::<i64>) {
        Some(Ok(id)) => st.user(confab_server::store::UserId(id)).await?.filter(|u| !u.deleted),
        Some(Err(_)) => anyhow::bail!("{spec:?}: #ID takes a number"),
        None => st.credentials_by_login(&spec.to_lowercase()).await?.map(|c| c.user),
    };
    found.ok_or_else(|| anyhow::anyhow!("no live account {spec:?}"))
}

/// `confab-server admin …`.
async fn admin(config: &Config, action: AdminAction) -> anyhow::Result<()> {
    use confab_server::store::{self, AuditAction, NewAudit};
    let st = store::open_for_tools(config, confab_server::metrics::Metrics::new()).await?;
    let now = confab_protocol::frames::now_ms() as i64;
    match action {
        AdminAction::Grant { ref user } | AdminAction::Revoke { ref user } => {
            let grant = matches!(action, AdminAction::Grant { .. });
            let user = user.clone();
            let u = find_user(st.as_ref(), &user).await?;
            let kind = if grant { AuditAction::AdminGranted } else { AuditAction::AdminRevoked };
            let entry = NewAudit {
                target_user: Some(u.id),
                before: serde_json::json!({ "server_admin": !grant }).to_string(),
                after: serde_json::json!({ "server_admin": grant }).to_string(),
                client_addr: "cli".into(),
                ..NewAudit::new(kind, now)
            };
            let changed = st.set_server_admin(u.id, grant, &entry).await?;
            let is = if grant { "is" } else { "is not" };
            match changed {
                true => {
                    println!("#{} {} {is} a server administrator now (recorded in the audit log)", u.id, u.username)
                }
                false => println!("#{} {} {is} a server administrator already", u.id, u.username),
            }
        }
        AdminAction::List { json } => {
            let mut users = Vec::new();
            for id in st.server_admins().await? {
                if let Some(u) = st.user(id).await? {
                    users.push(u);
                }
            }
            if json {
                let list: Vec<_> =
                    users.iter().map(|u| serde_json::json!({"user_id": u.id.0, "username": u.username})).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if users.is_empty() {
                println!("no server administrators (grant one with `confab-server admin grant USER`)");
            } else {
                for u in users {
                    println!("#{} {}", u.id, u.username);
                }
            }
        }
    }
    st.close().await;
    Ok(())
}

/// `confab-server audit verify`: true when the chain is intact.
async fn audit_verify(config: &Config, json: bool) -> anyhow::Result<bool> {
    let st = confab_server::store::open_for_tools(config, confab_server::metrics::Metrics::new()).await?;
    let r = st.verify_audit().await?;
    st.close().await;
    let head_hash = hex::encode(r.head.hash);
    if json {
        let v = serde_json::json!({
            "entries": r.entries,
            "intact": r.broken.is_none(),
            "head_seq": r.head.seq,
            "head_hash": head_hash,
            "broken": r.broken.as_ref().map(|b| b.to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &r.broken {
            None => println!("{} entries, chain intact; head: entry {} hash {head_hash}", r.entries, r.head.seq),
            Some(b) => println!("chain BROKEN after {} intact entries: {b}", r.entries),
        }
    }
    Ok(r.broken.is_none())
}

/// `confab-server keys …`.
async fn keys(config: &Config, action: KeysAction) -> anyhow::Result<()> {
    use confab_server::store;
    let st = store::open_for_tools(config, confab_server::metrics::Metrics::new()).await?;
    match action {
        KeysAction::Status { json } => {
            let s = st.key_status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status_json(&s))?);
            } else {
                print_status(&s);
            }
        }
        KeysAction::RotateKek => {
            let n = st.rewrap_keys().await?;
            let kek = st.sealer().current_kek_id().unwrap_or_default();
            key_rotated(st.as_ref(), format!("kek:{kek}"), serde_json::json!({ "rewrapped": n })).await?;
            println!(
                "re-wrapped {n} data keys under key-encryption key {}",
                st.sealer().current_kek_id().unwrap_or_default()
            );
        }
        KeysAction::RotateData => {
            let g = st.rotate_data_keys(confab_protocol::frames::now_ms() as i64).await?;
            key_rotated(st.as_ref(), "data".into(), serde_json::json!({ "generation": g })).await?;
            println!(
                "data-key generation {g}: new contents are sealed under new keys (running servers follow within 5 s); \
                 `keys reencrypt` re-seals the older ones"
            );
        }
        KeysAction::Reencrypt => {
            let blobs = confab_server::blobs::open(&config.media, &config.data_dir).await?;
            let job = confab_server::keys::Reencryption::new(st.clone(), blobs);
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let stop = tokio_util::sync::CancellationToken::new();
            let ctrl_c = stop.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                ctrl_c.cancel();
            });
            let done = job
                .run_once(&stop, Some(&format!("keys-reencrypt-{}", std::process::id())), |p| {
                    bar.set_message(format!("{}: {} rows read, {} sealed", p.name, p.visited, p.rewritten));
                })
                .await?;
            bar.finish_and_clear();
            for p in done {
                println!(
                    "{:<18} {:>10} read {:>10} sealed{}",
                    p.name,
                    p.visited,
                    p.rewritten,
                    if p.finished { "" } else { " (stopped)" }
                );
            }
            if stop.is_cancelled() {
                println!("interrupted: run it again to resume");
            }
        }
    }
    st.close().await;
    Ok(())
}

/// Records a key rotation in the audit log (protocol.md §28.1 `key_rotated`), once it is done.
async fn key_rotated(
    st: &dyn confab_server::store::Store,
    target: String,
    after: serde_json::Value,
) -> anyhow::Result<()> {
    use confab_server::store::{AuditAction, NewAudit};
    let entry = NewAudit {
        target,
        after: after.to_string(),
        client_addr: "cli".into(),
        ..NewAudit::new(AuditAction::KeyRotated, confab_protocol::frames::now_ms() as i64)
    };
    st.append_audit(&entry).await?;
    Ok(())
}

fn status_json(s: &confab_server::store::keys_sql::KeyStatus) -> serde_json::Value {
    serde_json::json!({
        "encrypted": s.state.is_some(),
        "enabled_at_ms": s.state.map(|x| x.enabled_at_ms),
        "generation": s.state.map(|x| x.generation),
        "rotated_at_ms": s.state.map(|x| x.rotated_at_ms),
        "data_keys": s.keys.iter().map(|k| serde_json::json!({"kek_id": k.kek_id, "generation": k.generation, "count": k.count})).collect::<Vec<_>>(),
        "jobs": s.jobs.iter().map(|j| serde_json::json!({"name": j.name, "generation": j.generation, "cursor": j.cursor, "rewritten": j.rewritten, "finished_at_ms": j.finished_at_ms})).collect::<Vec<_>>(),
        "plaintext": s.plaintext.iter().map(|(n, c)| (n.clone(), serde_json::json!(c))).collect::<serde_json::Map<_, _>>(),
        "remaining": s.remaining.iter().map(|(n, c)| (n.clone(), serde_json::json!(c))).collect::<serde_json::Map<_, _>>(),
    })
}

fn print_status(s: &confab_server::store::keys_sql::KeyStatus) {
    let Some(state) = s.state else {
        println!("encryption at rest: off (start the server with --encryption-key-file to turn it on)");
        return;
    };
    println!("encryption at rest: on since {} ms, data-key generation {}", state.enabled_at_ms, state.generation);
    println!("data keys (key-encryption key, generation, count):");
    for k in &s.keys {
        println!("  {}  {:>3}  {}", k.kek_id, k.generation, k.count);
    }
    println!("re-encryption job (column, generation, sealed, state):");
    for j in &s.jobs {
        let state = if j.finished_at_ms.is_some() { "done".to_string() } else { format!("at {}", j.cursor) };
        println!("  {:<18} {:>3} {:>10}  {state}", j.name, j.generation, j.rewritten);
    }
    println!("stored in clear / left to visit:");
    for ((name, clear), (_, left)) in s.plaintext.iter().zip(&s.remaining) {
        println!("  {name:<18} {clear:>10} {left:>10}");
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
