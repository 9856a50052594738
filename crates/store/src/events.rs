//! Behaviour events: idempotent appends, reads by user, product and time window, and
//! the sequence cursor that derived state (graph, indexes, profiles) follows.
//!
//! Ordering guarantee: an event with a larger `seq` never becomes visible before one
//! with a smaller `seq`. SQLite gets this for free (one writer at a time). PostgreSQL
//! hands out identities before commit, so two concurrent appends could commit out of
//! order and a consumer reading `seq > cursor` would skip the slower one forever; every
//! append therefore takes one transaction-scoped advisory lock, which serialises
//! appends (batched appends keep that cheap) and makes commit order equal seq order.

use std::collections::{BTreeSet, HashMap, HashSet};

use shopgraph_core::event::{Event, EventKind, NewEvent};
use shopgraph_core::{ProductId, Timestamp, UserId};
use sqlx::Row;

use crate::{
    BATCH_ROWS, Result, Store, StoreError, in_list, on_pool, values_placeholders, write_tx,
};

/// Serialises event appends on PostgreSQL (see the module docs).
const APPEND_LOCK: i64 = 0x5347_4556_4e54; // "SGEVNT"

/// The outcome of appending one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    /// True when an event with the same idempotency key was already stored; nothing
    /// was written and `seq` is the stored event's.
    pub duplicate: bool,
}

/// The outcome of appending a batch: all of it was stored (or already was), or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchAppended {
    pub inserted: usize,
    pub duplicates: usize,
    /// The largest sequence number written by this batch.
    pub last_seq: Option<i64>,
}

/// Which events to read. Results come oldest first, by occurrence time then sequence.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub user: Option<UserId>,
    pub product: Option<ProductId>,
    pub kind: Option<EventKind>,
    /// Inclusive lower bound on `occurred_at`.
    pub from: Option<Timestamp>,
    /// Exclusive upper bound on `occurred_at`.
    pub to: Option<Timestamp>,
    pub limit: Option<u32>,
}

macro_rules! event_from_row {
    ($row:expr) => {{
        let row = $row;
        let kind: String = row.try_get("kind")?;
        Event {
            seq: row.try_get("seq")?,
            idempotency_key: row.try_get("idempotency_key")?,
            user: UserId(row.try_get("user_id")?),
            product: row.try_get::<Option<i64>, _>("product_id")?.map(ProductId),
            kind: EventKind::parse(&kind)
                .map_err(|e| StoreError::Corrupt(format!("event row: {e}")))?,
            value: row.try_get("value")?,
            payload: row.try_get("payload")?,
            occurred_at: row.try_get("occurred_at")?,
            recorded_at: row.try_get("recorded_at")?,
        }
    }};
}

const EVENT_COLUMNS: &str =
    "seq, idempotency_key, user_id, product_id, kind, value, payload, occurred_at, recorded_at";

enum Bind {
    I64(i64),
    Text(&'static str),
}

impl Store {
    /// Appends one event; a retry with the same idempotency key is stored once.
    pub async fn append_event(&self, event: &NewEvent) -> Result<Appended> {
        let batch = self.append_events(std::slice::from_ref(event)).await?;
        if let Some(seq) = batch.last_seq {
            return Ok(Appended { seq, duplicate: false });
        }
        let seq = self.event_seq_by_key(&event.idempotency_key).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "event {:?} was a duplicate but is not stored",
                event.idempotency_key
            ))
        })?;
        Ok(Appended { seq, duplicate: true })
    }

    /// Appends a batch in one transaction: every event is checked first (shape, then
    /// that its user and product exist), and one bad event refuses the whole batch.
    pub async fn append_events(&self, events: &[NewEvent]) -> Result<BatchAppended> {
        for (index, event) in events.iter().enumerate() {
            event.validate().map_err(|error| StoreError::InvalidEvent { index, error })?;
        }
        if events.is_empty() {
            return Ok(BatchAppended::default());
        }
        let users: BTreeSet<i64> = events.iter().map(|e| e.user.0).collect();
        let products: BTreeSet<i64> =
            events.iter().filter_map(|e| e.product.map(|p| p.0)).collect();
        let users: Vec<i64> = users.into_iter().collect();
        let products: Vec<i64> = products.into_iter().collect();
        let recorded_at = shopgraph_core::now_ms();
        write_tx!(self, |tx| {
            if self.backend() == crate::Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(APPEND_LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            for chunk in users.chunks(BATCH_ROWS) {
                let sql = format!(
                    "SELECT id FROM users WHERE id IN ({})",
                    in_list(self.backend(), 1, chunk.len())
                );
                let mut q = sqlx::query_scalar::<_, i64>(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                let found: HashSet<i64> = q.fetch_all(&mut *tx).await?.into_iter().collect();
                if let Some(missing) = chunk.iter().find(|id| !found.contains(id)) {
                    return Err(StoreError::UnknownUser(UserId(*missing)));
                }
            }
            for chunk in products.chunks(BATCH_ROWS) {
                let sql = format!(
                    "SELECT id FROM products WHERE id IN ({})",
                    in_list(self.backend(), 1, chunk.len())
                );
                let mut q = sqlx::query_scalar::<_, i64>(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                let found: HashSet<i64> = q.fetch_all(&mut *tx).await?.into_iter().collect();
                if let Some(missing) = chunk.iter().find(|id| !found.contains(id)) {
                    return Err(StoreError::UnknownProduct(ProductId(*missing)));
                }
            }
            let mut out = BatchAppended::default();
            for chunk in events.chunks(BATCH_ROWS) {
                // No RETURNING: a row back per event cost more than the insert itself.
                // The count comes from the statement, the last seq from one read below.
                let sql = format!(
                    "INSERT INTO events (idempotency_key, user_id, product_id, kind, value, payload, occurred_at, recorded_at) \
                     VALUES {} ON CONFLICT (idempotency_key) DO NOTHING",
                    values_placeholders(self.backend(), chunk.len(), 8)
                );
                let mut q = sqlx::query(&sql);
                for e in chunk {
                    q = q
                        .bind(e.idempotency_key.as_str())
                        .bind(e.user.0)
                        .bind(e.product.map(|p| p.0))
                        .bind(e.kind.as_str())
                        .bind(e.value)
                        .bind(e.payload.as_deref())
                        .bind(e.occurred_at)
                        .bind(recorded_at);
                }
                let inserted = q.execute(&mut *tx).await?.rows_affected() as usize;
                out.inserted += inserted;
                out.duplicates += chunk.len() - inserted;
            }
            if out.inserted > 0 {
                // Appends are serialised (SQLite's write lock, PostgreSQL's advisory lock),
                // so the largest seq in the table is this batch's last.
                out.last_seq =
                    sqlx::query_scalar("SELECT MAX(seq) FROM events").fetch_one(&mut *tx).await?;
            }
            Ok::<_, StoreError>(out)
        })
    }

    /// The sequence number of the event stored under `key`, if any.
    pub async fn event_seq_by_key(&self, key: &str) -> Result<Option<i64>> {
        on_pool!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT seq FROM events WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Events matching `filter`, oldest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        let mut add = |column: &str, op: &str, value: Bind| {
            binds.push(value);
            conditions.push(format!("{column} {op} ${}", binds.len()));
        };
        if let Some(user) = filter.user {
            add("user_id", "=", Bind::I64(user.0));
        }
        if let Some(product) = filter.product {
            add("product_id", "=", Bind::I64(product.0));
        }
        if let Some(kind) = filter.kind {
            add("kind", "=", Bind::Text(kind.as_str()));
        }
        if let Some(from) = filter.from {
            add("occurred_at", ">=", Bind::I64(from));
        }
        if let Some(to) = filter.to {
            add("occurred_at", "<", Bind::I64(to));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let limit = filter.limit.map(|n| format!("LIMIT {n}")).unwrap_or_default();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events {where_clause} ORDER BY occurred_at, seq {limit}"
        );
        on_pool!(self, |pool| {
            let mut q = sqlx::query(&sql);
            for bind in &binds {
                q = match bind {
                    Bind::I64(v) => q.bind(*v),
                    Bind::Text(v) => q.bind(*v),
                };
            }
            let rows = q.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(event_from_row!(row));
            }
            Ok(out)
        })
    }

    /// Up to `limit` events with `seq > after`, in sequence order: how a consumer
    /// catches up from its cursor.
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2");
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql).bind(after).bind(i64::from(limit)).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(event_from_row!(row));
            }
            Ok(out)
        })
    }

    /// The cursor `consumer` saved last (0 when it never saved one).
    pub async fn cursor(&self, consumer: &str) -> Result<i64> {
        on_pool!(self, |pool| {
            let seq: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM consumer_cursors WHERE consumer = $1")
                    .bind(consumer)
                    .fetch_optional(pool)
                    .await?;
            Ok(seq.unwrap_or(0))
        })
    }

    /// Records that `consumer` has applied every event up to `seq`.
    pub async fn save_cursor(&self, consumer: &str, seq: i64) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO consumer_cursors (consumer, seq, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
            )
            .bind(consumer)
            .bind(seq)
            .bind(shopgraph_core::now_ms())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The highest sequence number appended so far (0 for none).
    pub async fn last_event_seq(&self) -> Result<i64> {
        on_pool!(self, |pool| Ok(sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(pool)
            .await?))
    }

    /// Products named by events with `seq > after`, each once: what a consumer that
    /// keeps per-product counts must recount.
    pub async fn products_with_events_after(&self, after: i64) -> Result<Vec<ProductId>> {
        on_pool!(self, |pool| {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT DISTINCT product_id FROM events WHERE seq > $1 AND product_id IS NOT NULL \
                 ORDER BY product_id",
            )
            .bind(after)
            .fetch_all(pool)
            .await?;
            Ok(ids.into_iter().map(ProductId).collect())
        })
    }

    /// How many times shoppers interacted with each product (viewed, clicked, carted,
    /// bought, rated or reviewed it): the popularity that search sorts and breaks ties
    /// by. For the given products, or for every product with any interaction.
    pub async fn product_popularity(
        &self,
        products: Option<&[ProductId]>,
    ) -> Result<HashMap<ProductId, i64>> {
        const INTERACTIONS: &str =
            "kind IN ('view', 'click', 'add_to_cart', 'purchase', 'rating', 'review')";
        let mut out = HashMap::new();
        let Some(products) = products else {
            on_pool!(self, |pool| {
                let rows = sqlx::query(&format!(
                    "SELECT product_id, COUNT(*) AS n FROM events \
                     WHERE product_id IS NOT NULL AND {INTERACTIONS} GROUP BY product_id"
                ))
                .fetch_all(pool)
                .await?;
                for row in rows {
                    out.insert(ProductId(row.try_get("product_id")?), row.try_get("n")?);
                }
            });
            return Ok(out);
        };
        for chunk in products.chunks(BATCH_ROWS) {
            let sql = format!(
                "SELECT product_id, COUNT(*) AS n FROM events \
                 WHERE product_id IN ({}) AND {INTERACTIONS} GROUP BY product_id",
                in_list(self.backend(), 1, chunk.len())
            );
            on_pool!(self, |pool| {
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(id.0);
                }
                for row in q.fetch_all(pool).await? {
                    out.insert(ProductId(row.try_get("product_id")?), row.try_get("n")?);
                }
            });
        }
        Ok(out)
    }

    pub async fn count_events(&self) -> Result<i64> {
        on_pool!(self, |pool| Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(pool)
            .await?))
    }
}
