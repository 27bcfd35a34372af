//! Configuration: one typed struct, defaults in code, then the file (`config.toml` in the XDG
//! config directory), then `CONFAB_*` environment variables and flags (clap reads both).
//!
//! ```toml
//! default_profile = "work"
//! [profiles.work]
//! server = "wss://chat.example.com/v1/ws"
//! [notifications]
//! bell = true
//! desktop = false
//! [media]
//! downloads_dir = "~/Downloads"
//! opener = "xdg-open"
//! [keys]
//! down = ["j", "Down"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use confab_protocol::client::{ConnectOptions, Trust};
use serde::Deserialize;

use crate::creds::{CredStore, Credentials};
pub use crate::trust::TrustSetting;

/// The server used when nothing else names one.
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:7600/v1/ws";
/// The profile used when nothing else names one.
pub const DEFAULT_PROFILE: &str = "default";

/// Flags shared by every subcommand; each also reads its `CONFAB_*` variable.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct GlobalArgs {
    /// Account profile: its own server, credentials and state.
    #[arg(long, short = 'p', env = "CONFAB_PROFILE", global = true)]
    pub profile: Option<String>,
    /// Server URL: ws://HOST:PORT/v1/ws, wss://…, or quic://HOST:PORT.
    #[arg(long, short, env = "CONFAB_SERVER", global = true)]
    pub server: Option<String>,
    /// Trust exactly this server certificate (PEM or DER), e.g. confab-data/quic-cert.pem.
    #[arg(long, env = "CONFAB_CERT", value_name = "FILE", global = true, conflicts_with = "insecure")]
    pub cert: Option<PathBuf>,
    /// Accept any server certificate. For development only.
    #[arg(long, env = "CONFAB_INSECURE", global = true)]
    pub insecure: bool,
    /// Configuration file [default: $XDG_CONFIG_HOME/confab/config.toml].
    #[arg(long, env = "CONFAB_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

/// The configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub default_profile: Option<String>,
    pub profiles: BTreeMap<String, ProfileFile>,
    pub ui: UiConfig,
    pub notifications: NotifyConfig,
    pub media: MediaConfig,
    /// Normal-mode key bindings: action name → keys (see `?` in the TUI for the names).
    pub keys: BTreeMap<String, Vec<String>>,
}

/// One `[profiles.NAME]` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileFile {
    pub server: Option<String>,
    pub cert: Option<PathBuf>,
    pub insecure: Option<bool>,
    pub device_name: Option<String>,
}

/// `[ui]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// strftime format of message times.
    pub time_format: String,
    /// Messages fetched per history page.
    pub history_page: u32,
    /// Links in messages are terminal hyperlinks (OSC 8): a click opens them where the terminal
    /// supports it (and nothing changes where it does not).
    pub hyperlinks: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self { time_format: "%H:%M".into(), history_page: 50, hyperlinks: true }
    }
}

/// `[notifications]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Ring the terminal bell (works over SSH).
    pub bell: bool,
    /// Desktop notification through `notify-send`, when it is installed.
    pub desktop: bool,
    /// Conversations (ids) never notified; the TUI's mute key adds to the profile's own list.
    pub muted: Vec<u64>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self { bell: true, desktop: false, muted: Vec::new() }
    }
}

/// `[media]`: attachments in the TUI.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Where the save key writes attachments [default: the XDG download directory, else
    /// ~/Downloads, when it exists; else the current directory]. A leading `~/` is the home
    /// directory.
    pub downloads_dir: Option<PathBuf>,
    /// The program that opens an attachment, with its arguments; the file's path is appended.
    pub opener: String,
    /// Show images inline.
    pub previews: bool,
    /// How images are drawn: `auto` (ask the terminal: kitty, sixel, iTerm2, else half-blocks),
    /// `kitty`, `sixel`, `iterm2` or `halfblocks`.
    pub graphics: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self { downloads_dir: None, opener: "xdg-open".into(), previews: true, graphics: "auto".into() }
    }
}

impl MediaConfig {
    /// The directory the save key writes to.
    pub fn downloads(&self) -> PathBuf {
        match &self.downloads_dir {
            Some(d) => expand_home(d),
            None => dirs::download_dir()
                .filter(|d| d.is_dir())
                .or_else(|| dirs::home_dir().map(|h| h.join("Downloads")).filter(|d| d.is_dir()))
                .or_else(|| std::env::current_dir().ok())
                .unwrap_or_else(|| PathBuf::from(".")),
        }
    }

    /// Where attachments are kept to be opened: the cache directory.
    pub fn open_dir(&self) -> PathBuf {
        dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("confab").join("open")
    }
}

/// `~/x` → `$HOME/x`; other paths as they are.
pub fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), dirs::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => p.to_path_buf(),
    }
}

/// Everything resolved: what a command or the TUI runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub profile: String,
    pub server: String,
    pub trust: TrustSetting,
    pub device_name: String,
    /// Whether the server came from a flag or `CONFAB_SERVER` (and so wins over stored credentials).
    pub server_explicit: bool,
    pub config_file: PathBuf,
    pub profile_dir: PathBuf,
    pub file: FileConfig,
}

impl Settings {
    /// Resolves defaults, the file, the environment and flags, and the profile's credentials.
    pub fn load(args: &GlobalArgs) -> anyhow::Result<Self> {
        let config_file = match &args.config {
            Some(p) => p.clone(),
            None => config_dir()?.join("config.toml"),
        };
        let file = read_file_config(&config_file, args.config.is_some())?;
        let profile =
            args.profile.clone().or_else(|| file.default_profile.clone()).unwrap_or_else(|| DEFAULT_PROFILE.into());
        validate_profile(&profile)?;
        let pf = file.profiles.get(&profile).cloned().unwrap_or_default();
        let profile_dir = data_dir()?.join("profiles").join(&profile);
        let stored = CredStore::new(&profile_dir).load().ok().flatten();
        let server_explicit = args.server.is_some();
        let server = args
            .server
            .clone()
            .or_else(|| stored.as_ref().map(|c| c.server.clone()))
            .or(pf.server.clone())
            .unwrap_or_else(|| DEFAULT_SERVER.into());
        let trust = if let Some(cert) = &args.cert {
            TrustSetting::Pinned(cert.clone())
        } else if args.insecure {
            TrustSetting::Insecure
        } else if let Some(c) = stored.as_ref().filter(|c| c.server == server) {
            c.trust()
        } else if let Some(cert) = &pf.cert {
            TrustSetting::Pinned(cert.clone())
        } else if pf.insecure == Some(true) {
            TrustSetting::Insecure
        } else {
            TrustSetting::System
        };
        let device_name = pf.device_name.clone().unwrap_or_else(default_device_name);
        Ok(Self { profile, server, trust, device_name, server_explicit, config_file, profile_dir, file })
    }

    /// Client options for this server.
    pub fn connect_options(&self) -> anyhow::Result<ConnectOptions> {
        let mut opts = ConnectOptions { client_name: "confab-cli".into(), ..Default::default() };
        opts.transport.trust = match &self.trust {
            TrustSetting::System => Trust::SystemRoots,
            TrustSetting::Pinned(p) => Trust::pinned_from_file(p)?,
            TrustSetting::Insecure => Trust::Insecure,
        };
        Ok(opts)
    }

    /// The profile's credential store.
    pub fn creds(&self) -> CredStore {
        CredStore::new(&self.profile_dir)
    }

    /// Stored credentials, if they belong to the server in use.
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        Ok(self.creds().load()?.filter(|c| c.server == self.server))
    }
}

fn read_file_config(path: &Path, explicit: bool) -> anyhow::Result<FileConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(FileConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn validate_profile(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if !ok {
        bail!("invalid profile name {name:?}: use letters, digits, '_', '-' and '.'");
    }
    Ok(())
}

/// `$XDG_CONFIG_HOME/confab` (or `~/.config/confab`).
pub fn config_dir() -> anyhow::Result<PathBuf> {
    Ok(dirs::config_dir().context("no configuration directory: set XDG_CONFIG_HOME or HOME")?.join("confab"))
}

/// `$XDG_DATA_HOME/confab` (or `~/.local/share/confab`).
pub fn data_dir() -> anyhow::Result<PathBuf> {
    Ok(dirs::data_dir().context("no data directory: set XDG_DATA_HOME or HOME")?.join("confab"))
}

fn default_device_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    if host.is_empty() { "confab-cli".into() } else { format!("confab-cli on {}", truncate(&host, 40)) }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// The full-screen client's state in a profile directory (mutes, drafts, the open conversation).
pub const TUI_STATE_FILE: &str = "tui-state.toml";

/// Writes `bytes` as `dir/name`, readable by its owner only (mode 0600; `dir` is created 0700
/// when missing): a temporary file beside it, flushed to disk, then renamed over it, so a crash
/// leaves the old file or the new one. For the profile's files that hold message text or
/// account state (the cache, the outbox, the TUI state with its drafts).
pub fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = dir.join(name);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_example_parses() {
        let text = r#"
default_profile = "work"
[profiles.work]
server = "wss://chat.example.com/v1/ws"
[ui]
time_format = "%H:%M"
hyperlinks = true
[notifications]
bell = true
desktop = false
[media]
downloads_dir = "~/Downloads"
opener = "xdg-open"
[keys]
down = ["j", "Down", "Ctrl-n"]
"#;
        let f: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(f.profiles["work"].server.as_deref(), Some("wss://chat.example.com/v1/ws"));
        assert!(f.notifications.bell && !f.notifications.desktop);
        assert_eq!(f.ui.history_page, 50, "defaults fill what the file leaves out");
        assert!(f.ui.hyperlinks && FileConfig::default().ui.hyperlinks);
        assert!(f.media.previews && f.media.graphics == "auto");
        if let Some(home) = dirs::home_dir() {
            assert_eq!(f.media.downloads(), home.join("Downloads"));
        }
        assert_eq!(f.keys["down"], ["j", "Down", "Ctrl-n"], "the keymap takes these (ui::keymap's tests)");
        assert!(toml::from_str::<FileConfig>("colour = 1").is_err(), "unknown keys are refused");
        assert!(validate_profile("../x").is_err() && validate_profile("work-2").is_ok());
    }
}
