//! What every reader produces.

use std::path::{Path, PathBuf};

use shopgraph_core::event::{EventKind, NewEvent};
use shopgraph_core::kg::Triple;
use shopgraph_core::product::{Category, NewProduct};
use shopgraph_core::user::NewUser;
use shopgraph_core::{ProductId, Timestamp, UserId, check_identifier};

use crate::report::{Report, SetAside};

/// A behaviour event as a source names it: by the user's external id and the
/// product's sku. The loader resolves them to store ids.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// Idempotency key, stable across re-imports of the same source.
    pub key: String,
    pub user: String,
    pub product: Option<String>,
    pub kind: EventKind,
    pub value: Option<f64>,
    pub payload: Option<String>,
    pub occurred_at: Timestamp,
}

/// Everything one source holds, cleaned, with every reference checked: each event's
/// user and product, and each product's categories, are in the dataset.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub categories: Vec<Category>,
    pub products: Vec<NewProduct>,
    pub users: Vec<NewUser>,
    pub events: Vec<EventRecord>,
    pub triples: Vec<Triple>,
    /// (sku, knowledge-graph entity) links.
    pub product_entities: Vec<(String, String)>,
}

impl Dataset {
    /// Checks every record against the rules the store enforces (identifiers, event
    /// shapes, timestamps, payload sizes) and sets aside, as malformed, those that would
    /// fail: so that a load never fails halfway through on one bad row, whatever the
    /// reader let through.
    pub fn vet(&mut self, report: &mut Report) {
        const WHERE: &str = "checks before writing";
        let refuse = |report: &mut Report, entity: &'static str, why: String| {
            // Saturating: a reader may not count what it derived (the categories of
            // RecBole's genres, say), and a check must never panic over a count.
            let counts = report.counts(entity);
            counts.kept = counts.kept.saturating_sub(1);
            report.set_aside(entity, SetAside::Malformed, WHERE, 0, why);
        };
        self.categories.retain(|c| match check_identifier("category key", &c.key) {
            Ok(()) => true,
            Err(why) => {
                refuse(report, "categories", why);
                false
            }
        });
        self.products.retain(|p| {
            let checked = check_identifier("sku", &p.sku)
                .and_then(|()| {
                    p.category_keys.iter().try_for_each(|k| check_identifier("category key", k))
                })
                .and_then(|()| {
                    if p.price_cents < 0 {
                        Err(format!("product {}: negative price", p.sku))
                    } else {
                        Ok(())
                    }
                });
            match checked {
                Ok(()) => true,
                Err(why) => {
                    refuse(report, "products", why);
                    false
                }
            }
        });
        self.users.retain(|u| match check_identifier("user id", &u.external_id) {
            Ok(()) => true,
            Err(why) => {
                refuse(report, "users", why);
                false
            }
        });
        self.events.retain(|e| {
            let probe = NewEvent {
                idempotency_key: e.key.clone(),
                user: UserId(0),
                product: e.product.as_ref().map(|_| ProductId(0)),
                kind: e.kind,
                value: e.value,
                payload: e.payload.clone(),
                occurred_at: e.occurred_at,
            };
            let checked = probe
                .validate()
                .map_err(|err| format!("event {:?}: {err}", e.key))
                .and_then(|()| check_identifier("user id", &e.user))
                .and_then(|()| {
                    e.product.as_deref().map_or(Ok(()), |sku| check_identifier("sku", sku))
                });
            match checked {
                Ok(()) => true,
                Err(why) => {
                    refuse(report, "events", why);
                    false
                }
            }
        });
    }
}

/// A source that cannot be read at all. Bad rows are not errors: see [`crate::Report`].
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: missing (is the data set fetched? run scripts/setup.sh)")]
    MissingFile(PathBuf),
    #[error("{file}: header does not match {format}: expected {expected:?}, found {found:?}")]
    BadHeader { file: PathBuf, format: &'static str, expected: String, found: String },
    #[error(
        "{0}: not a known source (expected a directory of .jsonl files, Book-Crossing or RecBole files)"
    )]
    UnknownSource(PathBuf),
}

/// Reads a whole file, with the path in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, ImportError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ImportError::MissingFile(path.to_owned()),
        _ => ImportError::Io { path: path.to_owned(), source },
    })
}

/// Lines of a file's bytes without their `\n` or `\r\n`, numbered from 1.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .enumerate()
        .map(|(i, line)| (i as u64 + 1, line))
}

/// The file name, for diagnostics.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
