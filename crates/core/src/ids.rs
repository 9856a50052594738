//! Opaque numeric ids assigned by the store.
//!
//! Outside the store these are the only handles on stored things; external ids
//! (an ISBN, a shop's own user id) live on the records themselves.

use std::fmt;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

id_type!(
    /// A product in the catalog.
    ProductId,
    /// A shopper (registered, guest, or a Telegram account).
    UserId,
    /// One extracted or stated interest on a profile.
    InterestId,
    /// A conversation between a shopper and the assistant or an agent.
    ConversationId,
    /// One message in a conversation.
    MessageId,
    /// An interest segment of one clustering run.
    SegmentId,
);
