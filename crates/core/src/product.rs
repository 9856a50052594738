//! Products and what describes them: categories, makers (authors, brands, publishers).

use crate::{ProductId, Timestamp};

/// What made a product: the author of a book, the brand of a device, the publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MakerKind {
    Author,
    Brand,
    Publisher,
}

impl MakerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MakerKind::Author => "author",
            MakerKind::Brand => "brand",
            MakerKind::Publisher => "publisher",
        }
    }

    pub fn parse(s: &str) -> Option<MakerKind> {
        Some(match s {
            "author" => MakerKind::Author,
            "brand" => MakerKind::Brand,
            "publisher" => MakerKind::Publisher,
            _ => return None,
        })
    }
}

/// A maker as imported: `key` is the normalised identity (variants of one name share
/// it), `name` the display form.
#[derive(Clone, Debug, PartialEq)]
pub struct Maker {
    pub kind: MakerKind,
    pub key: String,
    pub name: String,
}

/// A category; `parent_key` links it into a hierarchy.
#[derive(Clone, Debug, PartialEq)]
pub struct Category {
    pub key: String,
    pub name: String,
    pub parent_key: Option<String>,
}

/// A product as a shop or an importer describes it. `sku` is the shop's own id
/// (an ISBN-13 for books), unique in the catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct NewProduct {
    pub sku: String,
    pub title: String,
    pub description: Option<String>,
    /// Key of the author or brand ([`Maker::key`]).
    pub maker: Option<Maker>,
    pub publisher: Option<Maker>,
    pub year: Option<i32>,
    pub image_url: Option<String>,
    pub price_cents: i64,
    pub currency: String,
    pub stock: i64,
    pub category_keys: Vec<String>,
    /// Free-form attributes (format, language, …) as a JSON object text.
    pub attributes: Option<String>,
    /// Names of the fields above that were generated rather than taken from the
    /// source (the public data sets carry no prices or stock levels).
    pub synthetic_fields: Vec<String>,
    /// Where the record came from: `bookcrossing`, `ml-100k`, `shop`, ….
    pub source: String,
}

/// A stored product.
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    pub id: ProductId,
    pub sku: String,
    pub title: String,
    pub description: Option<String>,
    pub maker: Option<Maker>,
    pub publisher: Option<Maker>,
    pub year: Option<i32>,
    pub image_url: Option<String>,
    pub price_cents: i64,
    pub currency: String,
    pub stock: i64,
    pub hidden: bool,
    pub categories: Vec<String>,
    pub attributes: Option<String>,
    pub synthetic_fields: Vec<String>,
    pub source: String,
    pub updated_at: Timestamp,
}
