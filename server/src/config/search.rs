//! Message search settings (docs/protocol.md §23, docs/operations.md "Search"): whether this node
//! indexes, how long a search waits for the index to catch up, and the indexer's safety sweep.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The search index and its indexer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Whether this node runs the indexer. Off: nothing is indexed here (another node of the
    /// cluster may still index) and SearchMessages answers from what the index already holds.
    pub indexing: bool,
    /// How long a search waits for the index to read what was committed before it (§23.6); past
    /// it, the answer reports the conversations still behind.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    /// How long new writes gather before the indexer's pass: fewer, larger transactions beside
    /// the writer's. A search never waits for it (it flushes what it reads).
    #[serde(with = "humantime_serde")]
    pub index_delay: Duration,
    /// How often the indexer looks for conversations whose log it has not read (commits of a
    /// node that died before indexing them, or of a node not indexing).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Searches run at once on this node; more wait for a turn, so searches never take every
    /// database connection from the writes.
    pub max_concurrent: u32,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            indexing: true,
            wait: Duration::from_secs(2),
            index_delay: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(30),
            max_concurrent: 4,
        }
    }
}

impl SearchConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.wait > Duration::from_secs(30) {
            return Err(ConfigError::Invalid("search.wait must be at most 30s".into()));
        }
        if self.index_delay > Duration::from_secs(60) {
            return Err(ConfigError::Invalid("search.index_delay must be at most 60s".into()));
        }
        if self.max_concurrent == 0 {
            return Err(ConfigError::Invalid("search.max_concurrent must be at least 1".into()));
        }
        if self.sweep_interval < Duration::from_secs(1) {
            return Err(ConfigError::Invalid("search.sweep_interval must be at least 1s".into()));
        }
        Ok(())
    }
}
