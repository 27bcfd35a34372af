//! `confab-conformance`: runs the conformance cases against a running Confab server (any
//! implementation) and reports each case with the docs/protocol.md section it checks.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use confab_conformance::cases::{self, Target};
use confab_protocol::client::Trust;

/// Runs the Confab conformance suite against a server.
#[derive(Debug, Parser)]
#[command(name = "confab-conformance", version, about)]
struct Cli {
    /// Server URL: ws://HOST:PORT/v1/ws or quic://HOST:PORT.
    #[arg(long)]
    url: String,
    /// Accept any server certificate (QUIC). For servers with self-signed certificates.
    #[arg(long, conflicts_with = "cert")]
    insecure: bool,
    /// Trust exactly this server certificate (PEM or DER).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Run only cases whose name or section contains TEXT.
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
    /// Write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print one JSON object per case and a summary object, instead of text.
    #[arg(long)]
    json: bool,
    /// Time allowed per case.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

struct Outcome {
    name: &'static str,
    section: &'static str,
    error: Option<String>,
    took: Duration,
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let trust = match (&cli.cert, cli.insecure) {
        (Some(p), _) => Trust::pinned_from_file(p)?,
        (None, true) => Trust::Insecure,
        (None, false) => Trust::SystemRoots,
    };
    let target = Target { url: cli.url.clone(), trust };
    let selected: Vec<_> = cases::all()
        .into_iter()
        .filter(|c| c.applies_to(&target))
        .filter(|c| cli.filter.as_ref().is_none_or(|f| c.name.contains(f.as_str()) || c.section.contains(f.as_str())))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut outcomes = Vec::new();
    let mut out = std::io::stdout();
    for case in selected {
        let started = Instant::now();
        let (timeout, target) = (cli.timeout, target.clone());
        let result = runtime.block_on(async move { tokio::time::timeout(timeout, (case.run)(target)).await });
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some(format!("timed out after {:?}", cli.timeout)),
        };
        let o = Outcome { name: case.name, section: case.section, error, took: started.elapsed() };
        if cli.json {
            let v = serde_json::json!({
                "case": o.name,
                "section": o.section,
                "passed": o.error.is_none(),
                "error": o.error,
                "ms": o.took.as_secs_f64() * 1e3,
            });
            writeln!(out, "{v}")?;
        } else {
            match &o.error {
                None => writeln!(out, "ok    {:<8} {} ({:.0} ms)", o.section, o.name, o.took.as_secs_f64() * 1e3)?,
                Some(e) => writeln!(out, "FAIL  {:<8} {}: {e}", o.section, o.name)?,
            }
        }
        outcomes.push(o);
    }
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    let passed = outcomes.len() - failed;
    if cli.json {
        writeln!(out, "{}", serde_json::json!({ "passed": passed, "failed": failed }))?;
    } else {
        writeln!(out, "{passed} passed, {failed} failed")?;
    }
    if let Some(path) = &cli.junit {
        let mut x = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"confab-conformance\" tests=\"{}\" failures=\"{failed}\">\n",
            outcomes.len()
        );
        for o in &outcomes {
            x.push_str(&format!(
                "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
                xml(o.section),
                xml(o.name),
                o.took.as_secs_f64()
            ));
            if let Some(e) = &o.error {
                x.push_str(&format!("<failure message=\"{}\"/>", xml(e)));
            }
            x.push_str("</testcase>\n");
        }
        x.push_str("</testsuite>\n");
        std::fs::write(path, x)?;
    }
    out.flush()?;
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
