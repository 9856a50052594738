#!/usr/bin/env bash
# The main job (README): fetches the data and models, builds shopgraph, loads the
# Book-Crossing bookstore into the embedded SQLite store (once; later runs find it
# there), builds its knowledge graph (a snapshot beside the store, kept current), and
# shows what the store holds, what the graph can say, search (words over the
# bookstore, words and meaning together over the judged demo shop in graph_data/), and
# the recommenders' evaluation on MovieLens-100K; then serves the platform (storefront
# and agent APIs, the chat page, the agent console) until stopped.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${SHOPGRAPH_CACHE:-$repo/.cache}"
db="${SHOPGRAPH_DATABASE_URL:-sqlite:$cache/shopgraph.db}"

command -v cargo >/dev/null 2>&1 || {
    echo "run: cargo is missing; shopgraph needs Rust 1.94 or newer (rustup)" >&2
    exit 1
}
scripts/setup.sh
# Built as `cargo test --workspace` builds it (the build CI caches), so the demo and the
# tests never compile the model runtime twice with different features.
cargo test --workspace --locked --no-run -q 2>/dev/null
shopgraph() { "${CARGO_TARGET_DIR:-$repo/target}/debug/shopgraph" "$@"; }

# Importing is idempotent, but the bookstore is 1.7 million rows: do it once.
marker="$cache/.bookstore-imported-$(echo "$db" | sha256sum | cut -c1-12)"
if [ ! -f "$marker" ]; then
    shopgraph import bookcrossing --data-dir "$cache/data" --db "$db"
    touch "$marker"
fi
shopgraph stats --db "$db"
graph=(--db "$db" --snapshot "$cache/graph.snapshot")
shopgraph graph stats "${graph[@]}"
echo "--- books like The Hobbit, and why:"
shopgraph graph similar 9780345339683 --k 5 "${graph[@]}"
echo "--- why The Hobbit for reader bx:78553:"
shopgraph graph explain bx:78553 9780345339683 --k 2 "${graph[@]}"
echo "--- search the bookstore (words; typos forgiven):"
search=(--db "$db" --index-dir "$cache/search-bookstore" --model-dir "$cache/models/all-MiniLM-L6-v2")
shopgraph search "tolkein hobit" --mode bm25 --per-page 5 "${search[@]}"
shopgraph search "harry potter" --mode bm25 --per-page 3 --facets "${search[@]}"
# The demo shop: 88 products, English and Chinese. Hybrid search embeds them once.
shop="sqlite:$cache/demo-shop.db"
shopgraph import graph_data/search/catalog --db "$shop" >/dev/null
demo=(--db "$shop" --index-dir "$cache/search-demo-shop" --model-dir "$cache/models/all-MiniLM-L6-v2")
echo "--- search the demo shop (words and meaning):"
shopgraph search "something to keep my coffee hot on the way to work" --per-page 3 "${demo[@]}"
shopgraph search "降噪耳机" --per-page 3 "${demo[@]}"
shopgraph search "running shoes" --in-stock --max-price 140 --facets --per-page 3 "${demo[@]}"
echo "--- recommenders on MovieLens-100K, tuned on validation, scored once on test; the generators that train in seconds"
echo "---  (the sequence and fusion models train for minutes: shopgraph eval; all data sets and the peers: scripts/bench-recommend.sh):"
shopgraph eval --dataset ml-100k --data-dir "$cache/data" --splits-dir "$cache/splits" \
    --model-dir "$cache/models/all-MiniLM-L6-v2" --models pop,knn,ease,als,bpr,content,graph
echo "--- recommendations with their explanations (EASE ranks, the knowledge graph explains): a user, a guest's session, interests alone:"
shopgraph recommend --data-dir "$cache/data" --user ml-100k:1 -n 5
shopgraph recommend --data-dir "$cache/data" --session ml-100k:50,ml-100k:181 --category movies/comedy -n 3
shopgraph recommend --data-dir "$cache/data" --cache-dir "$cache/splits" --model-dir "$cache/models/all-MiniLM-L6-v2" \
    --interests "space adventure,romantic comedy=0.5" -n 3
echo "--- (hybrid search over the whole bookstore embeds its 271k books once, about 15 minutes here:"
echo "---  shopgraph search \"a boy wizard at boarding school\" --db $db)"
echo "--- the platform: the chat at http://${SHOPGRAPH_ADDR:-127.0.0.1:8080}/, the agent console at /console, the API at /docs"
echo "---  (keys for this run are printed below; Ctrl-C stops it):"
exec "${CARGO_TARGET_DIR:-$repo/target}/debug/shopgraph" serve --db "$db" \
    --snapshot "$cache/graph.snapshot" --index-dir "$cache/search-bookstore" \
    --llm-model "$cache/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" --addr "${SHOPGRAPH_ADDR:-127.0.0.1:8080}"
