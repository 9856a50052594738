//! Recommenders and their offline evaluation.
//!
//! - [`data`]: interactions as dense user × item indices, read from any import source;
//! - [`split`]: the evaluation protocols (random per-user holdout, leave-last-out by
//!   time), with a validation split carved from training, written to files;
//! - [`metrics`]: Recall, NDCG, HR, AUC, coverage over full rankings with the seen
//!   items removed, and MSE/RMSE;
//! - [`model`]: the candidate generators, each a [`model::Recommender`];
//! - [`eval`]: one model on one split, one row of the table;
//! - [`serve`]: top-N for a shopper with a shop's filters and a fallback for strangers.

pub mod data;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod serve;
pub mod split;

pub use data::Interactions;
pub use eval::{Row, evaluate};
pub use model::Recommender;
pub use split::Split;

#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{path} line {line}: {reason}")]
    Format { path: std::path::PathBuf, line: usize, reason: String },
    #[error("reading the data set: {0}")]
    Import(#[from] shopgraph_import::ImportError),
    #[error("{0}")]
    Invalid(String),
}
