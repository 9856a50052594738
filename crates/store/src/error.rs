//! The store's one error type.

use shopgraph_core::event::EventError;
use shopgraph_core::{ConversationId, InterestId, ProductId, UserId};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What went wrong. The first group are the caller's faults (a 4xx at HTTP): nothing
/// was written. The rest are the database's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event {index} of the batch: {error}")]
    InvalidEvent { index: usize, error: EventError },
    #[error("unknown user {0}")]
    UnknownUser(UserId),
    #[error("unknown product {0}")]
    UnknownProduct(ProductId),
    #[error("unknown conversation {0}")]
    UnknownConversation(ConversationId),
    #[error("unknown interest {0}")]
    UnknownInterest(InterestId),
    #[error("invalid input: {0}")]
    Invalid(String),

    #[error("bad database url: {0}")]
    BadUrl(String),
    #[error(
        "the database is at schema version {found}, newer than this binary knows ({known}): upgrade shopgraph"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database cannot write: its disk is full, or it is read-only. Nothing of the
    /// failed write was kept; reads go on.
    #[error("the database cannot write: {0}")]
    CannotWrite(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// True when the caller sent something wrong; false when the database failed.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            StoreError::InvalidEvent { .. }
                | StoreError::UnknownUser(_)
                | StoreError::UnknownProduct(_)
                | StoreError::UnknownConversation(_)
                | StoreError::UnknownInterest(_)
                | StoreError::Invalid(_)
        )
    }

    pub(crate) fn from_connect(e: sqlx::Error) -> StoreError {
        match StoreError::from(e) {
            // A read-only or full disk says so; anything else is the database away.
            e @ StoreError::CannotWrite(_) => e,
            StoreError::Unavailable(e) | StoreError::Database(e) => StoreError::Unavailable(e),
            e => e,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        match e {
            // The database went away or is overloaded: the caller may retry later.
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e),
            // PostgreSQL shutting down or restarting (57P01-57P03), or the connection
            // lost (class 08): the same, seen from inside a query.
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) =>
            {
                StoreError::Unavailable(sqlx::Error::Database(db))
            }
            // Text PostgreSQL cannot store (a NUL character): the input's fault, not the
            // database's. The checks before each write should have caught it already.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("22021" | "22P05")) =>
            {
                StoreError::Invalid(format!("text the database cannot store: {}", db.message()))
            }
            sqlx::Error::Database(db) if sqlite_primary(&*db) == Some(SQLITE_FULL) => {
                StoreError::CannotWrite("its disk is full".into())
            }
            sqlx::Error::Database(db) if sqlite_primary(&*db) == Some(SQLITE_READONLY) => {
                StoreError::CannotWrite("it is read-only".into())
            }
            // PostgreSQL: disk full (53100), read-only transaction (25006).
            sqlx::Error::Database(db) if db.code().as_deref() == Some("53100") => {
                StoreError::CannotWrite("its disk is full".into())
            }
            sqlx::Error::Database(db) if db.code().as_deref() == Some("25006") => {
                StoreError::CannotWrite("it is read-only".into())
            }
            e => StoreError::Database(e),
        }
    }
}

/// SQLite's primary result codes for a full disk and a read-only database.
const SQLITE_FULL: i64 = 13;
const SQLITE_READONLY: i64 = 8;

/// The primary result code of an SQLite error (sqlx gives the extended code, in text);
/// None for another database's.
fn sqlite_primary(db: &dyn sqlx::error::DatabaseError) -> Option<i64> {
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    db.code()?.parse::<i64>().ok().map(|c| c & 0xff)
}
