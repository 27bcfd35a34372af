//! The query syntax of SearchMessages (docs/protocol.md §23.2), as users type it into web search:
//! words, "a phrase", -excluded, `a OR b`. Parsed into a [`Match`] of folded needles.

use crate::store::Match;

use super::normalize::Folded;

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most words and phrases in one query.
pub const MAX_TERMS: usize = 16;

/// A parsed query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// `None` when the query has no word (only filters narrow the search).
    pub matching: Option<Match>,
    /// The needles that are looked for (not excluded): highlighted, and scored as whole words.
    pub wanted: Vec<String>,
}

/// Why a query was refused (INVALID_ARGUMENT on `search_messages.query`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("is longer than {MAX_QUERY_CHARS} characters")]
    TooLong,
    #[error("has more than {MAX_TERMS} words and phrases")]
    TooManyTerms,
}

/// One word or phrase as typed.
#[derive(Debug, PartialEq, Eq)]
struct Term {
    needle: String,
    excluded: bool,
}

/// The pieces of a query: terms, and `OR` between two of them.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Term(Term),
    Or,
}

fn pieces(q: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut excluded = false;
        if c == '-' {
            chars.next();
            match chars.peek() {
                Some(&n) if !n.is_whitespace() => excluded = true,
                _ => continue,
            }
        }
        let raw: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                s.push(c);
            }
            s
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                s.push(c);
                chars.next();
            }
            if !excluded && (s == "OR" || s == "|") {
                out.push(Piece::Or);
                continue;
            }
            s
        };
        out.push(Piece::Term(Term { needle: Folded::needle(&raw), excluded }));
    }
    out
}

impl Query {
    /// Parses `q`. Words and phrases with nothing to look for (punctuation only) are left out;
    /// `OR` binds two neighbours (`a b OR c` is `a AND (b OR c)`), and an `OR` with no term on
    /// one side is ignored.
    ///
    /// # Errors
    /// [`QueryError`] when the query is too long or has too many terms.
    pub fn parse(q: &str) -> Result<Self, QueryError> {
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong);
        }
        let pieces = pieces(q);
        if pieces.iter().filter(|p| matches!(p, Piece::Term(_))).count() > MAX_TERMS {
            return Err(QueryError::TooManyTerms);
        }
        // Groups of terms joined by OR; the query is all of the groups.
        let mut groups: Vec<Vec<Term>> = Vec::new();
        let mut joined = false;
        for p in pieces {
            match p {
                Piece::Or => joined = !groups.is_empty(),
                Piece::Term(t) if t.needle.is_empty() => {}
                Piece::Term(t) => {
                    match groups.last_mut() {
                        Some(g) if joined => g.push(t),
                        _ => groups.push(vec![t]),
                    }
                    joined = false;
                }
            }
        }
        let mut wanted = Vec::new();
        let mut all = Vec::new();
        for g in groups {
            let mut any: Vec<Match> = g
                .into_iter()
                .map(|t| {
                    if t.excluded {
                        Match::Not(Box::new(Match::Contains(t.needle)))
                    } else {
                        if !wanted.contains(&t.needle) {
                            wanted.push(t.needle.clone());
                        }
                        Match::Contains(t.needle)
                    }
                })
                .collect();
            all.push(if any.len() == 1 { any.remove(0) } else { Match::Any(any) });
        }
        let matching = match all.len() {
            0 => None,
            1 => all.pop(),
            _ => Some(Match::All(all)),
        };
        Ok(Self { matching, wanted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Match {
        Match::Contains(s.into())
    }

    fn not(s: &str) -> Match {
        Match::Not(Box::new(c(s)))
    }

    fn parsed(q: &str) -> Option<Match> {
        Query::parse(q).unwrap().matching
    }

    #[test]
    fn words_phrases_exclusions_and_or() {
        assert_eq!(parsed("Release"), Some(c("release")));
        assert_eq!(parsed("release notes"), Some(Match::All(vec![c("release"), c("notes")])));
        assert_eq!(parsed("\"Release, Notes\" -draft"), Some(Match::All(vec![c("release notes"), not("draft")])));
        assert_eq!(
            parsed("ship it OR merge"),
            Some(Match::All(vec![c("ship"), Match::Any(vec![c("it"), c("merge")])]))
        );
        assert_eq!(parsed("a OR b OR c"), Some(Match::Any(vec![c("a"), c("b"), c("c")])));
        assert_eq!(parsed("a | -b"), Some(Match::Any(vec![c("a"), not("b")])));
        assert_eq!(parsed("-\"two words\""), Some(not("two words")));
    }

    #[test]
    fn odd_input_degrades_to_something_sensible() {
        assert_eq!(parsed(""), None);
        assert_eq!(parsed("   !!  -- - OR"), None);
        assert_eq!(parsed("OR word"), Some(c("word")));
        assert_eq!(parsed("word OR"), Some(c("word")));
        assert_eq!(parsed("\"unterminated phrase"), Some(c("unterminated phrase")));
        assert_eq!(parsed("or"), Some(c("or")));
        assert_eq!(parsed("-OR"), Some(not("or")));
        assert_eq!(parsed("e-mail"), Some(c("e mail")));
        assert_eq!(parsed("中文"), Some(c("中 文")));
    }

    #[test]
    fn wanted_needles_are_the_positive_ones_once() {
        let q = Query::parse("config -draft config \"Élodie\"").unwrap();
        assert_eq!(q.wanted, ["config", "elodie"]);
    }

    #[test]
    fn bounds() {
        assert_eq!(Query::parse(&"x".repeat(257)), Err(QueryError::TooLong));
        assert!(Query::parse(&"é".repeat(256)).is_ok());
        let many = (0..17).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert_eq!(Query::parse(&many), Err(QueryError::TooManyTerms));
    }
}
