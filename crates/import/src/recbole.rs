//! RecBole atomic files: MovieLens-100K with its Freebase knowledge graph, and
//! MovieLens-1M.
//!
//! Tab-separated files whose header names each column as `name:type`
//! (`user_id:token`, `rating:float`, `class:token_seq`). A data set called NAME is the
//! files `NAME.item`, `NAME.user`, `NAME.inter` and, when present, `NAME.kg` and
//! `NAME.link`. Columns are found by name, so the two MovieLens layouts (`class` or
//! `genre` for the genres) read the same way.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use shopgraph_core::event::EventKind;
use shopgraph_core::kg::Triple;
use shopgraph_core::product::{Category, NewProduct};
use shopgraph_core::user::NewUser;

use crate::clean::clean_text;
use crate::dataset::{Dataset, EventRecord, ImportError, file_name, lines, read_file};
use crate::report::{Report, SetAside};
use crate::synthetic;

/// True when `dir` holds RecBole atomic files for the data set named like the folder.
pub fn looks_like(dir: &Path) -> bool {
    dataset_name(dir).is_some_and(|name| dir.join(format!("{name}.inter")).is_file())
}

fn dataset_name(dir: &Path) -> Option<String> {
    dir.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Reads the data set in `dir`, named after the folder (`ml-100k`, `ml-1m`).
pub fn read(dir: &Path) -> Result<(Dataset, Report), ImportError> {
    let name = dataset_name(dir).ok_or_else(|| ImportError::UnknownSource(dir.to_owned()))?;
    let mut report = Report::new(&format!("{name} ({})", dir.display()));
    let mut data = Dataset {
        categories: vec![Category {
            key: "movies".into(),
            name: "Movies".into(),
            parent_key: None,
        }],
        ..Dataset::default()
    };
    read_items(&dir.join(format!("{name}.item")), &name, &mut data, &mut report)?;
    read_users(&dir.join(format!("{name}.user")), &name, &mut data, &mut report)?;
    read_inters(&dir.join(format!("{name}.inter")), &name, &mut data, &mut report)?;
    let kg = dir.join(format!("{name}.kg"));
    if kg.is_file() {
        read_kg(&kg, &dir.join(format!("{name}.link")), &name, &mut data, &mut report)?;
    }
    Ok((data, report))
}

/// One atomic file: its column names and its rows, split on tabs.
struct Atomic {
    file: String,
    columns: Vec<String>,
    bytes: Vec<u8>,
}

impl Atomic {
    fn open(path: &Path, required: &[&str]) -> Result<Atomic, ImportError> {
        let bytes = read_file(path)?;
        let header = lines(&bytes)
            .next()
            .map(|(_, h)| String::from_utf8_lossy(h).into_owned())
            .unwrap_or_default();
        let columns: Vec<String> = header
            .split('\t')
            .map(|c| c.split(':').next().unwrap_or_default().to_owned())
            .collect();
        if let Some(missing) = required.iter().find(|r| !columns.iter().any(|c| c == *r)) {
            return Err(ImportError::BadHeader {
                file: path.to_owned(),
                format: "RecBole atomic file",
                expected: format!("a column named {missing}"),
                found: header,
            });
        }
        Ok(Atomic { file: file_name(path), columns, bytes })
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Data rows: line number and fields, or line number and why the row is malformed.
    fn rows(&self) -> impl Iterator<Item = (u64, Result<Vec<&str>, String>)> {
        let n = self.columns.len();
        lines(&self.bytes).skip(1).map(move |(line_no, raw)| {
            let row = match std::str::from_utf8(raw) {
                Err(e) => Err(format!("not UTF-8 at byte {}", e.valid_up_to())),
                Ok(line) => {
                    let fields: Vec<&str> = line.split('\t').collect();
                    if fields.len() == n {
                        Ok(fields)
                    } else {
                        Err(format!("expected {n} fields, found {}", fields.len()))
                    }
                }
            };
            (line_no, row)
        })
    }
}

fn read_items(
    path: &Path,
    name: &str,
    data: &mut Dataset,
    report: &mut Report,
) -> Result<(), ImportError> {
    let file = Atomic::open(path, &["item_id", "movie_title"])?;
    let id_col = file.column("item_id").expect("checked");
    let title_col = file.column("movie_title").expect("checked");
    let year_col = file.column("release_year");
    let genre_col = file.column("class").or_else(|| file.column("genre"));
    let mut genres = BTreeSet::new();
    let mut seen = HashSet::new();
    for (line_no, row) in file.rows() {
        report.read("products");
        let fields = match row {
            Ok(fields) => fields,
            Err(why) => {
                report.set_aside("products", SetAside::Malformed, &file.file, line_no, why);
                continue;
            }
        };
        let title = clean_text(fields[title_col]);
        if fields[id_col].is_empty() || title.is_empty() {
            report.set_aside(
                "products",
                SetAside::Malformed,
                &file.file,
                line_no,
                "no item id or title".into(),
            );
            continue;
        }
        let sku = format!("{name}:{}", fields[id_col]);
        // An id the store would refuse (a control character, say) is this line's fault:
        // set aside here, where the report can say which line it was.
        if let Err(why) = shopgraph_core::check_identifier("sku", &sku) {
            report.set_aside("products", SetAside::Malformed, &file.file, line_no, why);
            continue;
        }
        if !seen.insert(sku.clone()) {
            report.set_aside(
                "products",
                SetAside::Duplicate,
                &file.file,
                line_no,
                format!("item {sku} repeats"),
            );
            continue;
        }
        let year = year_col
            .and_then(|c| fields[c].parse::<f64>().ok())
            .map(|y| y as i32)
            .filter(|y| *y > 1800);
        let mut category_keys = vec!["movies".to_owned()];
        for genre in genre_col.map(|c| fields[c]).unwrap_or_default().split_whitespace() {
            let key = format!("movies/{}", genre.to_lowercase());
            // A genre the store could not key (a control character in a damaged file)
            // is dropped from the item, which is kept without it.
            if shopgraph_core::check_identifier("category key", &key).is_err() {
                report.repaired("products");
                continue;
            }
            genres.insert((key.clone(), genre.to_owned()));
            category_keys.push(key);
        }
        data.products.push(NewProduct {
            price_cents: synthetic::price_cents(&sku, synthetic::MOVIES),
            stock: synthetic::stock(&sku),
            sku,
            title,
            description: None,
            maker: None,
            publisher: None,
            year,
            image_url: None,
            currency: "EUR".into(),
            category_keys,
            attributes: Some(serde_json::json!({ "format": "movie" }).to_string()),
            synthetic_fields: synthetic::SYNTHETIC_FIELDS.iter().map(|s| (*s).to_owned()).collect(),
            source: name.to_owned(),
        });
        report.kept("products");
    }
    for (key, genre) in genres {
        data.categories.push(Category { key, name: genre, parent_key: Some("movies".into()) });
    }
    Ok(())
}

fn read_users(
    path: &Path,
    name: &str,
    data: &mut Dataset,
    report: &mut Report,
) -> Result<(), ImportError> {
    let file = Atomic::open(path, &["user_id"])?;
    let id_col = file.column("user_id").expect("checked");
    let age_col = file.column("age");
    // Everything else (gender, occupation, zip code) is kept as attributes.
    let other: Vec<(usize, &str)> = file
        .columns
        .iter()
        .enumerate()
        .filter(|(i, c)| *i != id_col && Some(*i) != age_col && !c.is_empty())
        .map(|(i, c)| (i, c.as_str()))
        .collect();
    let mut seen = HashSet::new();
    for (line_no, row) in file.rows() {
        report.read("users");
        let fields = match row {
            Ok(fields) => fields,
            Err(why) => {
                report.set_aside("users", SetAside::Malformed, &file.file, line_no, why);
                continue;
            }
        };
        if fields[id_col].is_empty() {
            report.set_aside(
                "users",
                SetAside::Malformed,
                &file.file,
                line_no,
                "no user id".into(),
            );
            continue;
        }
        let external_id = format!("{name}:{}", fields[id_col]);
        if let Err(why) = shopgraph_core::check_identifier("user id", &external_id) {
            report.set_aside("users", SetAside::Malformed, &file.file, line_no, why);
            continue;
        }
        if !seen.insert(external_id.clone()) {
            report.set_aside(
                "users",
                SetAside::Duplicate,
                &file.file,
                line_no,
                format!("user {external_id} repeats"),
            );
            continue;
        }
        let attributes: serde_json::Map<String, serde_json::Value> = other
            .iter()
            .map(|(i, c)| ((*c).to_owned(), serde_json::Value::from(fields[*i])))
            .collect();
        data.users.push(NewUser {
            external_id,
            display_name: None,
            location: None,
            // MovieLens-1M codes age in bands (1, 18, 25, …); the band's lower bound is kept.
            age: age_col.and_then(|c| fields[c].parse::<f64>().ok()).map(|a| a as i32),
            attributes: Some(serde_json::Value::Object(attributes).to_string()),
        });
        report.kept("users");
    }
    Ok(())
}

fn read_inters(
    path: &Path,
    name: &str,
    data: &mut Dataset,
    report: &mut Report,
) -> Result<(), ImportError> {
    let file = Atomic::open(path, &["user_id", "item_id", "rating", "timestamp"])?;
    let [user_col, item_col, rating_col, time_col] =
        ["user_id", "item_id", "rating", "timestamp"].map(|c| file.column(c).expect("checked"));
    let users: HashSet<&str> = data.users.iter().map(|u| u.external_id.as_str()).collect();
    let products: HashSet<&str> = data.products.iter().map(|p| p.sku.as_str()).collect();
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for (line_no, row) in file.rows() {
        report.read("events");
        let fields = match row {
            Ok(fields) => fields,
            Err(why) => {
                report.set_aside("events", SetAside::Malformed, &file.file, line_no, why);
                continue;
            }
        };
        let (Ok(rating), Ok(seconds)) =
            (fields[rating_col].parse::<f64>(), fields[time_col].parse::<f64>())
        else {
            let why = format!(
                "rating {:?} or timestamp {:?} is not a number",
                fields[rating_col], fields[time_col]
            );
            report.set_aside("events", SetAside::Malformed, &file.file, line_no, why);
            continue;
        };
        // Seconds since 1970, up to the year 9999 (the store's range): a larger number is
        // milliseconds or a damaged line, and found here it is reported at its line.
        if !seconds.is_finite() || !(0.0..=253_402_300_799.0).contains(&seconds) {
            let why = format!("timestamp {:?} is not a time", fields[time_col]);
            report.set_aside("events", SetAside::Malformed, &file.file, line_no, why);
            continue;
        }
        if !(0.0..=5.0).contains(&rating) {
            report.set_aside(
                "events",
                SetAside::Malformed,
                &file.file,
                line_no,
                format!("rating {rating} is not 0 to 5"),
            );
            continue;
        }
        let user = format!("{name}:{}", fields[user_col]);
        let sku = format!("{name}:{}", fields[item_col]);
        if !users.contains(user.as_str()) || !products.contains(sku.as_str()) {
            let why = format!("rating of {sku} by {user}: one of them is not in the data set");
            report.set_aside("events", SetAside::Orphaned, &file.file, line_no, why);
            continue;
        }
        let key = format!("{user}:{sku}:{seconds}");
        if !seen.insert(key.clone()) {
            report.set_aside(
                "events",
                SetAside::Duplicate,
                &file.file,
                line_no,
                format!("{key} repeats"),
            );
            continue;
        }
        events.push(EventRecord {
            key,
            user,
            product: Some(sku),
            kind: EventKind::Rating,
            value: Some(rating),
            payload: None,
            occurred_at: (seconds * 1000.0) as i64,
        });
        report.kept("events");
    }
    data.events = events;
    Ok(())
}

fn read_kg(
    kg: &Path,
    link: &Path,
    name: &str,
    data: &mut Dataset,
    report: &mut Report,
) -> Result<(), ImportError> {
    let file = Atomic::open(kg, &["head_id", "relation_id", "tail_id"])?;
    let [h, r, t] = ["head_id", "relation_id", "tail_id"].map(|c| file.column(c).expect("checked"));
    let mut seen = HashSet::new();
    for (line_no, row) in file.rows() {
        report.read("kg_triples");
        match row {
            Ok(f) if !f[h].is_empty() && !f[r].is_empty() && !f[t].is_empty() => {
                let triple = Triple {
                    head: f[h].to_owned(),
                    relation: f[r].to_owned(),
                    tail: f[t].to_owned(),
                };
                if seen.insert(triple.clone()) {
                    data.triples.push(triple);
                    report.kept("kg_triples");
                } else {
                    report.set_aside(
                        "kg_triples",
                        SetAside::Duplicate,
                        &file.file,
                        line_no,
                        "triple repeats".into(),
                    );
                }
            }
            Ok(_) => report.set_aside(
                "kg_triples",
                SetAside::Malformed,
                &file.file,
                line_no,
                "empty field".into(),
            ),
            Err(why) => {
                report.set_aside("kg_triples", SetAside::Malformed, &file.file, line_no, why)
            }
        }
    }
    if !link.is_file() {
        // Triples without links still form a graph; no product reaches it.
        return Ok(());
    }
    let file = Atomic::open(link, &["item_id", "entity_id"])?;
    let [item, entity] = ["item_id", "entity_id"].map(|c| file.column(c).expect("checked"));
    let products: HashSet<&str> = data.products.iter().map(|p| p.sku.as_str()).collect();
    for (line_no, row) in file.rows() {
        report.read("kg_links");
        let fields = match row {
            Ok(fields) => fields,
            Err(why) => {
                report.set_aside("kg_links", SetAside::Malformed, &file.file, line_no, why);
                continue;
            }
        };
        let sku = format!("{name}:{}", fields[item]);
        if !products.contains(sku.as_str()) {
            report.set_aside(
                "kg_links",
                SetAside::Orphaned,
                &file.file,
                line_no,
                format!("link of unknown item {sku}"),
            );
            continue;
        }
        data.product_entities.push((sku, fields[entity].to_owned()));
        report.kept("kg_links");
    }
    Ok(())
}
