//! Completion on Tab, as a shell does it: paths in the attach prompt, names in the other prompts.
//! One match completes (a directory gets its `/`), several complete to their longest common
//! start and are listed.
//! Relative paths are taken from the client's working directory; `~/` is the home directory.

use std::path::{Path, PathBuf};

use crate::config::expand_home;

/// What Tab made of the input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// The new input.
    pub text: String,
    /// The names that matched, when more than one did (directories end with `/`).
    pub candidates: Vec<String>,
}

/// The path the input names.
pub fn resolve(input: &str, cwd: &Path) -> PathBuf {
    let p = expand_home(Path::new(input.trim()));
    if p.is_absolute() { p } else { cwd.join(p) }
}

/// Completes the last component of `input` from the directory it is in.
pub fn complete_path(input: &str, cwd: &Path) -> Completion {
    if input == "~" {
        return Completion { text: "~/".into(), candidates: Vec::new() };
    }
    let (dir_part, prefix) = match input.rfind('/') {
        Some(i) => input.split_at(i + 1),
        None => ("", input),
    };
    let dir = if dir_part.is_empty() { cwd.to_path_buf() } else { resolve(dir_part, cwd) };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Completion { text: input.to_string(), candidates: Vec::new() };
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            // Follows symbolic links: a link to a directory completes as one.
            let is_dir = std::fs::metadata(e.path()).map(|m| m.is_dir()).unwrap_or(false);
            Some(if is_dir { format!("{name}/") } else { name })
        })
        .collect();
    names.sort();
    match names.len() {
        0 => Completion { text: input.to_string(), candidates: Vec::new() },
        1 => Completion { text: format!("{dir_part}{}", names[0]), candidates: Vec::new() },
        _ => {
            let common = common_prefix(&names);
            let text = format!("{dir_part}{}", if common.len() > prefix.len() { common } else { prefix });
            Completion { text, candidates: names }
        }
    }
}

/// Completes `input` from `names` (usernames, channel titles, commands) case-insensitively: one
/// match completes, several complete to their longest common start and are listed.
pub fn complete_word(input: &str, names: &[String]) -> Completion {
    let lower = input.to_lowercase();
    let mut found: Vec<String> = names.iter().filter(|n| n.to_lowercase().starts_with(&lower)).cloned().collect();
    found.sort_by_key(|n| n.to_lowercase());
    found.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    match found.len() {
        0 => Completion { text: input.to_string(), candidates: Vec::new() },
        1 => Completion { text: found.remove(0), candidates: Vec::new() },
        _ => {
            let lowered: Vec<String> = found.iter().map(|n| n.to_lowercase()).collect();
            let common = common_prefix(&lowered).chars().count();
            let text =
                if common > input.chars().count() { found[0].chars().take(common).collect() } else { input.into() };
            Completion { text, candidates: found }
        }
    }
}

/// The longest start all of `names` share (whole characters).
fn common_prefix(names: &[String]) -> &str {
    let first = names[0].as_str();
    let mut end = first.len();
    for n in &names[1..] {
        end = first
            .char_indices()
            .zip(n.chars())
            .find(|((_, a), b)| a != b)
            .map_or(end.min(n.len()), |((i, _), _)| i.min(end));
    }
    while !first.is_char_boundary(end) {
        end -= 1;
    }
    &first[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_like_a_shell() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("photos")).unwrap();
        std::fs::write(d.path().join("photos/cat.png"), b"x").unwrap();
        std::fs::write(d.path().join("photos/cattle.jpg"), b"x").unwrap();
        std::fs::write(d.path().join("report.pdf"), b"x").unwrap();
        std::fs::write(d.path().join(".hidden"), b"x").unwrap();
        let c = |s: &str| complete_path(s, d.path());
        assert_eq!(c("ph"), Completion { text: "photos/".into(), candidates: vec![] });
        assert_eq!(
            c("photos/"),
            Completion { text: "photos/cat".into(), candidates: vec!["cat.png".into(), "cattle.jpg".into()] }
        );
        assert_eq!(c("photos/catt").text, "photos/cattle.jpg");
        assert_eq!(c("").candidates, vec!["photos/".to_string(), "report.pdf".to_string()], "no hidden files");
        assert_eq!(c(".h").text, ".hidden");
        assert_eq!(c("nothing"), Completion { text: "nothing".into(), candidates: vec![] });
        let abs = format!("{}/re", d.path().display());
        assert_eq!(c(&abs).text, format!("{}/report.pdf", d.path().display()));
        assert_eq!(resolve("photos/cat.png", d.path()), d.path().join("photos/cat.png"));
        assert_eq!(common_prefix(&["héllo".into(), "hélp".into()]), "hél");
    }

    #[test]
    fn completes_names_ignoring_case() {
        let names: Vec<String> = ["bob", "Bobby", "carol", "bob"].map(String::from).to_vec();
        assert_eq!(complete_word("ca", &names), Completion { text: "carol".into(), candidates: vec![] });
        assert_eq!(
            complete_word("B", &names),
            Completion { text: "bob".into(), candidates: vec!["bob".into(), "Bobby".into()] }
        );
        assert_eq!(complete_word("x", &names), Completion { text: "x".into(), candidates: vec![] });
    }
}
