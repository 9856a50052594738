//! Interest exploration across all shoppers: what marketing and operations use.
//!
//! - [`rules`]: frequent itemsets by FP-growth and the association rules they give
//!   ("people who bought this also bought…"), with support, confidence and lift.
//!
//! Items are dense `u32` indices chosen by the caller (the recommender's item indices,
//! say); this crate knows no store, no files and no HTTP.

pub mod rules;

pub use crate::rules::{Itemset, Rule, RuleParams, Rules};

/// Why an analysis cannot run: always the caller's input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InsightError {
    #[error("there is nothing to analyse: {0}")]
    Empty(&'static str),
    #[error("{name} must be {range}, got {value}")]
    OutOfRange { name: &'static str, range: &'static str, value: f64 },
}
