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
        StoreError::Unavailable(e)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        match e {
            // The database went away or is overloaded: the caller may retry later.
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(e)
            }
            // Text PostgreSQL cannot store (a NUL character): the input's fault, not the
            // database's. The checks before each write should have caught it already.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("22021" | "22P05")) =>
            {
                StoreError::Invalid(format!("text the database cannot store: {}", db.message()))
            }
            e => StoreError::Database(e),
        }
    }
}
