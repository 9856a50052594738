//! Book-Crossing (Ziegler et al., 2005): the demo bookstore.
//!
//! Three `;`-separated files with every field in double quotes, `\"` for a quote inside
//! a field, `NULL` unquoted for a missing value, CRLF line ends, and lines in Latin-1
//! or UTF-8. Ratings are 1–10 (explicit) or 0 (an implicit interaction): 1–10 become
//! `rating` events, 0 becomes a `view`. The data has no times: every event is dated at
//! the end of the crawl (September 2004), as `graph_data/README.md` says.
//!
//! Products are keyed by ISBN-13, so a book listed as `002542730x` and `002542730X`,
//! or under its ISBN-10 and ISBN-13, is one product; books listed under an Amazon ASIN
//! keep it.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use shopgraph_core::event::EventKind;
use shopgraph_core::product::{Category, Maker, MakerKind, NewProduct};
use shopgraph_core::user::NewUser;

use crate::clean::{
    NameVotes, clean_text, decode_line, normalize_book_code, organisation_key, person_key,
};
use crate::dataset::{Dataset, EventRecord, ImportError, file_name, lines, read_file};
use crate::report::{Report, SetAside};
use crate::synthetic;

pub const BOOKS_FILE: &str = "BX-Books.csv";
pub const USERS_FILE: &str = "BX-Users.csv";
pub const RATINGS_FILE: &str = "BX-Book-Ratings.csv";

const BOOKS_HEADER: &[&str] = &[
    "ISBN",
    "Book-Title",
    "Book-Author",
    "Year-Of-Publication",
    "Publisher",
    "Image-URL-S",
    "Image-URL-M",
    "Image-URL-L",
];
const USERS_HEADER: &[&str] = &["User-ID", "Location", "Age"];
const RATINGS_HEADER: &[&str] = &["User-ID", "ISBN", "Book-Rating"];

/// 2004-09-01T00:00:00Z: the crawl ended in September 2004; ratings carry no time.
pub const CRAWL_TIME_MS: i64 = 1_093_996_800_000;
/// Publication years after the crawl are typing errors.
const LAST_YEAR: i32 = 2004;

/// True when `dir` holds the three Book-Crossing files.
pub fn looks_like(dir: &Path) -> bool {
    [BOOKS_FILE, USERS_FILE, RATINGS_FILE].iter().all(|f| dir.join(f).is_file())
}

/// Reads the three files in `dir`.
pub fn read(dir: &Path) -> Result<(Dataset, Report), ImportError> {
    let mut report = Report::new(&format!("Book-Crossing ({})", dir.display()));
    let mut data = Dataset {
        categories: vec![Category { key: "books".into(), name: "Books".into(), parent_key: None }],
        ..Dataset::default()
    };
    read_books(&dir.join(BOOKS_FILE), &mut data, &mut report)?;
    read_users(&dir.join(USERS_FILE), &mut data, &mut report)?;
    read_ratings(&dir.join(RATINGS_FILE), &mut data, &mut report)?;
    Ok((data, report))
}

fn read_books(path: &Path, data: &mut Dataset, report: &mut Report) -> Result<(), ImportError> {
    let bytes = read_file(path)?;
    let file = file_name(path);
    let mut rows = lines(&bytes);
    check_header(path, rows.next(), BOOKS_HEADER)?;
    let mut authors = NameVotes::default();
    let mut publishers = NameVotes::default();
    let mut seen = HashSet::new();
    let mut rows = rows.peekable();
    while let Some((line_no, fields)) = next_record(&mut rows, BOOKS_HEADER.len()) {
        report.read("products");
        let fields = match fields {
            Ok(fields) => fields,
            Err(why) => {
                report.set_aside("products", SetAside::Malformed, &file, line_no, why);
                continue;
            }
        };
        let [isbn, title, author, year, publisher, image_s, image_m, image_l] =
            <[Option<String>; 8]>::try_from(fields).expect("split_line checked the count");
        let raw_isbn = isbn.unwrap_or_default();
        let Some(sku) = normalize_book_code(&raw_isbn) else {
            let why = format!("invalid ISBN or ASIN {raw_isbn:?}");
            report.set_aside("products", SetAside::Malformed, &file, line_no, why);
            continue;
        };
        let title = clean_text(title.as_deref().unwrap_or_default());
        if title.is_empty() {
            report.set_aside(
                "products",
                SetAside::Malformed,
                &file,
                line_no,
                format!("book {sku} has no title"),
            );
            continue;
        }
        if !seen.insert(sku.clone()) {
            let why = format!("ISBN {raw_isbn} repeats an earlier book ({sku})");
            report.set_aside("products", SetAside::Duplicate, &file, line_no, why);
            continue;
        }
        let maker = vote(&mut authors, author.as_deref(), person_key, MakerKind::Author);
        let publisher =
            vote(&mut publishers, publisher.as_deref(), organisation_key, MakerKind::Publisher);
        let year = match year.as_deref().map(str::parse::<i32>) {
            Some(Ok(y)) if (1000..=LAST_YEAR).contains(&y) => Some(y),
            // 0 means unknown in this data; other values are typing errors.
            Some(Ok(0)) | None => None,
            Some(_) => {
                report.repaired("products");
                None
            }
        };
        // Attributes are facets (they become graph nodes); the small and medium cover
        // URLs are the large one resized, so only the large one is kept.
        let attributes = serde_json::json!({ "format": "book" });
        let _ = (image_s, image_m);
        data.products.push(NewProduct {
            price_cents: synthetic::price_cents(&sku, synthetic::BOOKS),
            stock: synthetic::stock(&sku),
            sku,
            title,
            description: None,
            maker,
            publisher,
            year,
            image_url: image_l,
            currency: "EUR".into(),
            category_keys: vec!["books".into()],
            attributes: Some(attributes.to_string()),
            synthetic_fields: synthetic::SYNTHETIC_FIELDS.iter().map(|s| (*s).to_owned()).collect(),
            source: "bookcrossing".into(),
        });
        report.kept("products");
    }
    // Now that every spelling was seen, give each maker its most common one.
    let authors = authors.winners();
    let publishers = publishers.winners();
    for p in &mut data.products {
        if let Some(m) = &mut p.maker {
            m.name = authors[&m.key].clone();
        }
        if let Some(m) = &mut p.publisher {
            m.name = publishers[&m.key].clone();
        }
    }
    Ok(())
}

fn vote(
    votes: &mut NameVotes,
    raw: Option<&str>,
    key_of: fn(&str) -> String,
    kind: MakerKind,
) -> Option<Maker> {
    let name = clean_text(raw?);
    let key = key_of(&name);
    if key.is_empty() {
        return None;
    }
    votes.add(&key, &name);
    Some(Maker { kind, key, name })
}

fn read_users(path: &Path, data: &mut Dataset, report: &mut Report) -> Result<(), ImportError> {
    let bytes = read_file(path)?;
    let file = file_name(path);
    let mut rows = lines(&bytes);
    check_header(path, rows.next(), USERS_HEADER)?;
    let mut seen = HashSet::new();
    let mut rows = rows.peekable();
    while let Some((line_no, fields)) = next_record(&mut rows, USERS_HEADER.len()) {
        report.read("users");
        let fields = match fields {
            Ok(fields) => fields,
            Err(why) => {
                report.set_aside("users", SetAside::Malformed, &file, line_no, why);
                continue;
            }
        };
        let [id, location, age] = <[Option<String>; 3]>::try_from(fields).expect("count checked");
        let Some(id) = id.filter(|id| id.parse::<u64>().is_ok()) else {
            report.set_aside(
                "users",
                SetAside::Malformed,
                &file,
                line_no,
                "user id is not a number".into(),
            );
            continue;
        };
        let age = match age.as_deref().map(str::parse::<f64>) {
            Some(Ok(a)) if (5.0..=100.0).contains(&a) => Some(a as i32),
            None => None,
            // Ages of 0 or 244 are not ages; the user is kept without one.
            Some(_) => {
                report.repaired("users");
                None
            }
        };
        let location = location.map(|l| clean_text(&l)).filter(|l| !l.is_empty());
        if !seen.insert(id.clone()) {
            let why = format!("user {id} repeats an earlier line");
            report.set_aside("users", SetAside::Duplicate, &file, line_no, why);
            continue;
        }
        data.users.push(NewUser {
            external_id: format!("bx:{id}"),
            display_name: None,
            location,
            age,
            attributes: None,
        });
        report.kept("users");
    }
    Ok(())
}

fn read_ratings(path: &Path, data: &mut Dataset, report: &mut Report) -> Result<(), ImportError> {
    let bytes = read_file(path)?;
    let file = file_name(path);
    let mut rows = lines(&bytes);
    check_header(path, rows.next(), RATINGS_HEADER)?;
    let users: HashSet<&str> = data.users.iter().map(|u| u.external_id.as_str()).collect();
    let products: HashMap<&str, ()> = data.products.iter().map(|p| (p.sku.as_str(), ())).collect();
    let mut seen = HashSet::new();
    let mut events = Vec::with_capacity(bytes.len() / 28);
    let mut rows = rows.peekable();
    while let Some((line_no, fields)) = next_record(&mut rows, RATINGS_HEADER.len()) {
        report.read("events");
        let fields = match fields {
            Ok(fields) => fields,
            Err(why) => {
                report.set_aside("events", SetAside::Malformed, &file, line_no, why);
                continue;
            }
        };
        let [user, isbn, rating] = <[Option<String>; 3]>::try_from(fields).expect("count checked");
        let (Some(user), Some(isbn), Some(rating)) = (user, isbn, rating) else {
            report.set_aside(
                "events",
                SetAside::Malformed,
                &file,
                line_no,
                "a field is NULL".into(),
            );
            continue;
        };
        let rating = match rating.parse::<u8>() {
            Ok(r) if r <= 10 => r,
            _ => {
                let why = format!("rating {rating:?} is not 0 to 10");
                report.set_aside("events", SetAside::Malformed, &file, line_no, why);
                continue;
            }
        };
        let user = format!("bx:{user}");
        if !users.contains(user.as_str()) {
            report.set_aside(
                "events",
                SetAside::Orphaned,
                &file,
                line_no,
                format!("unknown user {user}"),
            );
            continue;
        }
        let Some(sku) =
            normalize_book_code(&isbn).filter(|sku| products.contains_key(sku.as_str()))
        else {
            let why = format!("rating of a book not in {BOOKS_FILE}: {isbn:?}");
            report.set_aside("events", SetAside::Orphaned, &file, line_no, why);
            continue;
        };
        let key = format!("bx:{user}:{sku}");
        if !seen.insert(key.clone()) {
            let why = format!("{user} rated {sku} again (listed under another form of its ISBN)");
            report.set_aside("events", SetAside::Duplicate, &file, line_no, why);
            continue;
        }
        let (kind, value) = if rating == 0 {
            (EventKind::View, None)
        } else {
            (EventKind::Rating, Some(f64::from(rating)))
        };
        events.push(EventRecord {
            key,
            user,
            product: Some(sku),
            kind,
            value,
            payload: None,
            occurred_at: CRAWL_TIME_MS,
        });
        report.kept("events");
    }
    data.events = events;
    Ok(())
}

fn check_header(
    path: &Path,
    header: Option<(u64, &[u8])>,
    expected: &[&str],
) -> Result<(), ImportError> {
    let found = header.map(|(_, raw)| decode_line(raw).into_owned()).unwrap_or_default();
    let matches = split_line(&found, expected.len())
        .map(|fields| fields.iter().zip(expected).all(|(f, e)| f.as_deref() == Some(*e)))
        .unwrap_or(false);
    if !matches {
        return Err(ImportError::BadHeader {
            file: path.to_owned(),
            format: "Book-Crossing",
            expected: expected.join(";"),
            found: found.chars().take(200).collect(),
        });
    }
    Ok(())
}

/// A record's fields (`None` for `NULL`), or why the line is not a record.
type Fields = Result<Vec<Option<String>>, String>;

/// The next record and its line number. A record broken by a stray line end inside a
/// quoted field (`"cernusco s` / `, milan, italy"`) is joined with the following line
/// when that makes a whole record.
fn next_record<'a>(
    rows: &mut std::iter::Peekable<impl Iterator<Item = (u64, &'a [u8])>>,
    n: usize,
) -> Option<(u64, Fields)> {
    let (line_no, raw) = rows.next()?;
    let line = decode_line(raw);
    let fields = split_line(&line, n);
    if let Err(why) = &fields
        && why.ends_with("no closing quote")
        && let Some((_, next)) = rows.peek()
    {
        let joined = format!("{line} {}", decode_line(next));
        if let Ok(fields) = split_line(&joined, n) {
            rows.next();
            return Some((line_no, Ok(fields)));
        }
    }
    Some((line_no, fields))
}

/// Splits one line into exactly `n` fields (`None` for `NULL`), or says why it cannot.
///
/// A quoted field ends at a `"` followed by `;` or the end of the line, so quotes inside
/// a title (`"O" Is for Outlaw`, escaped or not) and `;` inside a quoted location stay
/// in the field. `\"` is an escaped quote.
fn split_line(line: &str, n: usize) -> Fields {
    let mut fields = Vec::with_capacity(n);
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'"') {
            let mut field = String::new();
            let mut j = i + 1;
            let mut start = j;
            loop {
                match bytes.get(j) {
                    None => return Err(format!("field {} has no closing quote", fields.len() + 1)),
                    Some(b'\\') if bytes.get(j + 1) == Some(&b'"') => {
                        field.push_str(&line[start..j]);
                        field.push('"');
                        j += 2;
                        start = j;
                    }
                    Some(b'"') if matches!(bytes.get(j + 1), None | Some(b';')) => {
                        field.push_str(&line[start..j]);
                        j += 1;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            fields.push(Some(field));
            i = j;
        } else {
            let end = line[i..].find(';').map_or(line.len(), |k| i + k);
            let raw = &line[i..end];
            fields.push(if raw == "NULL" || raw.is_empty() { None } else { Some(raw.to_owned()) });
            i = end;
        }
        match bytes.get(i) {
            None => break,
            Some(b';') => i += 1,
            Some(_) => return Err(format!("unexpected text after field {}", fields.len())),
        }
    }
    if fields.len() != n {
        return Err(format!("expected {n} fields, found {}", fields.len()));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(line: &str, expected: &[Option<&str>]) {
        let fields = split_line(line, expected.len()).unwrap();
        let fields: Vec<Option<&str>> = fields.iter().map(Option::as_deref).collect();
        assert_eq!(fields, expected);
    }

    #[test]
    fn plain_fields() {
        check(r#""1";"nyc, new york, usa";NULL"#, &[Some("1"), Some("nyc, new york, usa"), None]);
    }

    #[test]
    fn quotes_inside_fields() {
        check(
            r#""0449003787";"\"O\" Is for Outlaw";"x""#,
            &[Some("0449003787"), Some("\"O\" Is for Outlaw"), Some("x")],
        );
        check(
            r#""078946697X";"DK Readers (Level 4: Proficient Readers)\"";"Michael Teitelbaum""#,
            &[
                Some("078946697X"),
                Some("DK Readers (Level 4: Proficient Readers)\""),
                Some("Michael Teitelbaum"),
            ],
        );
    }

    #[test]
    fn semicolon_inside_a_quoted_field() {
        check(
            r#""8196";"auck;and, auckland, new zealand";"18""#,
            &[Some("8196"), Some("auck;and, auckland, new zealand"), Some("18")],
        );
    }

    #[test]
    fn malformed_lines_say_why() {
        assert_eq!(split_line(r#""1";"2""#, 3), Err("expected 3 fields, found 2".into()));
        assert_eq!(split_line(r#""1";"2"#, 2), Err("field 2 has no closing quote".into()));
        assert_eq!(split_line(r#""1"x;"2""#, 2), Err("expected 2 fields, found 1".into()));
    }
}
