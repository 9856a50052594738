//! Interest segments: the result of one clustering run, versioned.

use crate::{SegmentId, UserId};

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
