//! Interests on a profile: what a shopper likes or dislikes, and why we think so.

use crate::{InterestId, Timestamp, UserId};

/// Whether the shopper is drawn to the subject or away from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Polarity {
    Likes,
    Dislikes,
}

impl Polarity {
    pub fn as_i64(self) -> i64 {
        match self {
            Polarity::Likes => 1,
            Polarity::Dislikes => -1,
        }
    }

    pub fn from_i64(v: i64) -> Option<Polarity> {
        match v {
            1 => Some(Polarity::Likes),
            -1 => Some(Polarity::Dislikes),
            _ => None,
        }
    }
}

/// Where an interest came from, so an agent can see why the profile says what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterestSource {
    /// Derived from a behaviour event (its sequence number).
    Event(i64),
    /// Extracted from a review (the review event's sequence number).
    Review(i64),
    /// Extracted from a chat message.
    ChatMessage(i64),
    /// Stated by the shopper (a preference form, `/start` on Telegram).
    Stated,
    /// Entered by a support agent.
    Agent(String),
}

impl InterestSource {
    pub fn kind(&self) -> &'static str {
        match self {
            InterestSource::Event(_) => "event",
            InterestSource::Review(_) => "review",
            InterestSource::ChatMessage(_) => "chat",
            InterestSource::Stated => "stated",
            InterestSource::Agent(_) => "agent",
        }
    }

    pub fn reference(&self) -> Option<String> {
        match self {
            InterestSource::Event(seq) | InterestSource::Review(seq) => Some(seq.to_string()),
            InterestSource::ChatMessage(id) => Some(id.to_string()),
            InterestSource::Agent(name) => Some(name.clone()),
            InterestSource::Stated => None,
        }
    }

    pub fn parse(kind: &str, reference: Option<&str>) -> Option<InterestSource> {
        let num = || reference.and_then(|r| r.parse::<i64>().ok());
        Some(match kind {
            "event" => InterestSource::Event(num()?),
            "review" => InterestSource::Review(num()?),
            "chat" => InterestSource::ChatMessage(num()?),
            "stated" => InterestSource::Stated,
            "agent" => InterestSource::Agent(reference?.to_owned()),
            _ => return None,
        })
    }
}

/// An interest to record. `subject` names a graph concept, e.g. `author:jrr tolkien`,
/// `category:fantasy`, `product:9780261102217`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewInterest {
    pub user: UserId,
    pub subject: String,
    pub weight: f64,
    pub polarity: Polarity,
    pub source: InterestSource,
    pub at: Timestamp,
}

/// A stored interest.
#[derive(Clone, Debug, PartialEq)]
pub struct Interest {
    pub id: InterestId,
    pub user: UserId,
    pub subject: String,
    pub weight: f64,
    pub polarity: Polarity,
    pub source: InterestSource,
    pub at: Timestamp,
}
