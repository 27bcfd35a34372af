//! What the tests of the `confab` binary share: a [`User`] with its own XDG directories (so its
//! own profile and tokens), running the binary against a test server.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// One user of the `confab` binary: own XDG directories, so own profile and tokens.
pub struct User {
    pub home: tempfile::TempDir,
    pub server: String,
    /// The server certificate to trust (CONFAB_CERT), for QUIC.
    pub cert: Option<PathBuf>,
}

impl User {
    pub fn new(server: &str) -> Self {
        Self { home: tempfile::tempdir().expect("tempdir"), server: server.to_string(), cert: None }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_confab"));
        let h = self.home.path();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("CONFAB_SERVER", &self.server)
            .env("CONFAB_PASSWORD", "correct horse battery");
        if let Some(cert) = &self.cert {
            c.env("CONFAB_CERT", cert);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).current_dir(self.home.path()).stdin(Stdio::null()).output().expect("run confab")
    }

    /// A file in this user's home directory (the commands' working directory).
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.home.path().join(name);
        std::fs::write(&p, bytes).expect("write file");
        p
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "confab {args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "one line on stderr: {err}");
        err
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "confab {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }

    pub fn json(&self, args: &[&str]) -> Vec<Value> {
        self.ok(args).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
    }

    pub fn with_stdin(&self, args: &[&str], input: &str) -> String {
        let mut child = self.command().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "confab {args:?} failed");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    pub fn data(&self) -> PathBuf {
        self.home.path().join("data")
    }
}
