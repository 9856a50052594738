//! Typo tolerance that trusts the first letter.
//!
//! A Levenshtein automaton walked over the whole term dictionary costs milliseconds on
//! the bookstore (3 ms for a two-edit word); shoppers rarely mistype the first letter,
//! so the walk starts in that letter's branch alone, about a twentieth of the
//! dictionary. The match scores a constant, like tantivy's `FuzzyTermQuery`.

use tantivy::query::{AutomatonWeight, DfaWrapper, EnableScoring, FuzzyTermQuery, Query, Weight};
use tantivy::schema::Field;
use tantivy::{TantivyError, Term};
use tantivy_fst::Automaton;

/// Terms of `field` within `distance` edits of `text` (a transposition is one edit)
/// that start with the same byte.
#[derive(Clone, Debug)]
pub(crate) struct FirstLetterFuzzy {
    field: Field,
    text: String,
    distance: u8,
}

impl FirstLetterFuzzy {
    pub(crate) fn new(field: Field, text: &str, distance: u8) -> FirstLetterFuzzy {
        FirstLetterFuzzy { field, text: text.to_owned(), distance }
    }
}

impl Query for FirstLetterFuzzy {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let Some(&first) = self.text.as_bytes().first() else {
            return Err(TantivyError::InvalidArgument("fuzzy match of an empty word".into()));
        };
        let term = Term::from_field_text(self.field, &self.text);
        let dfa = FuzzyTermQuery::new(term, self.distance, true).automaton()?;
        Ok(Box::new(AutomatonWeight::new(self.field, FirstByte { dfa, first })))
    }
}

struct FirstByte {
    dfa: DfaWrapper,
    first: u8,
}

#[derive(Clone)]
enum State {
    Start,
    In(u32),
    Dead,
}

impl Automaton for FirstByte {
    type State = State;

    fn start(&self) -> State {
        State::Start
    }

    fn is_match(&self, state: &State) -> bool {
        matches!(state, State::In(s) if self.dfa.is_match(s))
    }

    fn can_match(&self, state: &State) -> bool {
        match state {
            State::Start => true,
            State::In(s) => self.dfa.can_match(s),
            State::Dead => false,
        }
    }

    fn accept(&self, state: &State, byte: u8) -> State {
        match state {
            State::Start if byte == self.first => {
                State::In(self.dfa.accept(&self.dfa.start(), byte))
            }
            State::In(s) => State::In(self.dfa.accept(s, byte)),
            State::Start | State::Dead => State::Dead,
        }
    }
}

#[cfg(test)]
mod tests {
    use tantivy::collector::Count;
    use tantivy::schema::{STRING, Schema};
    use tantivy::{Index, IndexWriter, doc};

    use super::FirstLetterFuzzy;

    #[test]
    fn matches_typos_after_the_first_letter_only() {
        let mut schema = Schema::builder();
        let word = schema.add_text_field("word", STRING);
        let index = Index::create_in_ram(schema.build());
        let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
        for w in ["dinosaur", "kinosaur", "dinosaurs", "dragon", "d"] {
            writer.add_document(doc!(word => w)).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let count = |text: &str, distance| {
            searcher.search(&FirstLetterFuzzy::new(word, text, distance), &Count).unwrap()
        };
        // "dinosuar": a transposition from "dinosaur", two edits from "dinosaurs";
        // "kinosaur" is one edit away too, but in its first letter.
        assert_eq!(count("dinosuar", 1), 1);
        assert_eq!(count("dinosuar", 2), 2);
        assert_eq!(count("xinosaur", 1), 0);
        assert!(searcher.search(&FirstLetterFuzzy::new(word, "", 1), &Count).is_err());
    }
}
