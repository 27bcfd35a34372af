//! Folding text for search (docs/protocol.md §23.2): the one function that turns a message's text
//! and a query's words into the same searchable form, with the way back to the original bytes
//! for highlights (§23.5).
//!
//! The folded form is a sequence of words separated by single spaces, with a space at each end.
//! Each character is folded alone: compatibility decomposition (NFKD, so "ﬁ" is "fi" and "Ａ" is
//! "a"), Unicode full case folding, and the combining diacritical marks of the Latin, Greek and
//! Cyrillic scripts removed ("Élodie" is "elodie"; other marks, such as the Japanese voicing
//! marks, stay). White space and punctuation separate words and are not kept; invisible
//! characters (variation selectors, joiners, soft hyphens) are dropped; a Han or Hiragana
//! character, a symbol or an emoji is a word of its own, so a CJK word is found inside a sentence
//! written without spaces.

use icu_normalizer::DecomposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup, Script, WhiteSpace};
use icu_properties::{CodePointMapData, CodePointSetData};

/// Folded text with, for each character that came from the original, the original's byte range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    /// `" word word … "`; just `" "` when the text has no word.
    pub text: String,
    /// `(byte offset in text, original start, original end)`, ascending.
    origin: Vec<(u32, u32, u32)>,
}

/// What a character does in the folded form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Part of the current word.
    Word,
    /// A word by itself.
    Alone,
    /// Ends the current word and is not kept.
    Separator,
    /// Not kept, and does not end the word.
    Dropped,
}

fn role(c: char) -> Role {
    if c.is_ascii() {
        return if c.is_ascii_alphanumeric() { Role::Word } else { Role::Separator };
    }
    if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c) {
        return Role::Dropped;
    }
    if CodePointSetData::new::<WhiteSpace>().contains(c) {
        return Role::Separator;
    }
    let gc = CodePointMapData::<GeneralCategory>::new().get(c);
    if GeneralCategoryGroup::Punctuation.contains(gc)
        || GeneralCategoryGroup::Separator.contains(gc)
        || matches!(gc, GeneralCategory::Control | GeneralCategory::Format | GeneralCategory::Surrogate)
    {
        return Role::Separator;
    }
    if GeneralCategoryGroup::Letter.contains(gc) {
        let script = CodePointMapData::<Script>::new().get(c);
        return if script == Script::Han || script == Script::Hiragana { Role::Alone } else { Role::Word };
    }
    if GeneralCategoryGroup::Mark.contains(gc) || GeneralCategoryGroup::Number.contains(gc) {
        return Role::Word;
    }
    // Symbols, emoji, private use and unassigned code points.
    Role::Alone
}

/// Combining marks removed by folding: Combining Diacritical Marks and its Extended and
/// Supplement blocks, the marks for symbols and the half marks.
fn is_diacritic(c: char) -> bool {
    matches!(c, '\u{300}'..='\u{36f}' | '\u{1ab0}'..='\u{1aff}' | '\u{1dc0}'..='\u{1dff}' | '\u{20d0}'..='\u{20ff}' | '\u{fe20}'..='\u{fe2f}')
}

/// Appends the folded form of `c` to `out`.
fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    let nfkd = DecomposingNormalizerBorrowed::new_nfkd();
    let mut buf = [0u8; 4];
    let decomposed = nfkd.normalize(c.encode_utf8(&mut buf));
    let folded = icu_casemap::CaseMapperBorrowed::new().fold_string(&decomposed);
    for f in nfkd.normalize(&folded).chars() {
        if !is_diacritic(f) && !f.is_whitespace() && !CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(f) {
            out.push(f);
        }
    }
}

fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Folded {
    /// Folds `s` (see the module's documentation).
    pub fn new(s: &str) -> Self {
        let mut text = String::with_capacity(s.len() + 2);
        text.push(' ');
        let mut origin = Vec::new();
        let mut push = |text: &mut String, c: char, start: usize, end: usize| {
            let before = text.len();
            fold_char(c, text);
            if text.len() > before {
                origin.push((offset(before), offset(start), offset(end)));
            } else if let Some(last) = origin.last_mut().filter(|l| l.2 == offset(start)) {
                // A removed accent belongs to the character before it.
                last.2 = offset(end);
            }
        };
        for (start, c) in s.char_indices() {
            let end = start + c.len_utf8();
            match role(c) {
                Role::Word => push(&mut text, c, start, end),
                Role::Alone => {
                    if !text.ends_with(' ') {
                        text.push(' ');
                    }
                    push(&mut text, c, start, end);
                    if !text.ends_with(' ') {
                        text.push(' ');
                    }
                }
                Role::Separator => {
                    if !text.ends_with(' ') {
                        text.push(' ');
                    }
                }
                Role::Dropped => {}
            }
        }
        if !text.ends_with(' ') {
            text.push(' ');
        }
        Self { text, origin }
    }

    /// The folded words without the spaces at the ends: what a query word looks for. Empty when
    /// `s` has no word (only punctuation, say).
    pub fn needle(s: &str) -> String {
        Self::new(s).text.trim_matches(' ').to_string()
    }

    /// The original byte ranges where `needles` occur in this text, ascending and merged where
    /// they touch or overlap.
    pub fn highlights(&self, needles: &[String]) -> Vec<(u32, u32)> {
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for n in needles.iter().filter(|n| !n.is_empty()) {
            for (at, m) in self.text.match_indices(n.as_str()) {
                let (from, to) = (offset(at), offset(at + m.len()));
                // The character whose folded form holds `from` (a match may start inside "ﬁ" → "fi").
                let first = self.origin.partition_point(|o| o.0 <= from).saturating_sub(1);
                let last = self.origin.partition_point(|o| o.0 < to);
                if first < last
                    && let (Some(a), Some(b)) = (self.origin.get(first), self.origin.get(last - 1))
                {
                    ranges.push((a.1, b.2));
                }
            }
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
                _ => merged.push(r),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(s: &str) -> String {
        Folded::new(s).text
    }

    #[test]
    fn case_accents_and_compatibility_forms_fold_away() {
        assert_eq!(folded("Élodie"), " elodie ");
        assert_eq!(folded("E\u{301}LODIE"), " elodie ");
        assert_eq!(folded("STRAẞE straße"), " strasse strasse ");
        assert_eq!(folded("ΣΟΦΊΑ"), " σοφια ");
        assert_eq!(folded("ﬁle ＡＢＣ"), " file abc ");
        assert_eq!(folded("Ærø Łódź"), " ærø łodz ");
    }

    #[test]
    fn punctuation_separates_and_invisible_characters_vanish() {
        assert_eq!(folded("parse_config-file, (now)!"), " parse config file now ");
        assert_eq!(folded("soft\u{ad}ware"), " software ");
        assert_eq!(folded("  "), " ");
        assert_eq!(folded("!?"), " ");
        assert_eq!(folded("parseConfigFile"), " parseconfigfile ");
    }

    #[test]
    fn han_hiragana_and_symbols_are_words_of_their_own() {
        assert_eq!(folded("我爱中文。"), " 我 爱 中 文 ");
        assert_eq!(folded("カタカナとひらがな"), " カタカナ と ひ ら か\u{3099} な ");
        assert_eq!(folded("ok👍🏽done"), " ok 👍 🏽 done ");
        assert_eq!(folded("❤\u{fe0f}"), " ❤ ");
        assert_eq!(folded("c++"), " c ");
        assert_eq!(folded("5€"), " 5 € ");
        assert_eq!(Folded::needle("中文"), "中 文");
        assert_eq!(Folded::needle("--"), "");
    }

    #[test]
    fn highlights_point_at_the_original_bytes() {
        let text = "Hello Élodie, parseConfigFile & 我爱中文";
        let f = Folded::new(text);
        let h = f.highlights(&[Folded::needle("elodie"), Folded::needle("config"), Folded::needle("中文")]);
        let shown: Vec<&str> = h.iter().map(|&(a, b)| &text[a as usize..b as usize]).collect();
        assert_eq!(shown, ["Élodie", "Config", "中文"]);
        let f = Folded::new("E\u{301}lodie");
        assert_eq!(f.highlights(&[Folded::needle("élodie")]), [(0, 8)]);
        let f = Folded::new("ﬁle Maße");
        let shown: Vec<(u32, u32)> = f.highlights(&[Folded::needle("ile"), Folded::needle("se")]);
        assert_eq!(shown, [(0, 5), (8, 11)], "a match starting inside a folded character takes it whole");
        let f = Folded::new("aaaa");
        assert_eq!(f.highlights(&[Folded::needle("aa"), Folded::needle("a")]), [(0, 4)]);
    }
}
