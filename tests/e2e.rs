//! End-to-end tests: the real `shopgraph` binary against real databases and files.
