//! What the index holds of a product, and the text its vector is encoded from.

use std::collections::HashMap;

use shopgraph_core::ProductId;
use shopgraph_core::product::{Category, Product};
use tantivy::schema::Facet;

/// The catalog's category tree, for facet paths and names. Cycles in bad data are cut:
/// a path stops at the first category it has already passed.
#[derive(Clone, Debug, Default)]
pub struct Categories {
    by_key: HashMap<String, Category>,
}

impl Categories {
    pub fn new(categories: &[Category]) -> Categories {
        Categories { by_key: categories.iter().map(|c| (c.key.clone(), c.clone())).collect() }
    }

    pub fn name(&self, key: &str) -> Option<&str> {
        self.by_key.get(key).map(|c| c.name.as_str())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// Keys from the root down to `key` (just `[key]` for an unknown key).
    pub fn path<'a>(&'a self, key: &'a str) -> Vec<&'a str> {
        let mut path: Vec<&str> = Vec::new();
        let mut at = Some(key);
        while let Some(k) = at {
            if path.contains(&k) {
                break;
            }
            path.push(k);
            at = self.by_key.get(k).and_then(|c| c.parent_key.as_deref());
        }
        if path.is_empty() {
            path.push(key);
        }
        path.reverse();
        path
    }

    /// The facet of `key`: its keys from the root, so that a filter on a category also
    /// finds its subcategories.
    pub fn facet(&self, key: &str) -> Facet {
        Facet::from_path(self.path(key))
    }

    /// Names from the root down to `key`.
    pub fn names<'a>(&'a self, key: &'a str) -> Vec<&'a str> {
        self.path(key).into_iter().map(|k| self.name(k).unwrap_or(k)).collect()
    }
}

/// One product as the search index sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductDoc {
    pub id: ProductId,
    pub sku: String,
    pub title: String,
    pub maker: Option<String>,
    pub publisher: Option<String>,
    /// Category keys.
    pub categories: Vec<String>,
    /// Category names along each category's path, for matching words.
    pub category_names: Vec<String>,
    pub description: Option<String>,
    /// Attribute names and values as words.
    pub attributes: Option<String>,
    pub price_cents: i64,
    pub stock: i64,
    pub year: Option<i32>,
    /// Interactions with the product (views, purchases, ratings…): the popularity sort.
    pub popularity: u64,
}

impl ProductDoc {
    pub fn new(product: &Product, categories: &Categories, popularity: u64) -> ProductDoc {
        let mut category_names: Vec<String> = Vec::new();
        for key in &product.categories {
            for name in categories.names(key) {
                if !category_names.iter().any(|n| n == name) {
                    category_names.push(name.to_owned());
                }
            }
        }
        ProductDoc {
            id: product.id,
            sku: product.sku.clone(),
            title: product.title.clone(),
            maker: product.maker.as_ref().map(|m| m.name.clone()),
            publisher: product.publisher.as_ref().map(|m| m.name.clone()),
            categories: product.categories.clone(),
            category_names,
            description: product.description.clone(),
            attributes: product.attributes.as_deref().map(attributes_text),
            price_cents: product.price_cents,
            stock: product.stock,
            year: product.year,
            popularity,
        }
    }

    /// The text the product's vector is encoded from: what it is, who made it, where it
    /// sits, and the start of its description. Price and stock are left out: they change
    /// often and say nothing about meaning.
    pub fn semantic_text(&self) -> String {
        let mut text = self.title.clone();
        if let Some(maker) = &self.maker {
            text.push_str(" by ");
            text.push_str(maker);
        }
        if !self.category_names.is_empty() {
            text.push_str(". ");
            text.push_str(&self.category_names.join(", "));
        }
        if let Some(attributes) = &self.attributes {
            text.push_str(". ");
            text.push_str(attributes);
        }
        if let Some(description) = &self.description {
            text.push_str(". ");
            text.push_str(description);
        }
        text
    }
}

/// `{"mount": "L", "sensor": "full frame"}` → `mount L sensor full frame`. Anything that
/// is not a JSON object is used as it is.
pub fn attributes_text(json: &str) -> String {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                // Keys in sorted order whichever map serde_json was built with (the
                // LLM crates turn on its insertion-order map): one text per product.
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (k, v) in entries {
                    out.push(k.replace('_', " "));
                    walk(v, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Number(n) => out.push(n.to_string()),
            serde_json::Value::Bool(b) => out.push(b.to_string()),
            serde_json::Value::Null => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(value) => {
            let mut out = Vec::new();
            walk(&value, &mut out);
            out.join(" ")
        }
        Err(_) => json.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(key: &str, parent: Option<&str>) -> Category {
        Category { key: key.into(), name: key.to_uppercase(), parent_key: parent.map(Into::into) }
    }

    #[test]
    fn paths_follow_parents_and_stop_at_cycles() {
        let cats = Categories::new(&[
            cat("books", None),
            cat("fantasy", Some("books")),
            cat("a", Some("b")),
            cat("b", Some("a")),
        ]);
        assert_eq!(cats.path("fantasy"), ["books", "fantasy"]);
        assert_eq!(cats.names("fantasy"), ["BOOKS", "FANTASY"]);
        assert_eq!(cats.path("a"), ["b", "a"]);
        assert_eq!(cats.path("unknown"), ["unknown"]);
        assert!(cats.facet("books").is_prefix_of(&cats.facet("fantasy")));
    }

    #[test]
    fn attributes_become_words() {
        assert_eq!(
            attributes_text(r#"{"mount": "L", "max_load": 5, "tags": ["a", "b"]}"#),
            "max load 5 mount L tags a b"
        );
        assert_eq!(attributes_text("not json"), "not json");
    }
}
