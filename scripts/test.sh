#!/usr/bin/env bash
# The test command (README): fetches the data and models, makes sure PostgreSQL is up,
# and runs every test of the workspace, on SQLite and on PostgreSQL.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

command -v cargo >/dev/null 2>&1 || {
    echo "test: cargo is missing; shopgraph needs Rust 1.94 or newer (rustup)" >&2
    exit 1
}
scripts/setup.sh
scripts/ensure-postgres.sh
cargo test --workspace --locked
