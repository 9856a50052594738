//! Interest segments and association rules: the results of clustering and mining runs,
//! versioned.

use crate::{ProductId, SegmentId, UserId};

/// A segment to store, with its members and their affinity scores.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSegment {
    pub key: String,
    pub description: String,
    pub members: Vec<(UserId, f64)>,
}

/// A stored segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub id: SegmentId,
    pub version: i64,
    pub key: String,
    pub description: String,
    pub n_members: i64,
}

/// An association rule over products: baskets (orders, or a shopper's visits) that
/// hold every product of `antecedent` tend to hold those of `consequent` too (one
/// mining run's result).
#[derive(Clone, Debug, PartialEq)]
pub struct ProductRule {
    pub antecedent: Vec<ProductId>,
    pub consequent: Vec<ProductId>,
    /// Share of baskets holding both sides.
    pub support: f64,
    /// Share of baskets with the antecedent that hold the consequent.
    pub confidence: f64,
    /// Confidence over the consequent's own share (1: independent).
    pub lift: f64,
}
