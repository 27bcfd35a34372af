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
