//! Domain types of shopgraph: ids, products, users, behaviour events, interests,
//! conversations, segments.
//!
//! This crate knows nothing about SQL, HTTP, petgraph, tantivy, candle or any model:
//! it holds the vocabulary every other crate speaks, and the validation rules that
//! hold whatever adapter stores or transports the data.

pub mod conversation;
pub mod event;
pub mod ids;
pub mod interest;
pub mod kg;
pub mod product;
pub mod segment;
pub mod user;

pub use ids::{ConversationId, InterestId, MessageId, ProductId, SegmentId, UserId};

/// Milliseconds since the Unix epoch, UTC. Every stored time is one of these.
pub type Timestamp = i64;

/// The current time as a [`Timestamp`].
pub fn now_ms() -> Timestamp {
    let since_epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_millis() as Timestamp
}
