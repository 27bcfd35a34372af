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
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli.config)?;
    if cli.print_config {
        print!("{}", config.to_redacted_toml());
        return Ok(());
    }
    init_logging(&config);
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
