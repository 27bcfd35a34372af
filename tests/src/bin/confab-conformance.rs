//! `confab-conformance`: runs the conformance cases against a running Confab server (any
//! implementation) and reports each case with the docs/protocol.md section it checks; with
//! `--code-sink` it also receives the server's one-time codes, for the cases that need them.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use confab_conformance::cases::{self, POOL_SIZE, Target};
use confab_conformance::inbox::CodeInbox;
use confab_protocol::client::Trust;

/// Runs the Confab conformance suite against a server.
///
/// Cases that need the one-time codes the server sends (phone sign-in, password reset) run only
/// with --code-sink: the runner then listens on that address for the server's code webhook
/// (configure the server with auth.code_sender = "webhook" and auth.webhook_url =
/// "http://ADDR/codes", reachable from the server). Without it they are reported as `skip` and
/// counted apart: a skipped case has not passed.
///
/// Cases share a few throwaway accounts registered at the start, and sign up their own where they
/// change an account itself; the run prints up front how many, and what the registration limit
/// will make it wait. The rate-limit cases assume the default limits. See "Running the
/// conformance suite" in docs/operations.md.
#[derive(Debug, Parser)]
#[command(name = "confab-conformance", version, about, long_about)]
struct Cli {
    /// Server URL: ws://HOST:PORT/v1/ws or quic://HOST:PORT. Repeat it to name several nodes of
    /// one cluster (all of one transport, all accepted by the same --cert or --insecure): each
    /// case's connections then go to the nodes in turn, round robin, so its clients spread over
    /// them.
    #[arg(long = "url", value_name = "URL", required = true)]
    urls: Vec<String>,
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
    /// Receive the server's one-time codes on ADDR (e.g. 0.0.0.0:7680): an HTTP listener for its
    /// code webhook (auth.webhook_url = "http://ADDR/codes"). Enables the cases that need codes.
    #[arg(long, value_name = "ADDR")]
    code_sink: Option<SocketAddr>,
    /// The server's auth.webhook_secret: code deliveries must carry its signature. Without it the
    /// sink accepts unsigned deliveries.
    #[arg(
        long,
        value_name = "SECRET",
        env = "CONFAB_CONFORMANCE_CODE_SINK_SECRET",
        requires = "code_sink",
        hide_env_values = true
    )]
    code_sink_secret: Option<String>,
}

/// How one case ended.
enum Verdict {
    Passed,
    Failed(String),
    /// Not run: the target lacks what the case needs (the runner option that provides it).
    Skipped(&'static str),
}

struct Outcome {
    name: &'static str,
    section: &'static str,
    verdict: Verdict,
    took: Duration,
}

/// The registration budget of the default configuration (docs/protocol.md §11.12): a burst of
/// 20 per client IP, then one more every 3 s. Servers do not announce their limits.
const DEFAULT_REGISTER_BURST: u32 = 20;
const DEFAULT_REGISTER_EVERY: Duration = Duration::from_secs(3);

/// What the run will wait for, printed before it starts: the sign-ups it makes and, at the
/// default registration limit, the longest it can spend waiting for that budget to refill.
fn registration_plan(own: u32) -> String {
    let total = POOL_SIZE as u32 + own;
    let over = total.saturating_sub(DEFAULT_REGISTER_BURST);
    let wait = match over {
        0 => "within its burst: no waiting".to_string(),
        n => format!(
            "{n} over its burst: up to ~{} s of waiting, less as the cases run meanwhile",
            (DEFAULT_REGISTER_EVERY * n).as_secs()
        ),
    };
    format!(
        "this run signs up {total} accounts from this address: {POOL_SIZE} shared by the cases that need only \
         signed-in users, {own} by the cases that need their own. Servers do not announce their registration \
         limit; at the default ({DEFAULT_REGISTER_BURST} at once, then 1 per {} s, protocol.md §11.12) that is \
         {wait}",
        DEFAULT_REGISTER_EVERY.as_secs()
    )
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
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let codes = match cli.code_sink {
        Some(addr) => Some(Arc::new(runtime.block_on(CodeInbox::bind(addr, cli.code_sink_secret.clone()))?)),
        None => None,
    };
    let target = Target::over_nodes(cli.urls.clone(), trust, codes)?;
    let selected: Vec<_> = cases::all()
        .into_iter()
        .filter(|c| c.applies_to(&target))
        .filter(|c| cli.filter.as_ref().is_none_or(|f| c.name.contains(f.as_str()) || c.section.contains(f.as_str())))
        .collect();
    let own: u32 = selected.iter().filter(|c| c.missing(&target).is_none()).map(|c| c.sign_ups()).sum();
    eprintln!("{}", registration_plan(own));
    let started = Instant::now();
    let fill = runtime.block_on(async { tokio::time::timeout(cli.timeout, target.pool.fill(&target)).await });
    match fill.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {:?}", cli.timeout))) {
        Ok(None) => {
            eprintln!("registered {POOL_SIZE} shared accounts in {:.1} s", started.elapsed().as_secs_f64())
        }
        Ok(Some(wait)) => eprintln!(
            "registered {POOL_SIZE} shared accounts in {:.1} s; the server already limited registrations from \
             this address (retry after {:.1} s): a recent run may have used its budget",
            started.elapsed().as_secs_f64(),
            wait.as_secs_f64()
        ),
        Err(e) => eprintln!("could not register the shared accounts ({e:#}); the cases that need them will fail"),
    }
    let mut outcomes = Vec::new();
    let mut out = std::io::stdout();
    for case in selected {
        let started = Instant::now();
        let verdict = match case.missing(&target) {
            Some(option) => Verdict::Skipped(option),
            None => {
                let (timeout, target) = (cli.timeout, target.clone());
                match runtime.block_on(async move { tokio::time::timeout(timeout, (case.run)(target)).await }) {
                    Ok(Ok(())) => Verdict::Passed,
                    Ok(Err(e)) => Verdict::Failed(format!("{e:#}")),
                    Err(_) => Verdict::Failed(format!("timed out after {:?}", cli.timeout)),
                }
            }
        };
        let o = Outcome { name: case.name, section: case.section, verdict, took: started.elapsed() };
        let ms = o.took.as_secs_f64() * 1e3;
        if cli.json {
            let (passed, error, needs) = match &o.verdict {
                Verdict::Passed => (true, None, None),
                Verdict::Failed(e) => (false, Some(e.as_str()), None),
                Verdict::Skipped(option) => (false, None, Some(*option)),
            };
            let mut v =
                serde_json::json!({ "case": o.name, "section": o.section, "passed": passed, "error": error, "ms": ms });
            if let Some(option) = needs {
                v["skipped"] = true.into();
                v["needs"] = option.into();
            }
            writeln!(out, "{v}")?;
        } else {
            match &o.verdict {
                Verdict::Passed => writeln!(out, "ok    {:<8} {} ({ms:.0} ms)", o.section, o.name)?,
                Verdict::Failed(e) => writeln!(out, "FAIL  {:<8} {}: {e}", o.section, o.name)?,
                Verdict::Skipped(option) => writeln!(out, "skip  {:<8} {}  (needs {option})", o.section, o.name)?,
            }
        }
        outcomes.push(o);
    }
    let count = |f: fn(&Verdict) -> bool| outcomes.iter().filter(|o| f(&o.verdict)).count();
    let passed = count(|r| matches!(r, Verdict::Passed));
    let failed = count(|r| matches!(r, Verdict::Failed(_)));
    let skipped = count(|r| matches!(r, Verdict::Skipped(_)));
    if cli.json {
        writeln!(out, "{}", serde_json::json!({ "passed": passed, "failed": failed, "skipped": skipped }))?;
    } else {
        writeln!(out, "{skipped} skipped")?;
        writeln!(out, "{passed} passed, {failed} failed")?;
    }
    if let Some(path) = &cli.junit {
        let mut x = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"confab-conformance\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\">\n",
            outcomes.len()
        );
        for o in &outcomes {
            x.push_str(&format!(
                "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
                xml(o.section),
                xml(o.name),
                o.took.as_secs_f64()
            ));
            match &o.verdict {
                Verdict::Passed => {}
                Verdict::Failed(e) => x.push_str(&format!("<failure message=\"{}\"/>", xml(e))),
                Verdict::Skipped(option) => x.push_str(&format!("<skipped message=\"needs {}\"/>", xml(option))),
            }
            x.push_str("</testcase>\n");
        }
        x.push_str("</testsuite>\n");
        std::fs::write(path, x)?;
    }
    out.flush()?;
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
