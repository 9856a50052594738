//! The catalog: categories, makers (authors, brands, publishers) and products.

use std::collections::{BTreeMap, HashMap};

use shopgraph_core::ProductId;
use shopgraph_core::product::{Category, Maker, MakerKind, NewProduct, Product};
use sqlx::Row;

use crate::{
    BATCH_ROWS, Result, Store, StoreError, in_list, lock_catalog, on_pool, values_placeholders,
    write_tx,
};

/// See [`Store::sync_marks`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncMarks {
    pub products: i64,
    pub products_updated_at: i64,
    pub users: i64,
    pub users_updated_at: i64,
    pub interests: i64,
    pub last_interest: i64,
    pub categories: i64,
    pub triples: i64,
    pub entity_links: i64,
    pub segment_members: i64,
    pub last_segment: i64,
    pub last_rule: i64,
}

impl SyncMarks {
    /// The marks as numbers in a fixed order: how a snapshot's stamp records them.
    pub fn to_array(&self) -> [i64; 12] {
        [
            self.products,
            self.products_updated_at,
            self.users,
            self.users_updated_at,
            self.interests,
            self.last_interest,
            self.categories,
            self.triples,
            self.entity_links,
            self.segment_members,
            self.last_segment,
            self.last_rule,
        ]
    }

    /// The inverse of [`SyncMarks::to_array`].
    pub fn from_array(marks: [i64; 12]) -> SyncMarks {
        let [
            products,
            products_updated_at,
            users,
            users_updated_at,
            interests,
            last_interest,
            categories,
            triples,
            entity_links,
            segment_members,
            last_segment,
            last_rule,
        ] = marks;
        SyncMarks {
            products,
            products_updated_at,
            users,
            users_updated_at,
            interests,
            last_interest,
            categories,
            triples,
            entity_links,
            segment_members,
            last_segment,
            last_rule,
        }
    }
}

/// How much of each thing the store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatalogCounts {
    pub products: i64,
    pub categories: i64,
    pub authors: i64,
    pub brands: i64,
    pub publishers: i64,
    pub users: i64,
    pub events: i64,
    pub kg_triples: i64,
}

const PRODUCT_COLUMNS: &str = "p.id, p.sku, p.title, p.description, m.kind AS maker_kind, m.key AS maker_key, \
     m.name AS maker_name, pb.key AS publisher_key, pb.name AS publisher_name, \
     p.year, p.image_url, p.price_cents, p.currency, p.stock, p.hidden, p.attributes, \
     p.synthetic_fields, p.source, p.updated_at";
const PRODUCT_FROM: &str = "products p LEFT JOIN makers m ON m.id = p.maker_id \
     LEFT JOIN makers pb ON pb.id = p.publisher_id";

macro_rules! product_from_row {
    ($row:expr) => {{
        let row = $row;
        let synthetic: String = row.try_get("synthetic_fields")?;
        Product {
            id: ProductId(row.try_get("id")?),
            sku: row.try_get("sku")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            maker: match (
                row.try_get::<Option<String>, _>("maker_kind")?,
                row.try_get::<Option<String>, _>("maker_key")?,
                row.try_get::<Option<String>, _>("maker_name")?,
            ) {
                (Some(kind), Some(key), Some(name)) => Some(Maker {
                    kind: MakerKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("maker kind {kind}")))?,
                    key,
                    name,
                }),
                _ => None,
            },
            publisher: match (
                row.try_get::<Option<String>, _>("publisher_key")?,
                row.try_get::<Option<String>, _>("publisher_name")?,
            ) {
                (Some(key), Some(name)) => Some(Maker { kind: MakerKind::Publisher, key, name }),
                _ => None,
            },
            year: row.try_get::<Option<i64>, _>("year")?.map(|y| y as i32),
            image_url: row.try_get("image_url")?,
            price_cents: row.try_get("price_cents")?,
            currency: row.try_get("currency")?,
            stock: row.try_get("stock")?,
            hidden: row.try_get("hidden")?,
            categories: Vec::new(),
            attributes: row.try_get("attributes")?,
            synthetic_fields: synthetic
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            source: row.try_get("source")?,
            updated_at: row.try_get("updated_at")?,
        }
    }};
}

impl Store {
    /// Inserts or renames categories, keyed by `key`.
    pub async fn upsert_categories(&self, categories: &[Category]) -> Result<()> {
        let mut by_key = BTreeMap::new();
        for c in categories {
            shopgraph_core::check_identifier("category key", &c.key)
                .map_err(StoreError::Invalid)?;
            by_key.insert(c.key.as_str(), c);
        }
        let unique: Vec<&Category> = by_key.into_values().collect();
        write_tx!(self, |tx| {
            for chunk in unique.chunks(BATCH_ROWS) {
                let sql = format!(
                    "INSERT INTO categories (key, name, parent_key) VALUES {} \
                     ON CONFLICT (key) DO UPDATE SET name = excluded.name, parent_key = excluded.parent_key",
                    values_placeholders(self.backend(), chunk.len(), 3)
                );
                let mut q = sqlx::query(&sql);
                for c in chunk {
                    q = q.bind(c.key.as_str()).bind(c.name.as_str()).bind(c.parent_key.as_deref());
                }
                q.execute(&mut *tx).await?;
            }
            Ok::<_, StoreError>(())
        })
    }

    /// Inserts or updates products keyed by `sku`, with their makers and categories,
    /// in one transaction. Returns the id of each input product, in input order.
    /// Every category key must already exist.
    pub async fn upsert_products(&self, products: &[NewProduct]) -> Result<Vec<ProductId>> {
        for p in products {
            shopgraph_core::check_identifier("sku", &p.sku).map_err(StoreError::Invalid)?;
            if p.sku.is_empty() || p.title.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "product {:?} needs a sku and a title",
                    p.sku
                )));
            }
            if p.price_cents < 0 {
                return Err(StoreError::Invalid(format!("product {}: negative price", p.sku)));
            }
        }
        // One row per maker and per sku: a multi-row upsert may not touch a row twice.
        let mut makers: BTreeMap<(&'static str, &str), &str> = BTreeMap::new();
        for p in products {
            for m in [&p.maker, &p.publisher].into_iter().flatten() {
                makers.insert((m.kind.as_str(), m.key.as_str()), m.name.as_str());
            }
        }
        let makers: Vec<_> = makers.into_iter().collect();
        let mut by_sku: BTreeMap<&str, &NewProduct> = BTreeMap::new();
        for p in products {
            by_sku.insert(p.sku.as_str(), p);
        }
        let unique: Vec<&NewProduct> = by_sku.into_values().collect();
        let category_keys: Vec<&str> = {
            let mut keys: Vec<&str> =
                unique.iter().flat_map(|p| p.category_keys.iter().map(String::as_str)).collect();
            keys.sort_unstable();
            keys.dedup();
            keys
        };
        let sku_ids = write_tx!(self, |tx| {
            lock_catalog!(self, tx);
            // Stamped under the lock: see CATALOG_LOCK.
            let now = shopgraph_core::now_ms();
            let mut maker_ids: HashMap<(String, String), i64> = HashMap::new();
            for chunk in makers.chunks(BATCH_ROWS) {
                let sql = format!(
                    "INSERT INTO makers (kind, key, name) VALUES {} \
                     ON CONFLICT (kind, key) DO UPDATE SET name = excluded.name RETURNING id, kind, key",
                    values_placeholders(self.backend(), chunk.len(), 3)
                );
                let mut q = sqlx::query(&sql);
                for ((kind, key), name) in chunk {
                    q = q.bind(*kind).bind(*key).bind(*name);
                }
                for row in q.fetch_all(&mut *tx).await? {
                    maker_ids
                        .insert((row.try_get("kind")?, row.try_get("key")?), row.try_get("id")?);
                }
            }
            let mut category_ids: HashMap<String, i64> = HashMap::new();
            for chunk in category_keys.chunks(BATCH_ROWS) {
                let sql = format!(
                    "SELECT id, key FROM categories WHERE key IN ({})",
                    in_list(self.backend(), 1, chunk.len())
                );
                let mut q = sqlx::query(&sql);
                for key in chunk {
                    q = q.bind(*key);
                }
                for row in q.fetch_all(&mut *tx).await? {
                    category_ids.insert(row.try_get("key")?, row.try_get("id")?);
                }
            }
            if let Some(missing) = category_keys.iter().find(|k| !category_ids.contains_key(**k)) {
                return Err(StoreError::Invalid(format!("unknown category {missing:?}")));
            }
            let maker_id = |m: &Option<Maker>| {
                m.as_ref().map(|m| maker_ids[&(m.kind.as_str().to_owned(), m.key.clone())])
            };

            let mut sku_ids: HashMap<String, i64> = HashMap::with_capacity(unique.len());
            // 15 columns: half-size chunks keep a statement at 7,500 bound values.
            for chunk in unique.chunks(BATCH_ROWS / 2) {
                let sql = format!(
                    "INSERT INTO products (sku, title, description, maker_id, publisher_id, year, image_url, \
                     price_cents, currency, stock, attributes, synthetic_fields, source, created_at, updated_at) \
                     VALUES {} ON CONFLICT (sku) DO UPDATE SET title = excluded.title, \
                     description = excluded.description, maker_id = excluded.maker_id, \
                     publisher_id = excluded.publisher_id, year = excluded.year, image_url = excluded.image_url, \
                     price_cents = excluded.price_cents, currency = excluded.currency, stock = excluded.stock, \
                     attributes = excluded.attributes, synthetic_fields = excluded.synthetic_fields, \
                     source = excluded.source, updated_at = excluded.updated_at \
                     RETURNING id, sku",
                    values_placeholders(self.backend(), chunk.len(), 15)
                );
                let mut q = sqlx::query(&sql);
                for p in chunk {
                    q = q
                        .bind(p.sku.as_str())
                        .bind(p.title.as_str())
                        .bind(p.description.as_deref())
                        .bind(maker_id(&p.maker))
                        .bind(maker_id(&p.publisher))
                        .bind(p.year.map(i64::from))
                        .bind(p.image_url.as_deref())
                        .bind(p.price_cents)
                        .bind(p.currency.as_str())
                        .bind(p.stock)
                        .bind(p.attributes.as_deref())
                        .bind(p.synthetic_fields.join(","))
                        .bind(p.source.as_str())
                        .bind(now)
                        .bind(now);
                }
                for row in q.fetch_all(&mut *tx).await? {
                    sku_ids.insert(row.try_get("sku")?, row.try_get("id")?);
                }
            }

            // Categories are replaced, not merged: the upsert says what the product is now.
            let ids: Vec<i64> = unique.iter().map(|p| sku_ids[&p.sku]).collect();
            for chunk in ids.chunks(BATCH_ROWS) {
                let sql = format!(
                    "DELETE FROM product_categories WHERE product_id IN ({})",
                    in_list(self.backend(), 1, chunk.len())
                );
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *tx).await?;
            }
            let links: Vec<(i64, i64)> = unique
                .iter()
                .flat_map(|p| {
                    let product_id = sku_ids[&p.sku];
                    p.category_keys.iter().map(move |k| (product_id, k))
                })
                .map(|(product_id, k)| (product_id, category_ids[k.as_str()]))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            for chunk in links.chunks(BATCH_ROWS) {
                let sql = format!(
                    "INSERT INTO product_categories (product_id, category_id) VALUES {}",
                    values_placeholders(self.backend(), chunk.len(), 2)
                );
                let mut q = sqlx::query(&sql);
                for (product_id, category_id) in chunk {
                    q = q.bind(*product_id).bind(*category_id);
                }
                q.execute(&mut *tx).await?;
            }
            Ok::<_, StoreError>(sku_ids)
        })?;
        Ok(products.iter().map(|p| ProductId(sku_ids[&p.sku])).collect())
    }

    pub async fn product(&self, id: ProductId) -> Result<Option<Product>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM {PRODUCT_FROM} WHERE p.id = $1");
        let product = on_pool!(self, |pool| {
            match sqlx::query(&sql).bind(id.0).fetch_optional(pool).await? {
                Some(row) => Some(product_from_row!(&row)),
                None => None,
            }
        });
        let Some(mut product) = product else { return Ok(None) };
        product.categories = self.categories_of(product.id).await?;
        Ok(Some(product))
    }

    pub async fn product_by_sku(&self, sku: &str) -> Result<Option<Product>> {
        let id: Option<i64> = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT id FROM products WHERE sku = $1")
                .bind(sku)
                .fetch_optional(pool)
                .await?
        });
        match id {
            Some(id) => self.product(ProductId(id)).await,
            None => Ok(None),
        }
    }

    /// Ids of the given skus; unknown skus are left out of the map.
    pub async fn product_ids_by_sku(&self, skus: &[&str]) -> Result<HashMap<String, ProductId>> {
        let mut out = HashMap::with_capacity(skus.len());
        for chunk in skus.chunks(BATCH_ROWS) {
            let sql = format!(
                "SELECT id, sku FROM products WHERE sku IN ({})",
                in_list(self.backend(), 1, chunk.len())
            );
            on_pool!(self, |pool| {
                let mut q = sqlx::query(&sql);
                for sku in chunk {
                    q = q.bind(*sku);
                }
                for row in q.fetch_all(pool).await? {
                    out.insert(row.try_get("sku")?, ProductId(row.try_get("id")?));
                }
            });
        }
        Ok(out)
    }

    /// A page of products in id order, after `after` (0 for the first page), with their
    /// categories.
    pub async fn products_page(&self, after: ProductId, limit: u32) -> Result<Vec<Product>> {
        self.products_changed_since(0, after, limit).await
    }

    /// A page, in id order after `after`, of the products added or changed at or after
    /// `since` (milliseconds), with their categories.
    pub async fn products_changed_since(
        &self,
        since: i64,
        after: ProductId,
        limit: u32,
    ) -> Result<Vec<Product>> {
        let sql = format!(
            "SELECT {PRODUCT_COLUMNS} FROM {PRODUCT_FROM} WHERE p.id > $1 AND p.updated_at >= $2 \
             ORDER BY p.id LIMIT $3"
        );
        let mut products = on_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(after.0)
                .bind(since)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(product_from_row!(row));
            }
            out
        });
        let (Some(first), Some(last)) = (products.first(), products.last()) else {
            return Ok(products);
        };
        let (first, last) = (first.id.0, last.id.0);
        let links: Vec<(i64, String)> = on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT pc.product_id, c.key FROM product_categories pc \
                 JOIN categories c ON c.id = pc.category_id \
                 WHERE pc.product_id BETWEEN $1 AND $2 ORDER BY pc.product_id, c.key",
            )
            .bind(first)
            .bind(last)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((row.try_get("product_id")?, row.try_get("key")?));
            }
            out
        });
        let index: HashMap<i64, usize> =
            products.iter().enumerate().map(|(i, p)| (p.id.0, i)).collect();
        for (product_id, key) in links {
            if let Some(i) = index.get(&product_id) {
                products[*i].categories.push(key);
            }
        }
        Ok(products)
    }

    /// Sets the stock level of a product (what operations and stock-aware ranking read).
    pub async fn set_stock(&self, id: ProductId, stock: i64) -> Result<()> {
        let changed = on_pool!(self, |pool| {
            sqlx::query("UPDATE products SET stock = $1, updated_at = $2 WHERE id = $3")
                .bind(stock)
                .bind(shopgraph_core::now_ms())
                .bind(id.0)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if changed == 0 {
            return Err(StoreError::UnknownProduct(id));
        }
        Ok(())
    }

    async fn categories_of(&self, id: ProductId) -> Result<Vec<String>> {
        on_pool!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT c.key FROM product_categories pc JOIN categories c ON c.id = pc.category_id \
                 WHERE pc.product_id = $1 ORDER BY c.key",
            )
            .bind(id.0)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Every category, parents before children are not guaranteed.
    pub async fn categories(&self) -> Result<Vec<Category>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query("SELECT key, name, parent_key FROM categories ORDER BY key")
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(Category {
                    key: row.try_get("key")?,
                    name: row.try_get("name")?,
                    parent_key: row.try_get("parent_key")?,
                });
            }
            Ok(out)
        })
    }

    /// Makers of one kind, by key.
    pub async fn makers(&self, kind: MakerKind) -> Result<Vec<Maker>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query("SELECT key, name FROM makers WHERE kind = $1 ORDER BY key")
                .bind(kind.as_str())
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(Maker { kind, key: row.try_get("key")?, name: row.try_get("name")? });
            }
            Ok(out)
        })
    }

    /// Where the catalog and the profiles stand: derived state (the graph snapshot)
    /// records these marks and, next time, applies what changed since in place — new
    /// and changed products and users by `updated_at`, new interests by id — and
    /// rebuilds only when counts show something was deleted. Events have their own
    /// cursor.
    pub async fn sync_marks(&self) -> Result<SyncMarks> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM products) AS products, \
                        (SELECT COALESCE(MAX(updated_at), 0) FROM products) AS products_updated_at, \
                        (SELECT COUNT(*) FROM users) AS users, \
                        (SELECT COALESCE(MAX(updated_at), 0) FROM users) AS users_updated_at, \
                        (SELECT COUNT(*) FROM interests) AS interests, \
                        (SELECT COALESCE(MAX(id), 0) FROM interests) AS last_interest, \
                        (SELECT COUNT(*) FROM categories) AS categories, \
                        (SELECT COUNT(*) FROM kg_triples) AS triples, \
                        (SELECT COUNT(*) FROM product_entities) AS entity_links, \
                        (SELECT COUNT(*) FROM segment_members) AS segment_members, \
                        (SELECT COALESCE(MAX(id), 0) FROM segments) AS last_segment, \
                        (SELECT COALESCE(MAX(id), 0) FROM association_rules) AS last_rule",
            )
            .fetch_one(pool)
            .await?;
            Ok(SyncMarks {
                products: row.try_get("products")?,
                products_updated_at: row.try_get("products_updated_at")?,
                users: row.try_get("users")?,
                users_updated_at: row.try_get("users_updated_at")?,
                interests: row.try_get("interests")?,
                last_interest: row.try_get("last_interest")?,
                categories: row.try_get("categories")?,
                triples: row.try_get("triples")?,
                entity_links: row.try_get("entity_links")?,
                segment_members: row.try_get("segment_members")?,
                last_segment: row.try_get("last_segment")?,
                last_rule: row.try_get("last_rule")?,
            })
        })
    }

    pub async fn counts(&self) -> Result<CatalogCounts> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM products) AS products, \
                        (SELECT COUNT(*) FROM categories) AS categories, \
                        (SELECT COUNT(*) FROM makers WHERE kind = 'author') AS authors, \
                        (SELECT COUNT(*) FROM makers WHERE kind = 'brand') AS brands, \
                        (SELECT COUNT(*) FROM makers WHERE kind = 'publisher') AS publishers, \
                        (SELECT COUNT(*) FROM users) AS users, \
                        (SELECT COUNT(*) FROM events) AS events, \
                        (SELECT COUNT(*) FROM kg_triples) AS kg_triples",
            )
            .fetch_one(pool)
            .await?;
            Ok(CatalogCounts {
                products: row.try_get("products")?,
                categories: row.try_get("categories")?,
                authors: row.try_get("authors")?,
                brands: row.try_get("brands")?,
                publishers: row.try_get("publishers")?,
                users: row.try_get("users")?,
                events: row.try_get("events")?,
                kg_triples: row.try_get("kg_triples")?,
            })
        })
    }
}
