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

# The server's end-to-end tests: Debian's Chromium and its WebDriver for the web pages,
# and the openai Python package (its own venv) for the OpenAI-compatible endpoint.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "test: installing chromium and chromium-driver with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
cache="${SHOPGRAPH_CACHE:-$repo/.cache}"
if [ ! -f "$cache/venv-openai/.installed" ]; then
    echo "test: installing the openai Python package into $cache/venv-openai" >&2
    rm -rf "$cache/venv-openai"
    python3 -m venv "$cache/venv-openai"
    "$cache/venv-openai/bin/python" -m pip install --quiet openai==1.109.1
    touch "$cache/venv-openai/.installed"
fi
cargo test --workspace --locked
