//! End-to-end tests: the real `shopgraph` binary against a real SQLite file and the
//! PostgreSQL server on this machine, fed the excerpts of real data in `graph_data/`.
//!
//! One test binary (see ripgrep's `tests/tests.rs`); one module per capability.

mod support;

mod browser;
mod chat;
mod eval;
mod events;
mod faults;
mod graph;
mod import;
mod injection;
mod insight;
mod replicas;
mod search;
mod server;
mod telegram;
