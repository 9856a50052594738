//! Behaviour events and the rules every stored event obeys.
//!
//! Events are append-only. Each carries an idempotency key chosen by the sender, so a
//! retried event is stored once, and gets a sequence number from the store, which is
//! the cursor consumers (graph, indexes, profiles) follow to stay current.

use std::fmt;

use crate::{ProductId, Timestamp, UserId};

/// Largest payload the store accepts for one event, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;

/// What the shopper did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    View,
    Click,
    AddToCart,
    Purchase,
    Rating,
    Review,
    Search,
    ChatMessage,
    RecommendationShown,
    /// The shopper said "not interested" in a product (a button under it): keeps it out
    /// of their lists. Not an interaction the recommender learns from.
    Dismiss,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::View,
        EventKind::Click,
        EventKind::AddToCart,
        EventKind::Purchase,
        EventKind::Rating,
        EventKind::Review,
        EventKind::Search,
        EventKind::ChatMessage,
        EventKind::RecommendationShown,
        EventKind::Dismiss,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::Click => "click",
            EventKind::AddToCart => "add_to_cart",
            EventKind::Purchase => "purchase",
            EventKind::Rating => "rating",
            EventKind::Review => "review",
            EventKind::Search => "search",
            EventKind::ChatMessage => "chat_message",
            EventKind::RecommendationShown => "recommendation_shown",
            EventKind::Dismiss => "dismiss",
        }
    }

    pub fn parse(s: &str) -> Result<EventKind, EventError> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| EventError::UnknownKind(s.chars().take(64).collect()))
    }

    /// Kinds that are about one product and must name it.
    pub fn needs_product(self) -> bool {
        matches!(
            self,
            EventKind::View
                | EventKind::Click
                | EventKind::AddToCart
                | EventKind::Purchase
                | EventKind::Rating
                | EventKind::Review
                | EventKind::RecommendationShown
                | EventKind::Dismiss
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub idempotency_key: String,
    pub user: UserId,
    pub product: Option<ProductId>,
    pub kind: EventKind,
    /// The rating for `rating` and `review`, the quantity for `purchase`.
    pub value: Option<f64>,
    /// Kind-specific details as JSON text: the query of a search, the text of a review,
    /// the message id of a chat message, the list a recommendation was shown in.
    pub payload: Option<String>,
    pub occurred_at: Timestamp,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Position in the store's append order: strictly increasing, never reused.
    pub seq: i64,
    pub idempotency_key: String,
    pub user: UserId,
    pub product: Option<ProductId>,
    pub kind: EventKind,
    pub value: Option<f64>,
    pub payload: Option<String>,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
}

/// Why an event was refused before anything was written.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error(
        "unknown event kind {0:?} (expected one of view, click, add_to_cart, purchase, rating, review, search, chat_message, recommendation_shown, dismiss)"
    )]
    UnknownKind(String),
    #[error("idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes, got {0}")]
    BadIdempotencyKey(usize),
    #[error("idempotency key may not contain spaces or control characters")]
    IdempotencyKeyCharacters,
    #[error("text may not contain NUL characters")]
    NulInText,
    #[error("a {0} event must name a product")]
    MissingProduct(EventKind),
    #[error("a rating event must carry a finite value")]
    MissingValue,
    #[error("value {0} is not a finite number")]
    NonFiniteValue(f64),
    #[error("payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}")]
    PayloadTooLarge { size: usize },
    #[error("payload is not valid UTF-8 (first bad byte at offset {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("timestamp {0} is out of range")]
    BadTimestamp(Timestamp),
}

impl NewEvent {
    /// Checks everything that can be checked without the store. The store checks the
    /// rest (that the user and product exist) inside the same transaction as the write.
    pub fn validate(&self) -> Result<(), EventError> {
        let key_len = self.idempotency_key.len();
        if key_len == 0 || key_len > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(EventError::BadIdempotencyKey(key_len));
        }
        // Keys are echoed in acknowledgements, one per line: a key with a line break
        // could forge another key's ack.
        if self.idempotency_key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EventError::IdempotencyKeyCharacters);
        }
        if self.kind.needs_product() && self.product.is_none() {
            return Err(EventError::MissingProduct(self.kind));
        }
        match self.value {
            Some(v) if !v.is_finite() => return Err(EventError::NonFiniteValue(v)),
            None if self.kind == EventKind::Rating => return Err(EventError::MissingValue),
            _ => {}
        }
        if let Some(payload) = &self.payload {
            if payload.len() > MAX_PAYLOAD_BYTES {
                return Err(EventError::PayloadTooLarge { size: payload.len() });
            }
            // SQLite stores NUL, PostgreSQL refuses it: refuse it on both.
            if payload.contains('\0') {
                return Err(EventError::NulInText);
            }
        }
        // Year 0 to 9999: anything else is a unit mix-up (seconds for milliseconds).
        if !(-62_167_219_200_000..=253_402_300_799_000).contains(&self.occurred_at) {
            return Err(EventError::BadTimestamp(self.occurred_at));
        }
        Ok(())
    }
}

/// Turns payload bytes from the wire into text, refusing oversize or invalid UTF-8
/// payloads with a typed error rather than replacing characters.
pub fn payload_from_bytes(bytes: &[u8]) -> Result<String, EventError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(EventError::PayloadTooLarge { size: bytes.len() });
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => Err(EventError::InvalidUtf8 { valid_up_to: e.valid_up_to() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> NewEvent {
        NewEvent {
            idempotency_key: "k1".into(),
            user: UserId(1),
            product: Some(ProductId(2)),
            kind,
            value: None,
            payload: None,
            occurred_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn kinds_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Ok(kind));
        }
        assert_eq!(EventKind::parse("buy"), Err(EventError::UnknownKind("buy".into())));
    }

    #[test]
    fn validation_refuses_what_the_store_must_never_hold() {
        assert_eq!(event(EventKind::View).validate(), Ok(()));
        assert_eq!(event(EventKind::Rating).validate(), Err(EventError::MissingValue));
        let mut e = event(EventKind::Purchase);
        e.product = None;
        assert_eq!(e.validate(), Err(EventError::MissingProduct(EventKind::Purchase)));
        let mut e = event(EventKind::Search);
        e.product = None;
        e.payload = Some("x".repeat(MAX_PAYLOAD_BYTES + 1));
        assert_eq!(e.validate(), Err(EventError::PayloadTooLarge { size: MAX_PAYLOAD_BYTES + 1 }));
        let mut e = event(EventKind::Rating);
        e.value = Some(f64::NAN);
        assert!(matches!(e.validate(), Err(EventError::NonFiniteValue(_))));
        let mut e = event(EventKind::View);
        e.idempotency_key = String::new();
        assert_eq!(e.validate(), Err(EventError::BadIdempotencyKey(0)));
        let mut e = event(EventKind::View);
        e.idempotency_key = "a\nack b".into();
        assert_eq!(e.validate(), Err(EventError::IdempotencyKeyCharacters));
        let mut e = event(EventKind::Search);
        e.payload = Some("{\"q\":\"a\u{0}b\"}".into());
        assert_eq!(e.validate(), Err(EventError::NulInText));
        let mut e = event(EventKind::View);
        e.occurred_at = i64::MAX;
        assert_eq!(e.validate(), Err(EventError::BadTimestamp(i64::MAX)));
    }

    #[test]
    fn payload_bytes_must_be_utf8() {
        assert_eq!(
            payload_from_bytes(b"{\"q\":\"caf\xc3\xa9\"}").as_deref(),
            Ok("{\"q\":\"café\"}")
        );
        assert_eq!(
            payload_from_bytes(b"ab\xffcd"),
            Err(EventError::InvalidUtf8 { valid_up_to: 2 })
        );
    }
}
