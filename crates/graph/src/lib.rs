//! The product knowledge graph: products, categories, makers, attribute values, users,
//! interest concepts, segments and imported knowledge-graph entities, joined by typed,
//! weighted edges. It is what lets shopgraph say *why*: every explanation is a path in
//! this graph, rendered in words.
//!
//! Pure and in memory: no store, no files, no HTTP. The caller feeds it domain records
//! ([`KnowledgeGraph::upsert_product`], [`KnowledgeGraph::apply_event`], …), in any order
//! and as they arrive, and gets the same graph as a rebuild from scratch. Snapshots are
//! bytes ([`snapshot`]); the caller decides where they live.
//!
//! petgraph's `NodeIndex` never leaves this crate: the outside names nodes by
//! [`NodeKey`] (a `ProductId`, a maker's key, …).

mod build;
pub mod explain;
pub mod model;
pub mod query;
pub mod snapshot;

pub use crate::build::{GraphCounts, KnowledgeGraph};
pub use crate::model::{EdgeDetail, NodeKey, Relation};
pub use crate::query::{Limits, QueryError};
