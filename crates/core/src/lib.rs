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

/// Checks an identifier from outside (a sku, a shop's user id, a category key): not
/// empty, at most 200 bytes, no control characters. SQLite would store a NUL, PostgreSQL
/// would refuse it; both refuse it here, with the same error.
pub fn check_identifier(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 200 {
        return Err(format!("{what} must be 1 to 200 bytes, got {}", id.len()));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("{what} {id:?} contains a control character"));
    }
    Ok(())
}

/// The current time as a [`Timestamp`].
pub fn now_ms() -> Timestamp {
    let since_epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_millis() as Timestamp
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers() {
        assert_eq!(super::check_identifier("sku", "LENS-35-L"), Ok(()));
        assert_eq!(
            super::check_identifier("sku", ""),
            Err("sku must be 1 to 200 bytes, got 0".into())
        );
        assert_eq!(
            super::check_identifier("user id", "a\0b"),
            Err(r#"user id "a\0b" contains a control character"#.into())
        );
    }
}
