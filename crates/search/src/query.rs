//! What a customer typed, read the way a shop search box reads it.
//!
//! The grammar is deliberately small and total: every input has a reading, and the only
//! refusals are for inputs no customer types (over [`MAX_QUERY_BYTES`]). Words are
//! matched in any field, ranked by BM25; `"quoted words"` must appear together; a
//! leading `-` excludes a word. Anything else that looks like an operator (`AND`, `+`,
//! `:`, `(`, `*`, `~`, a stray quote) is read as punctuation. An unbalanced quote runs
//! to the end of the query.

use std::fmt;

use crate::SearchError;

/// Longer queries are refused: no customer types this much, and each word costs work.
pub const MAX_QUERY_BYTES: usize = 1024;
/// Words beyond this are ignored (and the reading says so).
pub const MAX_WORDS: usize = 32;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedQuery {
    /// Words to rank by, in the order typed.
    pub words: Vec<String>,
    /// Groups of words that must appear together, in order.
    pub phrases: Vec<Vec<String>>,
    /// Words that must not appear.
    pub excluded: Vec<String>,
    /// Words dropped past [`MAX_WORDS`].
    pub dropped: usize,
}

impl ParsedQuery {
    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.phrases.is_empty()
    }

    /// Every word that should match, phrase words included.
    pub fn positive_words(&self) -> impl Iterator<Item = &str> {
        self.words.iter().chain(self.phrases.iter().flatten()).map(String::as_str)
    }
}

impl fmt::Display for ParsedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.words.is_empty() {
            parts.push(format!("words: {}", self.words.join(" ")));
        }
        for p in &self.phrases {
            parts.push(format!("phrase: \"{}\"", p.join(" ")));
        }
        if !self.excluded.is_empty() {
            parts.push(format!("without: {}", self.excluded.join(" ")));
        }
        if self.dropped > 0 {
            parts.push(format!("{} words past the first {MAX_WORDS} ignored", self.dropped));
        }
        if parts.is_empty() {
            parts.push("everything".into());
        }
        f.write_str(&parts.join("; "))
    }
}

/// Splits `text` into words, phrases and exclusions. Never fails on content, only on
/// size.
pub fn parse(text: &str) -> Result<ParsedQuery, SearchError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(SearchError::QueryTooLong { bytes: text.len(), max: MAX_QUERY_BYTES });
    }
    let mut q = ParsedQuery::default();
    let mut budget = MAX_WORDS;
    let mut take = |word: String, q: &mut ParsedQuery| {
        if budget == 0 {
            q.dropped += 1;
            None
        } else {
            budget -= 1;
            Some(word)
        }
    };
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == '"' {
            chars.next();
            let mut phrase = String::new();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                phrase.push(c);
            }
            let words: Vec<String> = words_of(&phrase).filter_map(|w| take(w, &mut q)).collect();
            match words.len() {
                0 => {}
                1 => q.words.extend(words),
                _ => q.phrases.push(words),
            }
        } else if is_separator(c) && c != '-' {
            chars.next();
        } else {
            let mut token = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                token.push(c);
                chars.next();
            }
            let excluded = token.starts_with('-') && token.len() > 1;
            for word in words_of(&token) {
                if excluded {
                    q.excluded.push(word);
                } else if matches!(word.as_str(), "AND" | "OR" | "NOT") {
                    // Read as the operators a few customers type out of habit: noise.
                } else if let Some(word) = take(word, &mut q) {
                    q.words.push(word);
                }
            }
        }
    }
    Ok(q)
}

/// Letters, digits and the joiners inside words ("f/1.8", "sci-fi", "o'brien") survive;
/// everything else separates. The analyzers split further where they need to.
fn is_separator(c: char) -> bool {
    !(c.is_alphanumeric() || matches!(c, '-' | '\'' | '.' | '/' | '&'))
}

fn words_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(is_separator)
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ParsedQuery {
        parse(text).expect("parses")
    }

    #[test]
    fn words_phrases_and_exclusions() {
        let q = p(r#"lord "of the rings" -movie"#);
        assert_eq!(q.words, ["lord"]);
        assert_eq!(q.phrases, [vec!["of".to_string(), "the".into(), "rings".into()]]);
        assert_eq!(q.excluded, ["movie"]);
    }

    #[test]
    fn operators_and_stray_punctuation_are_read_as_punctuation() {
        let q = p(r#"title:(harry AND potter) +wizard* ~~ ^2 \ OR"#);
        assert_eq!(q.words, ["title", "harry", "potter", "wizard", "2"]);
        assert!(q.phrases.is_empty() && q.excluded.is_empty());
    }

    #[test]
    fn an_unbalanced_quote_runs_to_the_end() {
        let q = p(r#"tolkien "the hobbit"#);
        assert_eq!(q.words, ["tolkien"]);
        assert_eq!(q.phrases, [vec!["the".to_string(), "hobbit".into()]]);
        let q = p(r#"""""#);
        assert!(q.is_empty());
    }

    #[test]
    fn joiners_stay_inside_words() {
        let q = p("sci-fi f/1.8 o'brien - -- 35mm");
        assert_eq!(q.words, ["sci-fi", "f/1.8", "o'brien", "35mm"]);
    }

    #[test]
    fn chinese_words_pass_through() {
        let q = p("三体 刘慈欣");
        assert_eq!(q.words, ["三体", "刘慈欣"]);
    }

    #[test]
    fn size_limits() {
        assert!(matches!(
            parse(&"a".repeat(MAX_QUERY_BYTES + 1)),
            Err(SearchError::QueryTooLong { .. })
        ));
        let q = p(&"word ".repeat(40));
        assert_eq!(q.words.len(), MAX_WORDS);
        assert_eq!(q.dropped, 40 - MAX_WORDS);
        assert!(q.to_string().contains("ignored"));
    }

    #[test]
    fn control_characters_separate() {
        let q = p("red\0shoes\u{7}\u{200b}");
        assert_eq!(q.words, ["red", "shoes"]);
    }
}
