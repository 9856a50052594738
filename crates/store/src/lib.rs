//! The source of truth: users, products, behaviour events, interests, conversations,
//! segments, model metadata and imported knowledge-graph triples.
//!
//! One concrete [`Store`] with two backends: SQLite (a file in WAL mode, the embedded
//! default) and PostgreSQL (shared by many replicas when a shop outgrows one machine).
//! Every query is written once, with `$N` placeholders that both backends accept, and
//! expanded for each backend by the `on_pool!`/`write_tx!` macros below.
//!
//! This is the only crate that knows SQL. It knows nothing of HTTP, models or the graph.

mod catalog;
mod conversations;
mod error;
mod events;
mod insight;
mod jobs;
mod migrate;
mod profiles;
mod telegram;
mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use crate::catalog::{CatalogCounts, SyncMarks};
pub use crate::conversations::MAX_MESSAGE_BYTES;
pub use crate::error::{Result, StoreError};
pub use crate::events::{Appended, BatchAppended, EventFilter};
pub use crate::insight::ModelRecord;
pub use crate::jobs::JobRun;
pub use crate::migrate::{LATEST_VERSION, MIGRATIONS, Migration};
pub use crate::profiles::MAX_SUBJECT_BYTES;
pub use crate::telegram::{MAX_STATE_BYTES, PendingReply, TelegramChat};
pub use crate::users::DeletedUser;

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to open a store. Build it from a URL with [`StoreOptions::new`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `sqlite:PATH` (created if missing), `sqlite::memory:`, or `postgres://…`.
    pub url: String,
    /// PostgreSQL only: keep every table in this schema (created if missing). Lets
    /// several shops, or several test runs, share one database without trampling.
    pub pg_schema: Option<String>,
    pub max_connections: u32,
    /// How long to wait for a connection before reporting the database unavailable.
    pub acquire_timeout: Duration,
}

impl StoreOptions {
    pub fn new(url: &str) -> StoreOptions {
        StoreOptions {
            url: url.to_owned(),
            pg_schema: None,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The store. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` once per backend with `$pool` bound to that backend's pool. The body is
/// written once and type-checked for both.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside one write transaction and commits it; an early return (`?`)
/// rolls back, so a failed call leaves nothing half-written.
///
/// SQLite transactions begin IMMEDIATE: the write lock is taken up front, so two writers
/// queue on the busy timeout instead of one failing when it upgrades a read lock.
macro_rules! write_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::Pool::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

pub(crate) use {on_pool, write_tx};

/// Serialises catalog and profile writes on PostgreSQL, as events are (see events.rs):
/// a writer stamps `updated_at` (and gets its ids) only once it holds the lock, so
/// commits happen in stamp order and a reader that saw stamp T has seen every row
/// stamped before T. SQLite's BEGIN IMMEDIATE already gives this.
pub(crate) const CATALOG_LOCK: i64 = 0x5347_4341_5447; // "SGCATG"

macro_rules! lock_catalog {
    ($store:expr, $tx:ident) => {
        if $store.backend() == $crate::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind($crate::CATALOG_LOCK)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

pub(crate) use lock_catalog;

impl Store {
    /// Opens the database and brings its schema up to date.
    pub async fn open(options: &StoreOptions) -> Result<Store> {
        let store = Store::open_unmigrated(options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the database without touching its schema (`shopgraph migrate` and the
    /// upgrade tests start here).
    pub async fn open_unmigrated(options: &StoreOptions) -> Result<Store> {
        let url = options.url.as_str();
        let pool = if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: an acknowledged write is on disk, not only in the OS cache.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                // 32 MiB of page cache per connection (SQLite's default is 2 MiB): the
                // event indexes stay in memory during bulk appends.
                .pragma("cache_size", "-32768")
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                // A COMMIT that failed (a full disk) leaves sqlx a rollback to do, queued
                // behind the connection's next command; if that rollback fails too (SQLite
                // may already have rolled back), sqlx counts the transaction as open for
                // ever and every later BEGIN on the connection fails. So before a
                // connection goes back to the pool: flush its queue, and drop it if a
                // transaction still counts as open.
                .after_release(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Connection;
                        conn.ping().await?;
                        Ok(!conn.is_in_transaction())
                    })
                })
                .connect_with(connect)
                .await
                .map_err(StoreError::from_connect)?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut connect = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?;
            if let Some(schema) = &options.pg_schema {
                if !is_plain_identifier(schema) {
                    return Err(StoreError::BadUrl(format!(
                        "schema name {schema:?}: use lowercase letters, digits and _"
                    )));
                }
                create_pg_schema(&connect, schema).await?;
                connect = connect.options([("search_path", schema.as_str())]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await
                .map_err(StoreError::from_connect)?;
            Pool::Postgres(pool)
        } else {
            return Err(StoreError::BadUrl(format!(
                "{url}: expected sqlite:PATH or postgres://USER@HOST/DB"
            )));
        };
        Ok(Store { pool })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Waits for in-flight queries and closes every connection.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }

    /// Drops a PostgreSQL schema and everything in it. Tests and `shopgraph` tooling
    /// use it to clean up after a run; it refuses anything but a plain identifier.
    pub async fn drop_pg_schema(url: &str, schema: &str) -> Result<()> {
        if !is_plain_identifier(schema) {
            return Err(StoreError::BadUrl(format!("schema name {schema:?}")));
        }
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(connect)
            .await
            .map_err(StoreError::from_connect)?;
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool).await?;
        pool.close().await;
        Ok(())
    }
}

async fn create_pg_schema(connect: &PgConnectOptions, schema: &str) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect.clone())
        .await
        .map_err(StoreError::from_connect)?;
    // Under the migration lock: two replicas creating the schema at once would otherwise
    // collide in PostgreSQL's catalog. The name was checked by `is_plain_identifier`, so
    // splicing it in is safe.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(migrate::MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&mut *tx).await?;
    tx.commit().await?;
    pool.close().await;
    Ok(())
}

fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Writes the `n`th (1-based) placeholder of a generated parameter list.
///
/// Fixed queries use `$N`, which both backends accept. Generated lists use plain `?` on
/// SQLite: binding calls `sqlite3_bind_parameter_name` once per parameter, and that walks
/// the statement's list of parameter names, so with named or numbered parameters a
/// 1000-row insert (8000 parameters) spent 86% of its time there (perf, `shopgraph
/// bench store`). Anonymous parameters have no names to walk.
fn push_placeholder(out: &mut String, backend: Backend, n: usize) {
    match backend {
        Backend::Sqlite => out.push('?'),
        Backend::Postgres => {
            out.push('$');
            out.push_str(&n.to_string());
        }
    }
}

/// `$1, $2, …` groups for a multi-row `VALUES` list: `rows` groups of `cols` placeholders.
pub(crate) fn values_placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    for row in 0..rows {
        if row > 0 {
            out.push(',');
        }
        out.push('(');
        for col in 0..cols {
            if col > 0 {
                out.push(',');
            }
            push_placeholder(&mut out, backend, row * cols + col + 1);
        }
        out.push(')');
    }
    out
}

/// `$first, $first+1, …` for an `IN (…)` list of `n` items. On SQLite the list must be
/// the statement's only parameters (they are anonymous, so positions are implicit).
pub(crate) fn in_list(backend: Backend, first: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 5);
    for i in first..first + n {
        if i > first {
            out.push(',');
        }
        push_placeholder(&mut out, backend, i);
    }
    out
}

/// Rows per multi-row statement: 8 columns × 1000 rows stays well under both
/// SQLite's (32766) and PostgreSQL's (65535) limits on bound parameters.
pub(crate) const BATCH_ROWS: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(values_placeholders(Backend::Postgres, 2, 3), "($1,$2,$3),($4,$5,$6)");
        assert_eq!(values_placeholders(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
        assert_eq!(in_list(Backend::Postgres, 3, 2), "$3,$4");
    }

    #[test]
    fn schema_names_are_plain() {
        assert!(is_plain_identifier("t_123_abc"));
        assert!(!is_plain_identifier("a; drop table users"));
        assert!(!is_plain_identifier("Upper"));
        assert!(!is_plain_identifier(""));
    }
}
