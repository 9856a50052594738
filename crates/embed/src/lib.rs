//! Sentence vectors for products and queries.
//!
//! - [`Encoder`]: all-MiniLM-L6-v2 (weights read with candle, products on OpenBLAS),
//!   batched, mean-pooled and L2-normalised as sentence-transformers does, checked
//!   against an independent forward pass.
//! - [`VectorIndex`]: one vector per product, persisted to a file, searched exactly
//!   ([`exact::top_k`], SIMD dot products) or through an HNSW graph ([`hnsw`]).
//!
//! Nothing here knows about SQL or HTTP; the caller decides what text stands for a
//! product and when to save.

mod bert;
mod blas;
mod encoder;
pub mod exact;
pub mod hnsw;
mod index;

use std::path::PathBuf;

pub use blas::inverse_spd;
pub use encoder::{Encoder, MAX_TOKENS};
pub use hnsw::{HnswParams, Visited};
pub use index::{DEFAULT_EF, EXACT_MAX_ROWS, FORMAT_VERSION, Method, VectorIndex, text_hash};

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    #[error("vector of {found} floats where {expected} were expected")]
    Dimension { expected: usize, found: usize },
    #[error("vector index is full (4 billion rows)")]
    Full,
    #[error("vector index is damaged: {0}")]
    Corrupt(String),
    #[error("vector index is out of date: {0}")]
    Stale(String),
}
