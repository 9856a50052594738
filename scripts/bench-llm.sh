#!/usr/bin/env bash
# The LLM benchmark with its peer: makes a throwaway virtual environment with
# llama-cpp-python (built from source by pip, about 5 minutes), then runs
# `shopgraph bench llm`, which times both fetched models through mistral.rs and
# llama.cpp on the same prompts and reports the ratios.
#
#   scripts/bench-llm.sh [more `shopgraph bench llm` flags]
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
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
    echo "bench: building llama-cpp-python into $venv (about 5 minutes)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet llama-cpp-python
fi
cargo build --locked -q -p shopgraph
cargo run --locked -q -p shopgraph -- bench llm \
    --models "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf,$cache/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" \
    --peer-python "$venv/bin/python" "$@"
