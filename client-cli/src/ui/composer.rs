//! The composer: a multi-line text buffer with a cursor, and what the text is for (a new
//! message, a reply, an edit). Prompts use it too, and may offer a text selected, which typing
//! replaces.

/// What Enter does with the text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Purpose {
    #[default]
    New,
    Reply {
        message_id: u64,
    },
    Edit {
        message_id: u64,
    },
}

use unicode_width::UnicodeWidthChar;

/// A text buffer; the cursor is a char index.
#[derive(Clone, Debug, Default)]
pub struct Composer {
    text: Vec<char>,
    cursor: usize,
    /// The whole text is selected: typing replaces it, deleting removes it, moving keeps it.
    selected: bool,
    pub purpose: Purpose,
}

impl Composer {
    pub fn text(&self) -> String {
        self.text.iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn set(&mut self, text: &str) {
        self.text = text.chars().collect();
        self.cursor = self.text.len();
        self.selected = false;
    }

    /// Offers `text` selected (a prompt's last value): kept as it is, or replaced by typing.
    pub fn set_selected(&mut self, text: &str) {
        self.set(text);
        self.selected = !self.text.is_empty();
    }

    pub fn is_selected(&self) -> bool {
        self.selected
    }

    /// Removes the selected text; true when there was some.
    fn take_selection(&mut self) -> bool {
        let had = std::mem::take(&mut self.selected);
        if had {
            self.text.clear();
            self.cursor = 0;
        }
        had
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.selected = false;
        self.purpose = Purpose::New;
    }

    pub fn insert(&mut self, c: char) {
        self.take_selection();
        self.text.insert(self.cursor, c);
        self.cursor += 1;
    }

    /// Inserts a text at the cursor (a paste), replacing a selection.
    pub fn insert_str(&mut self, s: &str) {
        self.take_selection();
        let at = self.cursor;
        self.text.splice(at..at, s.chars());
        self.cursor += s.chars().count();
    }

    pub fn backspace(&mut self) {
        if self.take_selection() {
            return;
        }
        if self.cursor > 0 {
            self.cursor -= 1;
            self.text.remove(self.cursor);
        }
    }

    pub fn delete(&mut self) {
        if self.take_selection() {
            return;
        }
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    pub fn left(&mut self) {
        self.selected = false;
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub fn right(&mut self) {
        self.selected = false;
        self.cursor = (self.cursor + 1).min(self.text.len());
    }

    /// Start of the current line.
    pub fn home(&mut self) {
        self.selected = false;
        while self.cursor > 0 && self.text[self.cursor - 1] != '\n' {
            self.cursor -= 1;
        }
    }

    /// End of the current line.
    pub fn end(&mut self) {
        self.selected = false;
        while self.cursor < self.text.len() && self.text[self.cursor] != '\n' {
            self.cursor += 1;
        }
    }

    /// Deletes the word before the cursor (Ctrl-w).
    pub fn delete_word(&mut self) {
        while self.cursor > 0 && self.text[self.cursor - 1].is_whitespace() {
            self.backspace();
        }
        while self.cursor > 0 && !self.text[self.cursor - 1].is_whitespace() {
            self.backspace();
        }
    }

    /// Deletes to the start of the line (Ctrl-u).
    pub fn delete_line(&mut self) {
        while self.cursor > 0 && self.text[self.cursor - 1] != '\n' {
            self.backspace();
        }
    }

    /// The lines and the cursor's (line, column in chars).
    pub fn lines_and_cursor(&self) -> (Vec<String>, (usize, usize)) {
        let text = self.text();
        let lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        let before: String = self.text[..self.cursor].iter().collect();
        let line = before.matches('\n').count();
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
        (lines, (line, col))
    }

    /// The text as drawn `width` columns wide: each line soft-wrapped after a space (inside a
    /// word longer than the width, anywhere), and the cursor's (row, column) on those rows. A
    /// cursor after a full row gets a row of its own below.
    pub fn visual_lines(&self, width: usize) -> (Vec<String>, (usize, usize)) {
        let width = width.max(1);
        let w = |c: &char| UnicodeWidthChar::width(*c).unwrap_or(0);
        let mut rows = Vec::new();
        let mut cursor = (0, 0);
        let mut line_start = 0;
        for line in self.text.split(|c| *c == '\n') {
            let mut start = 0;
            loop {
                // The most that fits, at least one char; then back to after the last space.
                let (mut end, mut used) = (start, 0);
                while end < line.len() && (end == start || used + w(&line[end]) <= width) {
                    used += w(&line[end]);
                    end += 1;
                }
                if end < line.len()
                    && let Some(space) = line[start..end].iter().rposition(|c| *c == ' ')
                    && space > 0
                {
                    end = start + space + 1;
                }
                let at = self.cursor.checked_sub(line_start + start);
                let last = end == line.len();
                let mut after_full_row = false;
                if let Some(off) = at.filter(|off| *off < end - start || (last && *off == end - start)) {
                    let col: usize = line[start..start + off].iter().map(w).sum();
                    after_full_row = col >= width;
                    cursor = if after_full_row { (rows.len() + 1, 0) } else { (rows.len(), col) };
                }
                rows.push(line[start..end].iter().collect::<String>());
                // The cursor after a full row: an empty row for it, before the next line's.
                if after_full_row {
                    rows.push(String::new());
                }
                if last {
                    break;
                }
                start = end;
            }
            line_start += line.len() + 1;
        }
        (rows, cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_multi_line_text() {
        let mut c = Composer::default();
        for ch in "hello world".chars() {
            c.insert(ch);
        }
        c.delete_word();
        assert_eq!(c.text(), "hello ");
        c.insert('\n');
        c.insert('x');
        assert_eq!(c.lines_and_cursor(), (vec!["hello ".to_string(), "x".to_string()], (1, 1)));
        c.home();
        c.backspace();
        assert_eq!(c.text(), "hello x");
        c.end();
        c.delete_line();
        assert_eq!(c.text(), "");
    }

    fn typed(s: &str) -> Composer {
        let mut c = Composer::default();
        c.insert_str(s);
        c
    }

    #[test]
    fn long_lines_wrap_after_a_space_and_the_cursor_follows() {
        let c = typed("the quick brown fox jumps");
        let (rows, cursor) = c.visual_lines(10);
        assert_eq!(rows, ["the quick ", "brown fox ", "jumps"]);
        assert_eq!(cursor, (2, 5));
        // A word longer than the width is cut anywhere; every char is on a row.
        let c = typed("abcdefghijklmnop");
        assert_eq!(c.visual_lines(6), (vec!["abcdef".into(), "ghijkl".into(), "mnop".into()], (2, 4)));
        // A full last row: the cursor gets a row of its own.
        let c = typed("abcdef");
        assert_eq!(c.visual_lines(6), (vec!["abcdef".into(), String::new()], (1, 0)));
        // Explicit line breaks, wide characters, and the cursor in the middle.
        let mut c = typed("日本語のテキスト\nok");
        assert_eq!(c.visual_lines(6).0, ["日本語", "のテキ", "スト", "ok"]);
        for _ in 0..6 {
            c.left();
        }
        // After "日本語のテ": the second row, two wide chars in.
        assert_eq!(c.visual_lines(6).1, (1, 4));
        // The cursor at a soft break belongs to the row it starts.
        let mut c = typed("aaaa bbbb");
        for _ in 0..4 {
            c.left();
        }
        assert_eq!(c.visual_lines(6), (vec!["aaaa ".into(), "bbbb".into()], (1, 0)));
        assert_eq!(typed("").visual_lines(5), (vec![String::new()], (0, 0)));
        // A full row with a line after it: the cursor's own row comes before that line's.
        let mut c = typed("abcdef\nxy");
        for _ in 0..3 {
            c.left();
        }
        assert_eq!(c.visual_lines(6), (vec!["abcdef".into(), String::new(), "xy".into()], (1, 0)));
    }

    #[test]
    fn selected_text_is_replaced_by_typing() {
        let mut c = Composer::default();
        c.set_selected("deploy");
        assert!(c.is_selected());
        c.insert('g');
        assert_eq!((c.text(), c.is_selected()), ("g".to_string(), false));
        // Deleting removes it all; moving keeps it for editing.
        c.set_selected("deploy");
        c.backspace();
        assert_eq!(c.text(), "");
        c.set_selected("deploy");
        c.left();
        c.insert('X');
        assert_eq!(c.text(), "deploXy");
        // Nothing to select: nothing selected.
        c.set_selected("");
        assert!(!c.is_selected());
    }
}
