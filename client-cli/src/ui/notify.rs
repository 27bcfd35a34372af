//! Notifications: the terminal bell (works over SSH and in tmux/screen), and a desktop
//! notification through `notify-send` when it is installed (no system libraries are linked).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Rings the terminal bell.
pub fn bell() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\x07");
    let _ = out.flush();
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| Path::new(&d).join(program).is_file()))
}

/// Shows a desktop notification when `notify-send` exists; does nothing otherwise.
pub fn desktop(title: &str, body: &str) {
    if !on_path("notify-send") {
        return;
    }
    let (title, body) = (title.to_string(), body.to_string());
    // A thread waits for the child so it does not linger as a zombie; the UI does not wait.
    std::thread::spawn(move || {
        let _ = Command::new("notify-send")
            .args(["--app-name=confab", "--", &title, &body])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
}
