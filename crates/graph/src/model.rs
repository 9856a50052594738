//! Node and edge types.

use std::fmt;

use shopgraph_core::interest::Polarity;
use shopgraph_core::product::MakerKind;
use shopgraph_core::{InterestId, ProductId, SegmentId, UserId};

/// The identity of a node, as the rest of the platform names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKey {
    Product(ProductId),
    /// A category key (`books`, `movies/comedy`).
    Category(String),
    /// An author, brand or publisher by normalised key.
    Maker(MakerKindKey, String),
    /// An attribute value: `year:1990s`, `format:book`, `mount:L`.
    Attribute(String),
    User(UserId),
    /// An interest subject that names no other node (`topic:night photography`).
    Concept(String),
    Segment(SegmentId),
    /// A knowledge-graph entity (a Freebase id such as `m.0bln8`).
    Entity(String),
}

/// [`MakerKind`] with an order, so keys sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MakerKindKey {
    Author,
    Brand,
    Publisher,
}

impl From<MakerKind> for MakerKindKey {
    fn from(kind: MakerKind) -> MakerKindKey {
        match kind {
            MakerKind::Author => MakerKindKey::Author,
            MakerKind::Brand => MakerKindKey::Brand,
            MakerKind::Publisher => MakerKindKey::Publisher,
        }
    }
}

impl MakerKindKey {
    pub fn as_str(self) -> &'static str {
        match self {
            MakerKindKey::Author => "author",
            MakerKindKey::Brand => "brand",
            MakerKindKey::Publisher => "publisher",
        }
    }
}

impl NodeKey {
    /// Parses the text form (`author:jrr tolkien`, `category:books`, `year:1990s`,
    /// `entity:m.0bln8`, `segment:3`, `concept:…`). Products and users are named by id
    /// (`product:17`, `user:42`); callers resolve skus and external ids first.
    /// Anything else with a `:` is an attribute value.
    pub fn parse(text: &str) -> Option<NodeKey> {
        let (kind, rest) = text.split_once(':')?;
        if rest.is_empty() {
            return None;
        }
        Some(match kind {
            "product" => NodeKey::Product(ProductId(rest.parse().ok()?)),
            "user" => NodeKey::User(UserId(rest.parse().ok()?)),
            "segment" => NodeKey::Segment(SegmentId(rest.parse().ok()?)),
            "category" => NodeKey::Category(rest.to_owned()),
            "author" => NodeKey::Maker(MakerKindKey::Author, rest.to_owned()),
            "brand" => NodeKey::Maker(MakerKindKey::Brand, rest.to_owned()),
            "publisher" => NodeKey::Maker(MakerKindKey::Publisher, rest.to_owned()),
            "entity" => NodeKey::Entity(rest.to_owned()),
            "concept" => NodeKey::Concept(rest.to_owned()),
            _ => NodeKey::Attribute(text.to_owned()),
        })
    }
}

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeKey::Product(id) => write!(f, "product:{id}"),
            NodeKey::Category(key) => write!(f, "category:{key}"),
            NodeKey::Maker(kind, key) => write!(f, "{}:{key}", kind.as_str()),
            NodeKey::Attribute(value) => f.write_str(value),
            NodeKey::User(id) => write!(f, "user:{id}"),
            NodeKey::Concept(subject) => write!(f, "concept:{subject}"),
            NodeKey::Segment(id) => write!(f, "segment:{id}"),
            NodeKey::Entity(id) => write!(f, "entity:{id}"),
        }
    }
}

/// What an edge says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Relation {
    /// product → category
    InCategory,
    /// category → parent category
    ChildOf,
    /// product → author or brand
    MadeBy,
    /// product → publisher
    PublishedBy,
    /// product → attribute value
    HasAttribute,
    /// user → product: everything the user did with it, aggregated
    Interacted,
    /// user → maker, category, attribute, product or concept
    InterestedIn,
    /// user → segment
    MemberOf,
    /// product → product (association rules)
    BoughtTogether,
    /// product → knowledge-graph entity
    LinkedTo,
    /// entity → entity, by an imported relation (index into the relation names)
    Kg(u16),
}

impl Relation {
    /// Every relation but the imported ones, in a fixed order (snapshots store the index).
    pub const FIXED: [Relation; 10] = [
        Relation::InCategory,
        Relation::ChildOf,
        Relation::MadeBy,
        Relation::PublishedBy,
        Relation::HasAttribute,
        Relation::Interacted,
        Relation::InterestedIn,
        Relation::MemberOf,
        Relation::BoughtTogether,
        Relation::LinkedTo,
    ];

    /// The name used on the command line and in the agent API.
    pub fn name(self) -> &'static str {
        match self {
            Relation::InCategory => "in-category",
            Relation::ChildOf => "child-of",
            Relation::MadeBy => "made-by",
            Relation::PublishedBy => "published-by",
            Relation::HasAttribute => "has-attribute",
            Relation::Interacted => "interacted",
            Relation::InterestedIn => "interested-in",
            Relation::MemberOf => "member-of",
            Relation::BoughtTogether => "bought-together",
            Relation::LinkedTo => "linked-to",
            Relation::Kg(_) => "kg",
        }
    }

    pub fn parse(name: &str) -> Option<Relation> {
        Relation::FIXED.into_iter().find(|r| r.name() == name)
    }

    /// Relations that describe what a product is (as opposed to who did what).
    pub fn is_content(self) -> bool {
        matches!(
            self,
            Relation::InCategory
                | Relation::MadeBy
                | Relation::PublishedBy
                | Relation::HasAttribute
                | Relation::LinkedTo
        )
    }
}

/// Bits of [`EdgeDetail::Interaction::kinds`], one per event kind.
pub mod kind_bits {
    pub const VIEW: u16 = 1;
    pub const CLICK: u16 = 1 << 1;
    pub const ADD_TO_CART: u16 = 1 << 2;
    pub const PURCHASE: u16 = 1 << 3;
    pub const RATING: u16 = 1 << 4;
    pub const REVIEW: u16 = 1 << 5;
}

/// What an edge carries beyond its relation and weight.
#[derive(Clone, Debug, PartialEq)]
pub enum EdgeDetail {
    None,
    /// All of one user's events on one product.
    Interaction {
        /// Which kinds of event happened ([`kind_bits`]).
        kinds: u16,
        /// The latest rating, if the user rated it.
        rating: Option<f32>,
        count: u32,
        last_at: i64,
    },
    /// An interest; its source and time are in the graph's interest table, which keeps
    /// every edge small (there are millions of edges and few interests).
    Interest {
        id: InterestId,
        polarity: Polarity,
    },
    /// Segment membership score, or a rule's support, confidence and lift.
    Scores {
        a: f32,
        b: f32,
        c: f32,
    },
}
