//! Shoppers, and erasing one with everything derived from them.

use std::collections::{BTreeMap, HashMap};

use shopgraph_core::UserId;
use shopgraph_core::user::{NewUser, User};
use sqlx::Row;

use crate::{
    BATCH_ROWS, Result, Store, StoreError, in_list, lock_catalog, on_pool, values_placeholders,
    write_tx,
};

/// What erasing a user removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeletedUser {
    pub events: i64,
    pub interests: i64,
    pub conversations: i64,
    pub messages: i64,
    pub segment_memberships: i64,
}

macro_rules! user_from_row {
    ($row:expr) => {{
        let row = $row;
        User {
            id: UserId(row.try_get("id")?),
            external_id: row.try_get("external_id")?,
            display_name: row.try_get("display_name")?,
            location: row.try_get("location")?,
            age: row.try_get::<Option<i64>, _>("age")?.map(|a| a as i32),
            attributes: row.try_get("attributes")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }
    }};
}

const USER_COLUMNS: &str =
    "id, external_id, display_name, location, age, attributes, created_at, updated_at";

impl Store {
    /// Inserts or updates users keyed by `external_id`, in one transaction. Returns the
    /// id of each input user, in input order.
    pub async fn upsert_users(&self, users: &[NewUser]) -> Result<Vec<UserId>> {
        for user in users {
            shopgraph_core::check_identifier("user id", &user.external_id)
                .map_err(StoreError::Invalid)?;
        }
        let mut by_id: BTreeMap<&str, &NewUser> = BTreeMap::new();
        for u in users {
            by_id.insert(u.external_id.as_str(), u);
        }
        let unique: Vec<&NewUser> = by_id.into_values().collect();
        let ids = write_tx!(self, |tx| {
            lock_catalog!(self, tx);
            // Stamped under the lock: see CATALOG_LOCK.
            let now = shopgraph_core::now_ms();
            let mut ids: HashMap<String, i64> = HashMap::with_capacity(unique.len());
            for chunk in unique.chunks(BATCH_ROWS) {
                let sql = format!(
                    "INSERT INTO users (external_id, display_name, location, age, attributes, created_at, updated_at) \
                     VALUES {} ON CONFLICT (external_id) DO UPDATE SET display_name = excluded.display_name, \
                     location = excluded.location, age = excluded.age, attributes = excluded.attributes, \
                     updated_at = excluded.updated_at RETURNING id, external_id",
                    values_placeholders(self.backend(), chunk.len(), 7)
                );
                let mut q = sqlx::query(&sql);
                for u in chunk {
                    q = q
                        .bind(u.external_id.as_str())
                        .bind(u.display_name.as_deref())
                        .bind(u.location.as_deref())
                        .bind(u.age.map(i64::from))
                        .bind(u.attributes.as_deref())
                        .bind(now)
                        .bind(now);
                }
                for row in q.fetch_all(&mut *tx).await? {
                    ids.insert(row.try_get("external_id")?, row.try_get("id")?);
                }
            }
            Ok::<_, StoreError>(ids)
        })?;
        Ok(users.iter().map(|u| UserId(ids[&u.external_id])).collect())
    }

    pub async fn user(&self, id: UserId) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        on_pool!(self, |pool| {
            Ok(match sqlx::query(&sql).bind(id.0).fetch_optional(pool).await? {
                Some(row) => Some(user_from_row!(&row)),
                None => None,
            })
        })
    }

    pub async fn user_by_external_id(&self, external_id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE external_id = $1");
        on_pool!(self, |pool| {
            Ok(match sqlx::query(&sql).bind(external_id).fetch_optional(pool).await? {
                Some(row) => Some(user_from_row!(&row)),
                None => None,
            })
        })
    }

    /// Ids of the given external ids; unknown ones are left out of the map.
    pub async fn user_ids_by_external_id(
        &self,
        external_ids: &[&str],
    ) -> Result<HashMap<String, UserId>> {
        let mut out = HashMap::with_capacity(external_ids.len());
        for chunk in external_ids.chunks(BATCH_ROWS) {
            let sql = format!(
                "SELECT id, external_id FROM users WHERE external_id IN ({})",
                in_list(self.backend(), 1, chunk.len())
            );
            on_pool!(self, |pool| {
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                for row in q.fetch_all(pool).await? {
                    out.insert(row.try_get("external_id")?, UserId(row.try_get("id")?));
                }
            });
        }
        Ok(out)
    }

    /// Erases a user and everything derived from them — events, interests,
    /// conversations and their messages, segment memberships — in one transaction.
    /// Derived in-memory state (graph, profiles) learns of it from the caller.
    pub async fn delete_user(&self, id: UserId) -> Result<DeletedUser> {
        write_tx!(self, |tx| {
            let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).bind(id.0);
            let exists =
                count("SELECT COUNT(*) FROM users WHERE id = $1").fetch_one(&mut *tx).await?;
            if exists == 0 {
                return Err(StoreError::UnknownUser(id));
            }
            let deleted = DeletedUser {
                events: count("SELECT COUNT(*) FROM events WHERE user_id = $1").fetch_one(&mut *tx).await?,
                interests: count("SELECT COUNT(*) FROM interests WHERE user_id = $1")
                    .fetch_one(&mut *tx)
                    .await?,
                conversations: count("SELECT COUNT(*) FROM conversations WHERE user_id = $1")
                    .fetch_one(&mut *tx)
                    .await?,
                messages: count(
                    "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                     WHERE c.user_id = $1",
                )
                .fetch_one(&mut *tx)
                .await?,
                segment_memberships: count("SELECT COUNT(*) FROM segment_members WHERE user_id = $1")
                    .fetch_one(&mut *tx)
                    .await?,
            };
            // The foreign keys cascade from users to everything above.
            sqlx::query("DELETE FROM users WHERE id = $1").bind(id.0).execute(&mut *tx).await?;
            Ok::<_, StoreError>(deleted)
        })
    }

    /// A page of users in id order, after `after` (0 for the first page).
    pub async fn users_page(&self, after: UserId, limit: u32) -> Result<Vec<User>> {
        self.users_changed_since(0, after, limit).await
    }

    /// A page, in id order after `after`, of the users added or changed at or after
    /// `since` (milliseconds).
    pub async fn users_changed_since(
        &self,
        since: i64,
        after: UserId,
        limit: u32,
    ) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id > $1 AND updated_at >= $2 ORDER BY id LIMIT $3"
        );
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(after.0)
                .bind(since)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(user_from_row!(row));
            }
            Ok(out)
        })
    }

    pub async fn count_users(&self) -> Result<i64> {
        on_pool!(self, |pool| Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(pool)
            .await?))
    }
}
