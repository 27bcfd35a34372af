//! The Confab terminal client as a library: the subcommands, the network actor with its sync
//! engine, configuration and credentials, and the full-screen client. `src/main.rs` is the
//! `confab` binary on top.

pub mod cache;
pub mod cli;
pub mod config;
pub mod creds;
pub mod emoji;
pub mod format;
pub mod highlight;
pub mod links;
pub mod media;
pub mod net;
pub mod session;
pub mod store;
pub mod trust;
pub mod ui;
