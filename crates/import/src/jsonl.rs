//! The shop import format: a directory of JSON Lines files, one object a line, each
//! file optional. A shop brings its own catalog this way; the format is documented in
//! `graph_data/README.md`.
//!
//! - `categories.jsonl`: `{"key", "name", "parent"?}`
//! - `products.jsonl`: `{"sku", "title", "description"?, "author"? | "brand"?,
//!   "publisher"?, "year"?, "image_url"?, "price", "currency"?, "stock",
//!   "categories"?: [key…], "attributes"?: {…}}` (price in currency units, e.g. 12.99)
//! - `users.jsonl`: `{"id", "name"?, "location"?, "age"?, "attributes"?: {…}}`
//! - `events.jsonl`: `{"key"?, "user", "product"?, "kind", "value"?, "payload"?: any,
//!   "at_ms"}`
//! - `reviews.jsonl`: `{"key"?, "user", "product", "rating"?, "text", "at_ms"}`
//!
//! Unknown fields are refused (a typo must not silently drop data). Events and reviews
//! without a `key` get one derived from the line's bytes, so re-importing a file stores
//! each line once. Users and products an event names may come from the same import or
//! already be in the store; the loader sets aside those found in neither.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use shopgraph_core::event::{EventKind, NewEvent};
use shopgraph_core::product::{Category, Maker, MakerKind, NewProduct};
use shopgraph_core::user::NewUser;
use shopgraph_core::{ProductId, UserId};

use crate::clean::{clean_text, organisation_key, person_key};
use crate::dataset::{Dataset, EventRecord, ImportError, lines, read_file};
use crate::report::{Report, SetAside};

pub const FILES: [&str; 5] =
    ["categories.jsonl", "products.jsonl", "users.jsonl", "events.jsonl", "reviews.jsonl"];

/// True when `dir` holds at least one file of the format.
pub fn looks_like(dir: &Path) -> bool {
    FILES.iter().any(|f| dir.join(f).is_file())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryLine {
    key: String,
    name: String,
    #[serde(default)]
    parent: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductLine {
    sku: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    publisher: Option<String>,
    #[serde(default)]
    year: Option<i32>,
    #[serde(default)]
    image_url: Option<String>,
    price: f64,
    #[serde(default)]
    currency: Option<String>,
    stock: i64,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserLine {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    age: Option<i32>,
    #[serde(default)]
    attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    #[serde(default)]
    key: Option<String>,
    user: String,
    #[serde(default)]
    product: Option<String>,
    kind: String,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
    at_ms: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewLine {
    #[serde(default)]
    key: Option<String>,
    user: String,
    product: String,
    #[serde(default)]
    rating: Option<f64>,
    text: String,
    at_ms: i64,
}

/// Reads every file of the format present in `dir`.
pub fn read(dir: &Path) -> Result<(Dataset, Report), ImportError> {
    if !looks_like(dir) {
        return Err(ImportError::UnknownSource(dir.to_owned()));
    }
    let mut report = Report::new(&format!("shop files ({})", dir.display()));
    let mut data = Dataset::default();
    each_line(dir, "categories.jsonl", "categories", &mut report, |line: CategoryLine, _| {
        let key = line.key.trim().to_owned();
        let name = clean_text(&line.name);
        if key.is_empty() || name.is_empty() {
            return Err("category needs a key and a name".into());
        }
        if data.categories.iter().any(|c| c.key == key) {
            return Err(Refusal::duplicate(format!("category {key} repeats an earlier line")));
        }
        data.categories.push(Category {
            key,
            name,
            parent_key: line.parent.filter(|p| !p.is_empty()),
        });
        Ok(())
    })?;
    let known_categories: HashSet<String> = data.categories.iter().map(|c| c.key.clone()).collect();
    let mut skus = HashSet::new();
    each_line(dir, "products.jsonl", "products", &mut report, |line: ProductLine, _| {
        let p = product(line, &known_categories)?;
        if !skus.insert(p.sku.clone()) {
            return Err(Refusal::duplicate(format!("product {} repeats an earlier line", p.sku)));
        }
        data.products.push(p);
        Ok(())
    })?;
    let mut user_ids = HashSet::new();
    each_line(dir, "users.jsonl", "users", &mut report, |line: UserLine, _| {
        let external_id = line.id.trim().to_owned();
        if external_id.is_empty() {
            return Err("user needs an id".into());
        }
        if !user_ids.insert(external_id.clone()) {
            return Err(Refusal::duplicate(format!("user {external_id} repeats an earlier line")));
        }
        data.users.push(user(line, external_id));
        Ok(())
    })?;
    let mut keys = HashSet::new();
    each_line(dir, "events.jsonl", "events", &mut report, |line: EventLine, raw| {
        let event = event_from_line(line, raw)?;
        if !keys.insert(event.key.clone()) {
            return Err(Refusal::duplicate(format!("event {} repeats an earlier line", event.key)));
        }
        data.events.push(event);
        Ok(())
    })?;
    each_line(dir, "reviews.jsonl", "events", &mut report, |line: ReviewLine, raw| {
        let payload = serde_json::json!({ "text": clean_text(&line.text) }).to_string();
        let key = line.key.unwrap_or_else(|| derived_key("reviews", raw));
        let event = event(
            key,
            line.user,
            Some(line.product),
            EventKind::Review,
            line.rating,
            Some(payload),
            line.at_ms,
        )?;
        if !keys.insert(event.key.clone()) {
            return Err(Refusal::duplicate(format!(
                "review {} repeats an earlier line",
                event.key
            )));
        }
        data.events.push(event);
        Ok(())
    })?;
    Ok((data, report))
}

/// Parses one line of `events.jsonl` (also what `shopgraph events append` reads from
/// a pipe). The error says what is wrong with it, in words.
pub fn parse_event_line(raw: &[u8]) -> Result<EventRecord, String> {
    let text = std::str::from_utf8(raw)
        .map_err(|e| format!("not valid UTF-8 (first bad byte at offset {})", e.valid_up_to()))?;
    let line: EventLine =
        serde_json::from_str(text).map_err(|e| format!("not a valid event line: {e}"))?;
    event_from_line(line, raw)
}

fn event_from_line(line: EventLine, raw: &[u8]) -> Result<EventRecord, String> {
    let kind = EventKind::parse(&line.kind).map_err(|e| e.to_string())?;
    let payload = line.payload.map(|p| p.to_string());
    let key = line.key.unwrap_or_else(|| derived_key("events", raw));
    event(key, line.user, line.product, kind, line.value, payload, line.at_ms)
}

/// Why a line was set aside: malformed (the default, from any message) or a duplicate.
struct Refusal {
    why: SetAside,
    reason: String,
}

impl Refusal {
    fn duplicate(reason: String) -> Refusal {
        Refusal { why: SetAside::Duplicate, reason }
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal { why: SetAside::Malformed, reason }
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Refusal {
        Refusal { why: SetAside::Malformed, reason: reason.to_owned() }
    }
}

/// Parses each line of `file` (if present) as `T` and hands it to `accept`; a line
/// that is not UTF-8, not JSON of the right shape, or refused by `accept` is set aside.
fn each_line<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    file: &str,
    entity: &'static str,
    report: &mut Report,
    mut accept: impl FnMut(T, &[u8]) -> Result<(), Refusal>,
) -> Result<(), ImportError> {
    let path = dir.join(file);
    if !path.is_file() {
        return Ok(());
    }
    let bytes = read_file(&path)?;
    for (line_no, raw) in lines(&bytes) {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        report.read(entity);
        let outcome = match std::str::from_utf8(raw) {
            Err(e) => {
                Err(format!("not valid UTF-8 (first bad byte at offset {})", e.valid_up_to())
                    .into())
            }
            Ok(text) => match serde_json::from_str::<T>(text) {
                Err(e) => Err(format!("not a valid {entity} line: {e}").into()),
                Ok(value) => accept(value, raw),
            },
        };
        match outcome {
            Ok(()) => report.kept(entity),
            Err(Refusal { why, reason }) => report.set_aside(entity, why, file, line_no, reason),
        }
    }
    Ok(())
}

/// One product as the shop's API receives it: the fields of a `products.jsonl` line,
/// under the same rules. `categories` are the keys the store knows.
pub fn product_from_json(
    value: serde_json::Value,
    categories: &HashSet<String>,
) -> Result<NewProduct, String> {
    let line: ProductLine =
        serde_json::from_value(value).map_err(|e| format!("not a valid product: {e}"))?;
    product(line, categories)
}

/// One user as the shop's API receives it: the fields of a `users.jsonl` line.
pub fn user_from_json(value: serde_json::Value) -> Result<NewUser, String> {
    let line: UserLine =
        serde_json::from_value(value).map_err(|e| format!("not a valid user: {e}"))?;
    let external_id = line.id.trim().to_owned();
    if external_id.is_empty() {
        return Err("user needs an id".into());
    }
    shopgraph_core::check_identifier("user id", &external_id)?;
    Ok(user(line, external_id))
}

/// One event as the shop's API receives it: the fields of an `events.jsonl` line. An
/// event without a key gets one derived from its JSON, so a retry is still one event.
pub fn event_from_json(value: serde_json::Value) -> Result<EventRecord, String> {
    let raw = value.to_string();
    let line: EventLine =
        serde_json::from_value(value).map_err(|e| format!("not a valid event: {e}"))?;
    event_from_line(line, raw.as_bytes())
}

fn user(line: UserLine, external_id: String) -> NewUser {
    NewUser {
        external_id,
        display_name: line.name.map(|n| clean_text(&n)),
        location: line.location.map(|l| clean_text(&l)),
        age: line.age.filter(|a| (5..=110).contains(a)),
        attributes: line.attributes.map(|a| serde_json::Value::Object(a).to_string()),
    }
}

fn product(line: ProductLine, categories: &HashSet<String>) -> Result<NewProduct, String> {
    let sku = line.sku.trim().to_owned();
    let title = clean_text(&line.title);
    if sku.is_empty() || title.is_empty() {
        return Err("product needs a sku and a title".into());
    }
    if !line.price.is_finite() || line.price < 0.0 {
        return Err(format!("product {sku}: price {} is not a non-negative number", line.price));
    }
    if line.stock < 0 {
        return Err(format!("product {sku}: negative stock"));
    }
    if let Some(missing) = line.categories.iter().find(|c| !categories.contains(*c)) {
        return Err(format!("product {sku}: category {missing:?} is not in categories.jsonl"));
    }
    let maker = match (line.author, line.brand) {
        (Some(_), Some(_)) => {
            return Err(format!("product {sku}: give an author or a brand, not both"));
        }
        (Some(a), None) => to_maker(&a, MakerKind::Author, person_key),
        (None, Some(b)) => to_maker(&b, MakerKind::Brand, organisation_key),
        (None, None) => None,
    };
    Ok(NewProduct {
        sku,
        title,
        description: line.description.map(|d| clean_text(&d)).filter(|d| !d.is_empty()),
        maker,
        publisher: line
            .publisher
            .and_then(|p| to_maker(&p, MakerKind::Publisher, organisation_key)),
        year: line.year,
        image_url: line.image_url,
        price_cents: (line.price * 100.0).round() as i64,
        currency: line.currency.unwrap_or_else(|| "EUR".into()),
        stock: line.stock,
        category_keys: line.categories,
        attributes: line.attributes.map(|a| serde_json::Value::Object(a).to_string()),
        synthetic_fields: Vec::new(),
        source: "shop".into(),
    })
}

fn to_maker(raw: &str, kind: MakerKind, key_of: fn(&str) -> String) -> Option<Maker> {
    let name = clean_text(raw);
    let key = key_of(&name);
    (!key.is_empty()).then_some(Maker { kind, key, name })
}

fn event(
    key: String,
    user: String,
    product: Option<String>,
    kind: EventKind,
    value: Option<f64>,
    payload: Option<String>,
    occurred_at: i64,
) -> Result<EventRecord, String> {
    // The store's own rules, checked now so a bad line is reported with its line number.
    let probe = NewEvent {
        idempotency_key: key,
        user: UserId(0),
        product: product.as_ref().map(|_| ProductId(0)),
        kind,
        value,
        payload,
        occurred_at,
    };
    probe.validate().map_err(|e| e.to_string())?;
    Ok(EventRecord {
        key: probe.idempotency_key,
        user,
        product,
        kind,
        value,
        payload: probe.payload,
        occurred_at,
    })
}

/// A key for a line that brought none: the same bytes give the same key.
fn derived_key(file: &str, raw: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in raw {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("jsonl:{file}:{h:016x}")
}
