//! Reading shop data: the shop import format (JSON Lines), and the public data sets
//! the demo and the benchmarks use (Book-Crossing; MovieLens-100K with its Freebase
//! graph and MovieLens-1M as RecBole atomic files).
//!
//! Every reader produces the same [`Dataset`] of domain records keyed by external ids,
//! plus a [`Report`] of what it kept and what it set aside, with file and line. Reading
//! never fails on a bad row: the row is set aside and reported. It fails only when a
//! source is not what it claims to be (a missing file, a header that does not match).
//!
//! This crate reads files and cleans text. It does not know the store: the caller
//! writes the dataset (see `shopgraph import`).

pub mod bookcrossing;
pub mod clean;
pub mod dataset;
pub mod jsonl;
pub mod recbole;
pub mod report;
pub mod synthetic;

pub use crate::dataset::{Dataset, EventRecord, ImportError};
pub use crate::report::{Diagnostic, EntityCounts, Report};
