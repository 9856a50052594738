//! Interest exploration across all shoppers: what marketing and operations use.
//!
//! - [`rules`]: frequent itemsets by FP-growth and the association rules they give
//!   ("people who bought this also bought…"), with support, confidence and lift;
//! - [`segments`]: shoppers' profile vectors over graph concepts, clustered by
//!   mini-batch k-means with k chosen by silhouette;
//! - [`sequences`]: what shoppers usually look at next (first-order transitions);
//! - [`forecast`]: weekly demand by seasonal exponential smoothing, backtested
//!   against the seasonal-naive forecast;
//! - [`audience`]: shoppers chosen for a campaign, each with the reasons;
//! - [`experiments`]: arms by a stable hash of the shopper, and click-through and
//!   conversion per arm with confidence intervals.
//!
//! - [`shopping`]: the one shape the analyses read, built from a data set.
//!
//! Items, shoppers and concepts are dense `u32` indices; this crate knows no store and
//! no HTTP.

pub mod audience;
pub mod experiments;
pub mod forecast;
pub mod rules;
pub mod segments;
pub mod sequences;
pub mod shopping;

pub use crate::rules::{Itemset, Rule, RuleParams, Rules};
pub use crate::segments::{Clustering, SegmentParams};

/// Why an analysis cannot run: always the caller's input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InsightError {
    #[error("there is nothing to analyse: {0}")]
    Empty(&'static str),
    #[error("{name} must be {range}, got {value}")]
    OutOfRange { name: &'static str, range: &'static str, value: f64 },
    #[error("{0}")]
    Invalid(String),
}

/// SplitMix64 (Steele, Lea & Flood, 2014): small, fast, and the same on every machine,
/// so a seeded analysis repeats exactly.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n), n > 0.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// `m` distinct indices from [0, n), m ≤ n (a partial Fisher–Yates shuffle).
    pub(crate) fn sample(&mut self, n: usize, m: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..m.min(n) {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(m.min(n));
        all
    }
}
