//! Interests on profiles, each with its source, so an agent can see why and remove it.

use shopgraph_core::interest::{Interest, InterestSource, NewInterest, Polarity};
use shopgraph_core::{InterestId, UserId};
use sqlx::Row;

use crate::{Result, Store, StoreError, lock_catalog, on_pool, write_tx};

const INTEREST_QUERY: &str = "SELECT id, user_id, subject, weight, polarity, source_kind, source_ref, created_at FROM interests";

/// Longest interest subject, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 200;

impl Store {
    /// Records an interest. The user must exist.
    pub async fn add_interest(&self, interest: &NewInterest) -> Result<InterestId> {
        if interest.subject.is_empty() || interest.subject.len() > MAX_SUBJECT_BYTES {
            return Err(StoreError::Invalid(format!(
                "interest subject must be 1 to {MAX_SUBJECT_BYTES} bytes"
            )));
        }
        if !interest.weight.is_finite() || interest.weight < 0.0 {
            return Err(StoreError::Invalid(format!(
                "interest weight {} must be a finite, non-negative number",
                interest.weight
            )));
        }
        if self.user(interest.user).await?.is_none() {
            return Err(StoreError::UnknownUser(interest.user));
        }
        if interest.subject.contains('\0') {
            return Err(StoreError::Invalid("interest subject contains a NUL character".into()));
        }
        // Under the catalog lock on PostgreSQL, so ids commit in order and a reader that
        // saw interest N has seen every interest before it (see CATALOG_LOCK).
        write_tx!(self, |tx| {
            lock_catalog!(self, tx);
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO interests (user_id, subject, weight, polarity, source_kind, source_ref, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(interest.user.0)
            .bind(interest.subject.as_str())
            .bind(interest.weight)
            .bind(interest.polarity.as_i64())
            .bind(interest.source.kind())
            .bind(interest.source.reference())
            .bind(interest.at)
            .fetch_one(&mut *tx)
            .await?;
            Ok::<_, StoreError>(InterestId(id))
        })
    }

    /// A user's interests, strongest first.
    pub async fn interests(&self, user: UserId) -> Result<Vec<Interest>> {
        self.interests_where(
            &format!("{INTEREST_QUERY} WHERE user_id = $1 ORDER BY weight DESC, id"),
            user.0,
        )
        .await
    }

    /// A page of everyone's interests in id order, after `after` (0 for the first page):
    /// how the knowledge graph loads them.
    pub async fn interests_page(&self, after: InterestId, limit: u32) -> Result<Vec<Interest>> {
        let sql = format!("{INTEREST_QUERY} WHERE id > $1 ORDER BY id LIMIT {limit}");
        self.interests_where(&sql, after.0).await
    }

    async fn interests_where(&self, sql: &str, value: i64) -> Result<Vec<Interest>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(sql).bind(value).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let polarity: i64 = row.try_get("polarity")?;
                let kind: String = row.try_get("source_kind")?;
                let reference: Option<String> = row.try_get("source_ref")?;
                out.push(Interest {
                    id: InterestId(row.try_get("id")?),
                    user: UserId(row.try_get("user_id")?),
                    subject: row.try_get("subject")?,
                    weight: row.try_get("weight")?,
                    polarity: Polarity::from_i64(polarity).ok_or_else(|| {
                        StoreError::Corrupt(format!("interest polarity {polarity}"))
                    })?,
                    source: InterestSource::parse(&kind, reference.as_deref())
                        .ok_or_else(|| StoreError::Corrupt(format!("interest source {kind}")))?,
                    at: row.try_get("created_at")?,
                });
            }
            Ok(out)
        })
    }

    /// Removes a wrong interest.
    pub async fn remove_interest(&self, id: InterestId) -> Result<()> {
        let removed = on_pool!(self, |pool| {
            sqlx::query("DELETE FROM interests WHERE id = $1")
                .bind(id.0)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if removed == 0 {
            return Err(StoreError::UnknownInterest(id));
        }
        Ok(())
    }
}
