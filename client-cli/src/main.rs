//! `confab`: the Confab terminal client. With a subcommand it does one thing for a script;
//! without one it starts the full-screen client.

use clap::Parser;
use confab_cli::cli::{self, Cli};
use confab_cli::config::Settings;

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("confab: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Spawned tasks may still hold the connection; do not wait for them.
    runtime.shutdown_background();
    if let Err(e) = result {
        let line = format!("{e:#}").replace('\n', " ");
        eprintln!("confab: {line}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.global)?;
    match cli.command {
        Some(command) => cli::run(settings, command).await,
        None => confab_cli::ui::run(settings).await,
    }
}
