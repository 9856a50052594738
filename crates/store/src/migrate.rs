//! Versioned schema migrations, applied in order on start.
//!
//! Each migration has a SQLite and a PostgreSQL text that build the same schema. The
//! version applied is recorded in `schema_migrations`; a newer binary applies what is
//! missing, in place, and a binary older than the database refuses to touch it.

use crate::{Pool, Result, Store, StoreError, on_pool};

/// One schema step, for both backends.
#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

macro_rules! migration {
    ($version:expr, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../migrations/sqlite/", $name, ".sql")),
            postgres: include_str!(concat!("../migrations/postgres/", $name, ".sql")),
        }
    };
}

pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_catalog_users_events"),
    migration!(2, "0002_profiles_conversations_insight"),
    migration!(3, "0003_telegram_dismiss"),
    migration!(4, "0004_association_rules"),
    migration!(5, "0005_job_runs"),
];

pub const LATEST_VERSION: i64 = 5;

/// Serialises concurrent migrators (replicas starting together) on PostgreSQL.
pub(crate) const MIGRATION_LOCK: i64 = 0x5347_4d49_4752; // "SGMIGR"

impl Store {
    /// Applies every migration this binary knows and the database lacks.
    pub async fn migrate(&self) -> Result<i64> {
        self.migrate_to(LATEST_VERSION).await
    }

    /// Applies migrations up to `target` (tests use it to build an older database).
    pub async fn migrate_to(&self, target: i64) -> Result<i64> {
        on_pool!(self, |pool| {
            for migration in MIGRATIONS.iter().filter(|m| m.version <= target) {
                let mut tx = match &self.pool {
                    Pool::Sqlite(_) => pool.begin_with("BEGIN IMMEDIATE").await?,
                    Pool::Postgres(_) => pool.begin().await?,
                };
                if self.backend() == crate::Backend::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(MIGRATION_LOCK)
                        .execute(&mut *tx)
                        .await?;
                }
                // Created under the lock, so replicas starting together do not collide.
                sqlx::raw_sql(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                        version BIGINT PRIMARY KEY,
                        name TEXT NOT NULL,
                        applied_at BIGINT NOT NULL
                    )",
                )
                .execute(&mut *tx)
                .await?;
                // Read the version under the lock: another process may have just migrated.
                let current: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
                        .fetch_one(&mut *tx)
                        .await?;
                let current = current.unwrap_or(0);
                if current > LATEST_VERSION {
                    return Err(StoreError::SchemaTooNew { found: current, known: LATEST_VERSION });
                }
                if migration.version <= current {
                    continue;
                }
                let text = match self.pool {
                    Pool::Sqlite(_) => migration.sqlite,
                    Pool::Postgres(_) => migration.postgres,
                };
                sqlx::raw_sql(text).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                )
                .bind(migration.version)
                .bind(migration.name)
                .bind(shopgraph_core::now_ms())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                tracing::info!(
                    version = migration.version,
                    name = migration.name,
                    "applied migration"
                );
            }
            self.schema_version().await
        })
    }

    /// The schema version the database is at (0 for an empty database).
    pub async fn schema_version(&self) -> Result<i64> {
        on_pool!(self, |pool| {
            let version: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
                    .fetch_one(pool)
                    .await?;
            let version = version.unwrap_or(0);
            if version > LATEST_VERSION {
                return Err(StoreError::SchemaTooNew { found: version, known: LATEST_VERSION });
            }
            Ok(version)
        })
    }
}

impl Store {
    /// Records a migration this binary does not know, as a newer shopgraph would have.
    /// For tests of the downgrade guard only.
    #[doc(hidden)]
    pub async fn record_foreign_migration_for_tests(&self, version: i64) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'from the future', 0)")
                .bind(version)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
