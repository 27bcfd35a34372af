//! Cluster settings (docs/operations.md "Several nodes"): the NATS server that links the nodes,
//! this node's id, and the heartbeat that tells the others it is alive.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How this node joins a cluster. Without `nats_url` the server runs alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `nats://HOST:PORT` (or several, comma-separated) of the NATS server linking the nodes.
    /// Needs PostgreSQL: the embedded SQLite store serves one node only.
    pub nats_url: Option<NatsUrl>,
    /// This node's name, unique in the cluster (letters, digits, `-`, `_`; at most 64). Unset: a
    /// random `node-` name chosen at start.
    pub node_id: Option<String>,
    /// First token of every NATS subject this cluster uses: several clusters can share one NATS
    /// server under different prefixes.
    pub subject_prefix: String,
    /// How often this node tells the others it is alive.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A node not heard from this long is dead: its devices go offline, its SFU rooms end.
    #[serde(with = "humantime_serde")]
    pub node_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            node_id: None,
            subject_prefix: "confab".into(),
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
        }
    }
}

/// Whether `s` may name a node or a subject token: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn is_token(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ClusterConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Some(id) = &self.node_id
            && !is_token(id)
        {
            return bad(format!("cluster.node_id must be 1 to 64 letters, digits, '-' or '_' (got {id:?})"));
        }
        if !is_token(&self.subject_prefix) {
            return bad("cluster.subject_prefix must be 1 to 64 letters, digits, '-' or '_'".into());
        }
        if let Some(url) = &self.nats_url {
            for one in url.expose().split(',') {
                match url::Url::parse(one.trim()) {
                    Ok(u) if matches!(u.scheme(), "nats" | "tls") && u.host().is_some() => {}
                    _ => return bad(format!("cluster.nats_url must be nats://HOST:PORT (got {})", url.redacted())),
                }
            }
        }
        if self.heartbeat_interval < Duration::from_millis(100) || self.heartbeat_interval > Duration::from_secs(60) {
            return bad("cluster.heartbeat_interval must be within 100ms..60s".into());
        }
        if self.node_timeout < 3 * self.heartbeat_interval {
            return bad("cluster.node_timeout must be at least three heartbeat intervals".into());
        }
        Ok(())
    }
}

/// A NATS URL whose credentials never reach Debug output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NatsUrl(String);

impl NatsUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its credentials; hand it only to the NATS client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL(s) with any user and password replaced.
    pub fn redacted(&self) -> String {
        self.0
            .split(',')
            .map(|one| match url::Url::parse(one.trim()) {
                Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
                    let _ = u.set_username("REDACTED");
                    let _ = u.set_password(None);
                    u.to_string()
                }
                Ok(u) => u.to_string(),
                Err(_) => "<unparseable URL>".into(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl std::fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::str::FromStr for NatsUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Self(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        let u = NatsUrl::new("nats://app:hunter2@nats-1:4222,nats://nats-2:4222");
        let shown = format!("{u:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("app@"), "{shown}");
        assert!(shown.contains("nats-2:4222"), "{shown}");
    }

    #[test]
    fn node_ids_are_tokens() {
        assert!(is_token("node-1") && is_token("eu_west_3"));
        assert!(!is_token("") && !is_token("a.b") && !is_token("a b") && !is_token(&"x".repeat(65)));
        let c = ClusterConfig { node_id: Some("a.b".into()), ..Default::default() };
        assert!(c.validate().is_err());
        let c = ClusterConfig { nats_url: Some(NatsUrl::new("http://x")), ..Default::default() };
        assert!(c.validate().is_err());
        ClusterConfig { nats_url: Some(NatsUrl::new("nats://127.0.0.1:4222")), ..Default::default() }
            .validate()
            .expect("valid");
    }
}
