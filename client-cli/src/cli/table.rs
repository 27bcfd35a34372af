//! Aligned text for the operators' subcommands (`admin`, `reports`, `security`): tables with a
//! header, `label  value` lists, and times both ways (local for people, ms and RFC 3339 in JSON).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use unicode_width::UnicodeWidthStr;

use super::output::datetime;

/// Rows of cells printed in columns as wide as their widest cell (by terminal width), two
/// spaces apart; the last column is not padded.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `header`.
    pub fn new(header: &[&str]) -> Self {
        Self { rows: vec![header.iter().map(|h| h.to_string()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Rows besides the header.
    pub fn len(&self) -> usize {
        self.rows.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lines, each without trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| self.rows.iter().filter_map(|r| r.get(i)).map(|c| c.width()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.push_str(&" ".repeat(widths[i] - cell.width()));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// `label  value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(l, _)| l.width()).max().unwrap_or(0);
    pairs.iter().map(|(l, v)| format!("{l}{}  {v}\n", " ".repeat(width - l.width()))).collect()
}

/// Local date and time of a Unix-millisecond time, `-` for 0 (never).
pub fn local(ms: u64) -> String {
    if ms == 0 { "-".into() } else { datetime(ms) }
}

/// RFC 3339 in UTC with milliseconds, `null` for 0 (never).
pub fn rfc3339(ms: u64) -> Value {
    match i64::try_from(ms).ok().filter(|ms| *ms > 0).and_then(DateTime::<Utc>::from_timestamp_millis) {
        Some(t) => Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => Value::Null,
    }
}

/// A count with thousands separators: `12,345`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_by_terminal_width() {
        let mut t = Table::new(&["ID", "NAME", "NOTE"]);
        t.row(vec!["1".into(), "zoë".into(), "x".into()]);
        t.row(vec!["1234".into(), "日本".into(), String::new()]);
        assert_eq!(t.render(), "ID    NAME  NOTE\n1     zoë   x\n1234  日本\n");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn fields_times_and_counts() {
        assert_eq!(fields(&[("a", "1".into()), ("long", "2".into())]), "a     1\nlong  2\n");
        assert_eq!(rfc3339(0), Value::Null);
        assert_eq!(rfc3339(1_795_165_200_123), "2026-11-20T09:00:00.123Z");
        assert_eq!(local(0), "-");
        assert_eq!(count(0), "0");
        assert_eq!(count(1234), "1,234");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}
