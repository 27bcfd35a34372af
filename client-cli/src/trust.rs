//! How the client trusts a server's certificate (the bottom layer: configuration and stored
//! credentials both name it).

use std::path::PathBuf;

/// How to trust the server's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustSetting {
    /// The system's roots.
    System,
    /// Exactly this certificate (PEM file).
    Pinned(PathBuf),
    /// Any certificate (development only).
    Insecure,
}
