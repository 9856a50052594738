//! Synonyms: groups of words or phrases a shopper uses for the same thing.
//!
//! The file (`graph_data/synonyms.txt`) has one group a line, entries separated by
//! commas, `#` starting a comment: `sci-fi, science fiction, sf`. Entries are compared
//! after lower-casing and accent folding, word by word, so "Sci-Fi" in a query finds the
//! group. A query that contains an entry also searches for the group's other entries.

use std::collections::HashMap;
use std::path::Path;

use tantivy::tokenizer::TextAnalyzer;

use crate::SearchError;
use crate::schema::{raw_analyzer, terms};

/// Longest entry, in words; longer entries are refused when the file is read.
pub const MAX_ENTRY_WORDS: usize = 4;

#[derive(Clone, Debug, Default)]
pub struct Synonyms {
    /// Each group's entries, as written (trimmed).
    groups: Vec<Vec<String>>,
    /// Normalised entry (words joined by a space) → the groups it belongs to.
    lookup: HashMap<String, Vec<usize>>,
}

impl Synonyms {
    pub fn parse(text: &str) -> Result<Synonyms, SearchError> {
        let mut analyzer = raw_analyzer();
        let mut out = Synonyms::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let entries: Vec<String> =
                line.split(',').map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect();
            if entries.len() < 2 {
                return Err(SearchError::Synonyms {
                    line: n + 1,
                    reason: "a group needs at least two entries, separated by commas".into(),
                });
            }
            let group = out.groups.len();
            for entry in &entries {
                let key = normalise(&mut analyzer, entry);
                let words = key.split(' ').count();
                if key.is_empty() || words > MAX_ENTRY_WORDS {
                    return Err(SearchError::Synonyms {
                        line: n + 1,
                        reason: format!("entry {entry:?} must have 1 to {MAX_ENTRY_WORDS} words"),
                    });
                }
                let groups = out.lookup.entry(key).or_default();
                if !groups.contains(&group) {
                    groups.push(group);
                }
            }
            out.groups.push(entries);
        }
        Ok(out)
    }

    pub fn load(path: &Path) -> Result<Synonyms, SearchError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SearchError::Io(format!("{}: {e}", path.display())))?;
        Synonyms::parse(&text)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// For a query's words, the alternatives to search for: each `(matched, others)`
    /// names the words of the query that matched an entry and the group's other entries.
    pub fn expand(&self, words: &[&str]) -> Vec<(String, Vec<String>)> {
        let mut analyzer = raw_analyzer();
        let normal: Vec<String> = words.iter().map(|w| normalise(&mut analyzer, w)).collect();
        let mut out = Vec::new();
        for start in 0..normal.len() {
            for len in 1..=MAX_ENTRY_WORDS.min(normal.len() - start) {
                let key = normal[start..start + len].join(" ");
                let Some(groups) = self.lookup.get(&key) else { continue };
                for &g in groups {
                    let others: Vec<String> = self.groups[g]
                        .iter()
                        .filter(|e| normalise(&mut analyzer, e) != key)
                        .cloned()
                        .collect();
                    if !others.is_empty() {
                        out.push((key.clone(), others));
                    }
                }
            }
        }
        out
    }
}

fn normalise(analyzer: &mut TextAnalyzer, text: &str) -> String {
    terms(analyzer, text).join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_match_words_and_phrases_case_insensitively() {
        let s = Synonyms::parse("# comment\nsci-fi, science fiction, SF\ntee, t-shirt # inline\n")
            .expect("parses");
        assert_eq!(s.len(), 2);
        let got = s.expand(&["Sci-Fi", "novels"]);
        assert_eq!(got, [("sci fi".to_string(), vec!["science fiction".to_string(), "SF".into()])]);
        let got = s.expand(&["cheap", "science", "fiction"]);
        assert_eq!(got[0].1, ["sci-fi", "SF"]);
        assert!(s.expand(&["fiction"]).is_empty());
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let err = Synonyms::parse("a, b\nlonely\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = Synonyms::parse("one two three four five, x").unwrap_err();
        assert!(err.to_string().contains("1 to 4 words"), "{err}");
    }
}
