//! Recommenders and their offline evaluation.
//!
//! - [`data`]: interactions as dense user × item indices, read from any import source;
//! - [`split`]: the evaluation protocols (random per-user holdout, leave-last-out by
//!   time), with a validation split carved from training, written to files;
//! - [`metrics`]: Recall, NDCG, HR, AUC, coverage over full rankings with the seen
//!   items removed, and MSE/RMSE;
//! - [`side`]: what items are besides their interactions: a text for BERT, and their
//!   knowledge-graph edges;
//! - [`model`]: the candidate generators, each a [`model::Recommender`], the fusion
//!   model (a profile transformer over BERT, graph and behaviour item vectors:
//!   [`model::fusion`], with its equations) and the learned ranker over them all
//!   ([`model::ranker`]);
//! - [`eval`]: one model on one split, one row of the table;
//! - [`serve`]: top-N for a known user, a guest's session or stated interests alone,
//!   with a shop's filters, a fallback for strangers, and each result's explanation
//!   (the best graph path, in words).

pub mod data;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod serve;
pub mod side;
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
