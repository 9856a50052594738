#!/usr/bin/env bash
# The recommender table with its peers: writes the evaluation splits, trains the peer
# libraries on the very same files in a throwaway virtual environment (implicit: ALS,
# BPR, item-kNN; cornac: EASE; from PyPI), then prints `shopgraph eval` with the peers'
# rows beside ours, all scored by the same metric code.
#
#   scripts/bench-recommend.sh [--dataset ml-100k] [...]
#
# Set SHOPGRAPH_PEER_VENV to keep the venv between runs.
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
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import implicit, cornac" 2>/dev/null; then
    echo "bench: installing implicit and cornac into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet implicit cornac
fi
cargo build --release --locked -q -p shopgraph
shopgraph() { "${CARGO_TARGET_DIR:-$repo/target}/release/shopgraph" "$@"; }
splits="$cache/splits"
shopgraph eval --data-dir "$cache/data" --splits-dir "$splits" --splits-only "$@" |
    while read -r dir; do
        echo "bench: peers on $dir" >&2
        "$venv/bin/python" scripts/peer_recommend.py "$dir" 2>>"$splits/peers.log"
    done
shopgraph eval --data-dir "$cache/data" --splits-dir "$splits" --peers "$@"
