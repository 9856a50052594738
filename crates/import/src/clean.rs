//! Cleaning raw text: encodings, HTML entities, Unicode forms, ISBNs, and the keys that
//! make variants of one name (`J.R.R. TOLKIEN`, `J. R. R. Tolkien`, `Tolkien, J.R.R.`)
//! one entity.

use std::borrow::Cow;
use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Bytes of one line as text: UTF-8 when they are valid UTF-8, otherwise Windows-1252
/// (a superset of Latin-1), which is what the older public data sets were written in.
/// Some files mix the two line by line, so the choice is made per line.
pub fn decode_line(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0,
    }
}

/// Decodes HTML entities (`&amp;`, `&#304;`), composes Unicode (NFC), drops control
/// characters and collapses runs of whitespace.
pub fn clean_text(raw: &str) -> String {
    let decoded = html_escape::decode_html_entities(raw);
    let mut out = String::with_capacity(decoded.len());
    let mut pending_space = false;
    for c in decoded.nfc() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if !c.is_control() {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// The canonical ISBN-13 of a raw ISBN-10 or ISBN-13 (hyphens, spaces and a lowercase
/// `x` are tolerated), or `None` when it is not a valid ISBN. Books listed under both
/// forms become one product.
pub fn normalize_isbn(raw: &str) -> Option<String> {
    let chars: Vec<char> =
        raw.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect();
    match chars.len() {
        10 => {
            let mut sum = 0;
            for (i, c) in chars.iter().enumerate() {
                let digit = match (i, c) {
                    (9, 'X') => 10,
                    (_, c) => c.to_digit(10)?,
                };
                sum += digit * (10 - i as u32);
            }
            if sum % 11 != 0 {
                return None;
            }
            let body = format!("978{}", chars[..9].iter().collect::<String>());
            Some(format!("{body}{}", isbn13_check_digit(&body)))
        }
        13 => {
            if !chars.iter().all(char::is_ascii_digit) {
                return None;
            }
            let body: String = chars[..12].iter().collect();
            (isbn13_check_digit(&body) == chars[12].to_digit(10)?).then(|| chars.iter().collect())
        }
        _ => None,
    }
}

/// A book's product code: its ISBN-13 (see [`normalize_isbn`]), or, for the books a
/// shop lists under an Amazon ASIN instead (`B00009ANY9`), the ASIN in capitals.
pub fn normalize_book_code(raw: &str) -> Option<String> {
    normalize_isbn(raw).or_else(|| {
        let code = raw.trim().to_ascii_uppercase();
        let is_asin = code.len() == 10
            && code.starts_with('B')
            && code.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
        is_asin.then_some(code)
    })
}

fn isbn13_check_digit(first12: &str) -> u32 {
    let sum: u32 = first12
        .chars()
        .enumerate()
        .map(|(i, c)| c.to_digit(10).unwrap_or(0) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    (10 - sum % 10) % 10
}

/// The identity of a person's name: lowercase letters and digits, accents removed (letters
/// without a decomposition, such as ø or ß, stay), `Last, First` turned around, and runs of initials joined, so that
/// `J.R.R. TOLKIEN`, `J. R. R. Tolkien`, `J R R Tolkien` and `Tolkien, J.R.R.` all
/// become `jrr tolkien`.
pub fn person_key(name: &str) -> String {
    let name = clean_text(name);
    let name = match name.split_once(',') {
        // "Tolkien, J.R.R." but not "Tolkien, Jr." or lists of several people.
        Some((last, first))
            if !first.contains(',')
                && !matches!(first.trim().to_lowercase().as_str(), "jr" | "jr." | "sr" | "sr.") =>
        {
            format!("{} {}", first.trim(), last.trim())
        }
        _ => name,
    };
    join_initials(&fold_tokens(&name))
}

/// The identity of an organisation's name: as [`person_key`] without the name
/// reversal, and with legal forms and connecting words dropped (`Ballantine Books Inc.`
/// and `Ballantine Books` are one publisher; `Simon & Schuster` and `Simon and
/// Schuster` too).
pub fn organisation_key(name: &str) -> String {
    const DROPPED: &[&str] = &[
        "and",
        "inc",
        "incorporated",
        "ltd",
        "limited",
        "llc",
        "co",
        "corp",
        "corporation",
        "company",
        "plc",
        "gmbh",
        "sa",
        "ag",
        "the",
    ];
    let tokens: Vec<String> = fold_tokens(&clean_text(name))
        .into_iter()
        .filter(|t| !DROPPED.contains(&t.as_str()))
        .collect();
    join_initials(&tokens)
}

/// Lowercase tokens of a name: accents stripped (NFD, combining marks dropped),
/// split on anything that is not a letter or digit.
fn fold_tokens(name: &str) -> Vec<String> {
    let folded: String =
        name.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect();
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn join_initials(tokens: &[String]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut initials = String::new();
    for token in tokens {
        if token.chars().count() == 1 {
            initials.push_str(token);
            continue;
        }
        if !initials.is_empty() {
            out.push(std::mem::take(&mut initials));
        }
        out.push(token.clone());
    }
    if !initials.is_empty() {
        out.push(initials);
    }
    out.join(" ")
}

/// Picks the display form of each normalised name: the spelling seen most often,
/// shouting (`SUE GRAFTON`) turned to title case. Ties go to the first seen.
#[derive(Default)]
pub struct NameVotes {
    votes: HashMap<String, Vec<(String, u32)>>,
}

impl NameVotes {
    pub fn add(&mut self, key: &str, spelling: &str) {
        let spellings = self.votes.entry(key.to_owned()).or_default();
        match spellings.iter_mut().find(|(s, _)| s == spelling) {
            Some((_, n)) => *n += 1,
            None => spellings.push((spelling.to_owned(), 1)),
        }
    }

    /// The chosen display form of every key.
    pub fn winners(&self) -> HashMap<String, String> {
        self.votes
            .iter()
            .map(|(key, spellings)| {
                let mut best = &spellings[0];
                for s in spellings {
                    // Prefer the more frequent spelling, then one that is not all capitals.
                    if s.1 > best.1 || (s.1 == best.1 && is_shouting(&best.0) && !is_shouting(&s.0))
                    {
                        best = s;
                    }
                }
                let name = if is_shouting(&best.0) { title_case(&best.0) } else { best.0.clone() };
                (key.clone(), name)
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.votes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }
}

fn is_shouting(s: &str) -> bool {
    s.chars().any(char::is_alphabetic) && !s.chars().any(char::is_lowercase)
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = !c.is_alphanumeric() && c != '\'';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_lines_become_utf8() {
        assert_eq!(decode_line(b"Saint-Exup\xe9ry"), "Saint-Exupéry");
        assert_eq!(decode_line("Saint-Exupéry".as_bytes()), "Saint-Exupéry");
        assert_eq!(decode_line(b"\x93quoted\x94"), "\u{201c}quoted\u{201d}");
    }

    #[test]
    fn text_is_decoded_and_tidied() {
        assert_eq!(clean_text("W. W. Norton &amp; Company"), "W. W. Norton & Company");
        assert_eq!(clean_text("&#304;zmir,\t  turkey \r"), "İzmir, turkey");
        assert_eq!(clean_text("Cafe\u{301}"), "Café");
    }

    #[test]
    fn isbns_normalise_to_isbn13() {
        assert_eq!(normalize_isbn("0195153448").as_deref(), Some("9780195153446"));
        assert_eq!(normalize_isbn("0-19-515344-8").as_deref(), Some("9780195153446"));
        assert_eq!(normalize_isbn("9780195153446").as_deref(), Some("9780195153446"));
        assert_eq!(normalize_isbn("052165615x").as_deref(), Some("9780521656153"));
        assert_eq!(normalize_isbn("0195153449"), None, "bad check digit");
        assert_eq!(normalize_isbn("11238356"), None);
        assert_eq!(normalize_book_code("b00009any9").as_deref(), Some("B00009ANY9"));
        assert_eq!(normalize_book_code("0195153448").as_deref(), Some("9780195153446"));
        assert_eq!(normalize_book_code("B0000"), None);
    }

    #[test]
    fn variants_of_one_name_share_a_key() {
        for variant in [
            "J.R.R. TOLKIEN",
            "J. R. R. Tolkien",
            "J R R Tolkien",
            "J.R.R.Tolkien",
            "Tolkien, J.R.R.",
        ] {
            assert_eq!(person_key(variant), "jrr tolkien", "{variant}");
        }
        assert_eq!(person_key("Antoine de Saint-Exupéry"), person_key("Antoine de Saint-Exupery"));
        assert_eq!(person_key("Martin Luther King, Jr."), "martin luther king jr");
        assert_ne!(person_key("Tolkien"), person_key("Christopher Tolkien"));
        assert_eq!(organisation_key("Ballantine Books Inc."), organisation_key("Ballantine Books"));
        assert_eq!(
            organisation_key("Simon &amp; Schuster"),
            organisation_key("Simon and Schuster")
        );
    }

    #[test]
    fn the_common_spelling_wins_and_shouting_is_tamed() {
        let mut votes = NameVotes::default();
        for s in ["J.R.R. Tolkien", "J.R.R. TOLKIEN", "J.R.R. Tolkien", "J. R. R. Tolkien"] {
            votes.add("jrr tolkien", s);
        }
        votes.add("sue grafton", "SUE GRAFTON");
        let winners = votes.winners();
        assert_eq!(winners["jrr tolkien"], "J.R.R. Tolkien");
        assert_eq!(winners["sue grafton"], "Sue Grafton");
    }
}
