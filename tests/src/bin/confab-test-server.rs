//! `confab-test-server`: the server library in its own process for tests that kill and restart
//! it (crash tests). Takes the same flags as `confab-server`; once bound it prints one line,
//! `READY ws=ADDR quic=ADDR`, on stdout, so a test knows the ports without sleeping.

use std::io::Write;

use clap::Parser;
use confab_server::config::{Config, ConfigArgs};

/// Runs a Confab server and prints its bound addresses (for out-of-process tests).
#[derive(Debug, Parser)]
#[command(name = "confab-test-server", version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli.config)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_filter));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listeners = confab_server::Listeners::bind(&config).await?;
        let server = confab_server::Server::build(config).await?;
        let mut out = std::io::stdout();
        writeln!(out, "READY ws={} quic={}", listeners.ws_addr()?, listeners.quic_addr()?)?;
        out.flush()?;
        server
            .run(listeners, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}
