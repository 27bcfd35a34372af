//! Headless Chromium for tests: runs `web/tests/browser.mjs` (playwright-core driving the
//! system's Chromium through the meeting page) as a child process and speaks its line protocol:
//! one JSON line `{"ready": …}` once the browsers' own checks passed, then a line from us when
//! our checks are done, then `{"done": report}`. Everything it needs is looked up first, and a
//! missing piece fails the test with the reason and the command that provides it (scripts/test
//! installs them): these tests never skip.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use tokio::sync::mpsc;

/// Where the browser tests' tools are.
#[derive(Debug, Clone)]
pub struct BrowserEnv {
    /// The Chromium binary (`CONFAB_TEST_CHROMIUM`, else `/usr/bin/chromium`).
    pub chromium: PathBuf,
    /// The repository's `web/` directory, with its `node_modules`.
    pub web: PathBuf,
}

impl BrowserEnv {
    /// Finds Chromium, Node.js and `web/node_modules/playwright-core`, or says what is missing.
    pub fn find() -> anyhow::Result<Self> {
        let chromium =
            PathBuf::from(std::env::var("CONFAB_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
        ensure!(
            chromium.is_file(),
            "Chromium not found at {} (set CONFAB_TEST_CHROMIUM, or run ./scripts/test, which installs Debian's \
             `chromium` with apt-get: scripts/lib/web.sh)",
            chromium.display()
        );
        let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web");
        let node = std::process::Command::new("node").arg("--version").output();
        ensure!(
            node.as_ref().is_ok_and(|o| o.status.success()),
            "node not found: the browser tests need Node.js (see README, Browser tests)"
        );
        ensure!(
            web.join("node_modules/playwright-core").is_dir(),
            "{}/node_modules is missing: run `npm ci` in web/ (./scripts/test does)",
            web.display()
        );
        Ok(Self { chromium, web })
    }

    /// Starts `web/tests/browser.mjs` with `config` (its header comment documents it).
    pub fn run(&self, config: &Value) -> anyhow::Result<BrowserRun> {
        let mut child = Command::new("node")
            .arg(self.web.join("tests/browser.mjs"))
            .arg(config.to_string())
            .current_dir(&self.web)
            .env("CONFAB_TEST_CHROMIUM", &self.chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node web/tests/browser.mjs")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stdin = child.stdin.take().context("no stdin")?;
        // The script's lines, read on a thread of their own (tokio's process support is not
        // among the workspace's features).
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(BrowserRun { child, stdin: Some(stdin), lines })
    }
}

/// A running `browser.mjs`.
#[derive(Debug)]
pub struct BrowserRun {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Drop for BrowserRun {
    /// A test that failed half-way leaves no browser behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl BrowserRun {
    /// The next line of the script's protocol: the value under `key`, within `wait`; a
    /// `{"failed": …}` line fails with the script's reason.
    pub async fn expect(&mut self, key: &str, wait: Duration) -> anyhow::Result<Value> {
        let line = tokio::time::timeout(wait, self.lines.recv())
            .await
            .with_context(|| format!("browser.mjs: no `{key}` within {wait:?}"))?;
        let Some(line) = line else {
            let status = self.child.wait()?;
            bail!("browser.mjs exited ({status}) before `{key}`");
        };
        let v: Value = serde_json::from_str(&line).with_context(|| format!("browser.mjs said {line:?}"))?;
        if let Some(reason) = v.get("failed") {
            bail!("browser check failed: {}", reason.as_str().unwrap_or_default());
        }
        v.get(key).cloned().with_context(|| format!("browser.mjs: expected `{key}`, got {line}"))
    }

    /// Lets the script finish (closes the browser) and returns its report.
    pub async fn finish(mut self, wait: Duration) -> anyhow::Result<Value> {
        if let Some(mut stdin) = self.stdin.take() {
            stdin.write_all(b"done\n")?;
        }
        let report = self.expect("done", wait).await?;
        let status = self.child.wait()?;
        ensure!(status.success(), "browser.mjs exited with {status}");
        Ok(report)
    }
}
