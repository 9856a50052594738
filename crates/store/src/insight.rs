//! What the platform learns and imports beyond events: segments (versioned clustering
//! runs), model metadata, and knowledge-graph triples linked to products.

use shopgraph_core::kg::Triple;
use shopgraph_core::segment::{NewSegment, ProductRule, Segment};
use shopgraph_core::{ProductId, SegmentId, UserId};
use sqlx::Row;

use crate::{BATCH_ROWS, Result, Store, StoreError, on_pool, values_placeholders, write_tx};

/// Metadata of one trained model version: what it is, how it was trained, how it scored.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRecord {
    pub name: String,
    pub version: i64,
    pub kind: String,
    /// JSON text.
    pub params: Option<String>,
    /// JSON text.
    pub metrics: Option<String>,
    /// Where the weights are, relative to the data directory.
    pub artifact: Option<String>,
    pub created_at: i64,
}

impl Store {
    /// Stores one clustering run as segment `version`, replacing a run stored under the
    /// same version. Returns the segments' ids in input order.
    pub async fn put_segments(
        &self,
        version: i64,
        segments: &[NewSegment],
    ) -> Result<Vec<SegmentId>> {
        let now = shopgraph_core::now_ms();
        write_tx!(self, |tx| {
            sqlx::query("DELETE FROM segments WHERE version = $1")
                .bind(version)
                .execute(&mut *tx)
                .await?;
            let mut ids = Vec::with_capacity(segments.len());
            for segment in segments {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO segments (version, key, description, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(version)
                .bind(segment.key.as_str())
                .bind(segment.description.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                for chunk in segment.members.chunks(BATCH_ROWS) {
                    let sql = format!(
                        "INSERT INTO segment_members (segment_id, user_id, score) VALUES {}",
                        values_placeholders(self.backend(), chunk.len(), 3)
                    );
                    let mut q = sqlx::query(&sql);
                    for (user, score) in chunk {
                        q = q.bind(id).bind(user.0).bind(*score);
                    }
                    q.execute(&mut *tx).await.map_err(|e| match e {
                        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                            StoreError::Invalid(format!(
                                "segment {}: a member is not a user",
                                segment.key
                            ))
                        }
                        e => StoreError::from(e),
                    })?;
                }
                ids.push(SegmentId(id));
            }
            Ok::<_, StoreError>(ids)
        })
    }

    /// The newest segment version stored, if any.
    pub async fn latest_segment_version(&self) -> Result<Option<i64>> {
        on_pool!(self, |pool| Ok(sqlx::query_scalar("SELECT MAX(version) FROM segments")
            .fetch_one(pool)
            .await?))
    }

    /// The segments of one version, with their sizes.
    pub async fn segments(&self, version: i64) -> Result<Vec<Segment>> {
        self.segments_where("s.version = $1", version).await
    }

    /// The segments a user belongs to, across versions.
    pub async fn segments_of_user(&self, user: UserId) -> Result<Vec<Segment>> {
        self.segments_where(
            "s.id IN (SELECT segment_id FROM segment_members WHERE user_id = $1)",
            user.0,
        )
        .await
    }

    async fn segments_where(&self, condition: &str, value: i64) -> Result<Vec<Segment>> {
        let sql = format!(
            "SELECT s.id, s.version, s.key, s.description, \
             (SELECT COUNT(*) FROM segment_members sm WHERE sm.segment_id = s.id) AS n_members \
             FROM segments s WHERE {condition} ORDER BY s.version, s.key"
        );
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql).bind(value).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(Segment {
                    id: SegmentId(row.try_get("id")?),
                    version: row.try_get("version")?,
                    key: row.try_get("key")?,
                    description: row.try_get("description")?,
                    n_members: row.try_get("n_members")?,
                });
            }
            Ok(out)
        })
    }

    /// The members of a segment and their scores, in user order.
    pub async fn segment_members(&self, segment: SegmentId) -> Result<Vec<(UserId, f64)>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT user_id, score FROM segment_members WHERE segment_id = $1 ORDER BY user_id",
            )
            .bind(segment.0)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((UserId(row.try_get("user_id")?), row.try_get("score")?));
            }
            Ok(out)
        })
    }

    /// Stores one mining run as rule `version`, replacing a run stored under the same
    /// version. Every product must exist; a rule needs both sides, disjoint, and its
    /// figures in range.
    pub async fn put_rules(&self, version: i64, rules: &[ProductRule]) -> Result<()> {
        for (i, r) in rules.iter().enumerate() {
            let mut all: Vec<ProductId> =
                r.antecedent.iter().chain(&r.consequent).copied().collect();
            all.sort_unstable();
            all.dedup();
            let disjoint = all.len() == r.antecedent.len() + r.consequent.len();
            let figures = [r.support, r.confidence].iter().all(|x| (0.0..=1.0).contains(x))
                && r.lift.is_finite()
                && r.lift >= 0.0;
            if r.antecedent.is_empty() || r.consequent.is_empty() || !disjoint || !figures {
                return Err(StoreError::Invalid(format!(
                    "rule {i}: it needs two non-empty sides with no product twice, support and confidence in [0, 1] and a finite lift ≥ 0"
                )));
            }
        }
        let now = shopgraph_core::now_ms();
        write_tx!(self, |tx| {
            sqlx::query("DELETE FROM association_rules WHERE version = $1")
                .bind(version)
                .execute(&mut *tx)
                .await?;
            for (i, r) in rules.iter().enumerate() {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO association_rules (version, support, confidence, lift, n_items, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(version)
                .bind(r.support)
                .bind(r.confidence)
                .bind(r.lift)
                .bind((r.antecedent.len() + r.consequent.len()) as i64)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let sides = r
                    .antecedent
                    .iter()
                    .map(|p| (p, 0i64))
                    .chain(r.consequent.iter().map(|p| (p, 1)));
                let sides: Vec<_> = sides.collect();
                let sql = format!(
                    "INSERT INTO association_rule_items (rule_id, product_id, side) VALUES {}",
                    values_placeholders(self.backend(), sides.len(), 3)
                );
                let mut q = sqlx::query(&sql);
                for (product, side) in sides {
                    q = q.bind(id).bind(product.0).bind(side);
                }
                q.execute(&mut *tx).await.map_err(|e| match e {
                    sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                        StoreError::Invalid(format!("rule {i}: a product is not in the catalog"))
                    }
                    e => StoreError::from(e),
                })?;
            }
            Ok::<_, StoreError>(())
        })
    }

    /// The newest rule version stored, if any.
    pub async fn latest_rules_version(&self) -> Result<Option<i64>> {
        on_pool!(self, |pool| Ok(sqlx::query_scalar("SELECT MAX(version) FROM association_rules")
            .fetch_one(pool)
            .await?))
    }

    /// The rules of one version, strongest (by lift) first. Rules that lost a product
    /// to a deletion are left out.
    pub async fn rules(&self, version: i64) -> Result<Vec<ProductRule>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT r.id, r.support, r.confidence, r.lift, r.n_items, i.product_id, i.side \
                 FROM association_rules r JOIN association_rule_items i ON i.rule_id = r.id \
                 WHERE r.version = $1 ORDER BY r.lift DESC, r.confidence DESC, r.id, i.side, i.product_id",
            )
            .bind(version)
            .fetch_all(pool)
            .await?;
            let mut out: Vec<ProductRule> = Vec::new();
            let mut sizes: Vec<i64> = Vec::new();
            let mut last = None;
            for row in &rows {
                let id: i64 = row.try_get("id")?;
                if last != Some(id) {
                    last = Some(id);
                    sizes.push(row.try_get("n_items")?);
                    out.push(ProductRule {
                        antecedent: Vec::new(),
                        consequent: Vec::new(),
                        support: row.try_get("support")?,
                        confidence: row.try_get("confidence")?,
                        lift: row.try_get("lift")?,
                    });
                }
                let rule = out.last_mut().expect("pushed above");
                let product = ProductId(row.try_get("product_id")?);
                if row.try_get::<i64, _>("side")? == 0 {
                    rule.antecedent.push(product);
                } else {
                    rule.consequent.push(product);
                }
            }
            // A rule that lost a product to a deletion no longer says what it said.
            let whole = out
                .into_iter()
                .zip(sizes)
                .filter(|(r, n)| (r.antecedent.len() + r.consequent.len()) as i64 == *n)
                .map(|(r, _)| r)
                .collect();
            Ok(whole)
        })
    }

    /// Records a trained model version (replacing one with the same name and version).
    pub async fn put_model(&self, model: &ModelRecord) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO models (name, version, kind, params, metrics, artifact, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO UPDATE SET \
                 kind = excluded.kind, params = excluded.params, metrics = excluded.metrics, \
                 artifact = excluded.artifact, created_at = excluded.created_at",
            )
            .bind(model.name.as_str())
            .bind(model.version)
            .bind(model.kind.as_str())
            .bind(model.params.as_deref())
            .bind(model.metrics.as_deref())
            .bind(model.artifact.as_deref())
            .bind(model.created_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The newest version of the model called `name`.
    pub async fn latest_model(&self, name: &str) -> Result<Option<ModelRecord>> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT name, version, kind, params, metrics, artifact, created_at FROM models \
                 WHERE name = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                Some(row) => Some(ModelRecord {
                    name: row.try_get("name")?,
                    version: row.try_get("version")?,
                    kind: row.try_get("kind")?,
                    params: row.try_get("params")?,
                    metrics: row.try_get("metrics")?,
                    artifact: row.try_get("artifact")?,
                    created_at: row.try_get("created_at")?,
                }),
                None => None,
            })
        })
    }

    /// Adds knowledge-graph triples; ones already stored are skipped. Returns how many
    /// were new.
    pub async fn add_triples(&self, triples: &[Triple], source: &str) -> Result<u64> {
        write_tx!(self, |tx| {
            let mut added = 0;
            for chunk in triples.chunks(BATCH_ROWS) {
                let sql = format!(
                    "INSERT INTO kg_triples (head, relation, tail, source) VALUES {} \
                     ON CONFLICT (head, relation, tail) DO NOTHING",
                    values_placeholders(self.backend(), chunk.len(), 4)
                );
                let mut q = sqlx::query(&sql);
                for t in chunk {
                    q = q
                        .bind(t.head.as_str())
                        .bind(t.relation.as_str())
                        .bind(t.tail.as_str())
                        .bind(source);
                }
                added += q.execute(&mut *tx).await?.rows_affected();
            }
            Ok::<_, StoreError>(added)
        })
    }

    /// A page of triples in key order, after `after` (None for the first page).
    pub async fn triples_page(&self, after: Option<&Triple>, limit: u32) -> Result<Vec<Triple>> {
        let (head, relation, tail) = match after {
            Some(t) => (t.head.as_str(), t.relation.as_str(), t.tail.as_str()),
            None => ("", "", ""),
        };
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT head, relation, tail FROM kg_triples \
                 WHERE head > $1 OR (head = $1 AND (relation > $2 OR (relation = $2 AND tail > $3))) \
                 ORDER BY head, relation, tail LIMIT $4",
            )
            .bind(head)
            .bind(relation)
            .bind(tail)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(Triple {
                    head: row.try_get("head")?,
                    relation: row.try_get("relation")?,
                    tail: row.try_get("tail")?,
                });
            }
            Ok(out)
        })
    }

    /// Links products to knowledge-graph entities (MovieLens items to Freebase ids).
    pub async fn link_product_entities(&self, links: &[(ProductId, String)]) -> Result<()> {
        write_tx!(self, |tx| {
            for chunk in links.chunks(BATCH_ROWS) {
                let sql = format!(
                    "INSERT INTO product_entities (product_id, entity) VALUES {} ON CONFLICT DO NOTHING",
                    values_placeholders(self.backend(), chunk.len(), 2)
                );
                let mut q = sqlx::query(&sql);
                for (product, entity) in chunk {
                    q = q.bind(product.0).bind(entity.as_str());
                }
                q.execute(&mut *tx).await?;
            }
            Ok::<_, StoreError>(())
        })
    }

    /// Every product-entity link, in product order.
    pub async fn product_entity_links(&self) -> Result<Vec<(ProductId, String)>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT product_id, entity FROM product_entities ORDER BY product_id, entity",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((ProductId(row.try_get("product_id")?), row.try_get("entity")?));
            }
            Ok(out)
        })
    }

    /// The knowledge-graph entities a product is linked to.
    pub async fn product_entities(&self, product: ProductId) -> Result<Vec<String>> {
        on_pool!(self, |pool| Ok(sqlx::query_scalar(
            "SELECT entity FROM product_entities WHERE product_id = $1 ORDER BY entity"
        )
        .bind(product.0)
        .fetch_all(pool)
        .await?))
    }
}
