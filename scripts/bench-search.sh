#!/usr/bin/env bash
# The search benchmark with its peer: makes a throwaway virtual environment with
# sentence-transformers (PyTorch on CPU) from PyPI, then runs `shopgraph bench search`,
# which encodes the same catalog texts with both and reports the ratio.
#
#   scripts/bench-search.sh [--db URL] [more `shopgraph bench search` flags]
#
# The bookstore must be imported first (scripts/run.sh does it). The venv lives in a
# temporary directory and is removed at the end (PyTorch with its CUDA libraries is
# about 6 GB; set SHOPGRAPH_PEER_VENV to keep one between runs).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${SHOPGRAPH_CACHE:-$repo/.cache}"
scripts/setup.sh

venv="${SHOPGRAPH_PEER_VENV:-}"
if [ -z "$venv" ]; then
    venv="$(mktemp -d)/peer-venv"
    trap 'rm -rf "$(dirname "$venv")"' EXIT
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import sentence_transformers" 2>/dev/null; then
    echo "bench: installing sentence-transformers into $venv (a few minutes)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet sentence-transformers
fi
cargo build --locked -q -p shopgraph
cargo run --locked -q -p shopgraph -- bench search \
    --db "${SHOPGRAPH_DATABASE_URL:-sqlite:$cache/shopgraph.db}" \
    --model-dir "$cache/models/all-MiniLM-L6-v2" \
    --peer-python "$venv/bin/python" "$@"
