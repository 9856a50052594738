#!/usr/bin/env bash
# A bounded soak: two `shopgraph serve` replicas on one PostgreSQL schema holding the
# Book-Crossing bookstore, under steady mixed load for SECONDS (default 600) from
# scripts/soak.py:
#   16 storefront workers, round-robin over the replicas: recommendations (50%),
#      search (25%), behaviour events (25%), each on keep-alive connections;
#   1 chat worker: guest sessions, 5 questions each, answers read as event streams.
# Replica A runs the language model; replica B asks A's /v1/chat/completions for it
# (as replicas would ask a GPU host). Each follows the other's writes (follow_ms).
# Prints per kind requests, errors, throughput, p50/p90/p99/max; each replica's memory
# over time and its growth after warm-up; and the WARN/ERROR lines each replica logged.
# The figures go to $SHOPGRAPH_CACHE/soak-DATE.json (the logs beside them); the script
# judges nothing.
#
# A fresh schema soak_PID in postgres://postgres@127.0.0.1:5432/test each run (dropped at
# exit): the import of Book-Crossing into it, and each replica's search index, are built
# from scratch, which takes minutes before the load starts.
#
#   scripts/bench-soak.sh [SECONDS]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${SHOPGRAPH_CACHE:-$repo/.cache}"
seconds="${1:-600}"
url="postgres://postgres@127.0.0.1:5432/test"
schema="soak_$$"
scripts/setup.sh
scripts/ensure-postgres.sh
# The tests' build (dependencies at opt-level 3, shopgraph's crates at 2), the one CI
# caches: built as `cargo test --workspace` builds it, so nothing is compiled twice.
cargo test --workspace --locked --no-run -q 2>/dev/null
bin="${CARGO_TARGET_DIR:-$repo/target}/debug/shopgraph"
db=(--db "$url" --pg-schema "$schema")
sql() { psql -h 127.0.0.1 -U postgres -d test -v ON_ERROR_STOP=1 -Atq -c "$1"; }

work="$(mktemp -d)"
# Stops a replica: SIGTERM, then SIGKILL if it is still there after 30 seconds.
stop() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 1 30); do kill -0 "$1" 2>/dev/null || return 0; sleep 1; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    stop "${replica_b:-}"
    stop "${replica_a:-}"
    psql -h 127.0.0.1 -U postgres -d test -qc "DROP SCHEMA IF EXISTS $schema CASCADE" \
        >/dev/null 2>&1 || echo "soak: could not drop schema $schema" >&2
    rm -rf "$work"
}
trap cleanup EXIT

echo "soak: importing Book-Crossing into schema $schema" >&2
"$bin" import bookcrossing --data-dir "$cache/data" "${db[@]}"

# Who shops, what they look at, what they search for.
sql "SELECT u.external_id FROM $schema.users u JOIN $schema.events e ON e.user_id = u.id
     GROUP BY u.id, u.external_id HAVING COUNT(*) >= 3 ORDER BY u.id LIMIT 2000" \
    >"$work/users.txt"
sql "SELECT p.sku FROM $schema.products p
     WHERE EXISTS (SELECT 1 FROM $schema.events e WHERE e.product_id = p.id)
     ORDER BY p.id LIMIT 2000" >"$work/skus.txt"
# The first two words of 200 titles of products with events (ones with a letter or
# digit: punctuation alone is an empty query, which search refuses).
sql "SELECT p.title FROM $schema.products p
     WHERE EXISTS (SELECT 1 FROM $schema.events e WHERE e.product_id = p.id)
     ORDER BY p.id LIMIT 400" \
    | awk 'NF { q = $1 (NF > 1 ? " " $2 : ""); if (q ~ /[[:alnum:]]/ && n++ < 200) print q }' \
    >"$work/queries.txt"
for f in users skus queries; do
    [ -s "$work/$f.txt" ] || { echo "soak: no $f in schema $schema" >&2; exit 1; }
done
echo "soak: $(wc -l <"$work/users.txt") users, $(wc -l <"$work/skus.txt") skus, $(wc -l <"$work/queries.txt") queries" >&2

# Both replicas share the session secret, as replicas behind one address must. The
# per-key rate limit is off: the soak measures the server, not the limiter. The
# recommender is refitted every 2 minutes (a shop's default is 10): a soak must show
# that memory comes back to a plateau after each refit, not that it is flat between.
cat >"$work/config.toml" <<TOML
follow_ms = 1000
refit_secs = 120
session_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[rate_limit]
per_key = 0
TOML
key="soak-$(date +%s)-$RANDOM"
read -r port_a port_b < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')

# Starts a replica in the background: NAME PORT [ENV=VALUE...]; its pid in $started.
start() {
    local name="$1" port="$2"
    shift 2
    env SHOPGRAPH_CONFIG="$work/config.toml" SHOPGRAPH_API_KEYS="storefront:soak:$key" \
        SHOPGRAPH_MODEL_DIR="$cache/models/all-MiniLM-L6-v2" \
        SHOPGRAPH_LLM_MODEL="$cache/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" \
        RUST_LOG=warn "$@" \
        "$bin" serve --addr "127.0.0.1:$port" "${db[@]}" \
        --index-dir "$work/search-$name" --snapshot "$work/graph-$name.snapshot" \
        >"$work/$name.log" 2>&1 &
    started=$!
}
# Waits (up to 30 minutes: the search index is built at start) for /readyz to say 200.
ready() {
    local name="$1" port="$2" pid="$3"
    for _ in $(seq 1 1800); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || {
            echo "soak: replica $name exited while starting:" >&2
            tail -n 40 "$work/$name.log" >&2
            exit 1
        }
        sleep 1
    done
    echo "soak: replica $name was not ready after 30 minutes:" >&2
    tail -n 40 "$work/$name.log" >&2
    exit 1
}
echo "soak: starting replica A on port $port_a" >&2
start a "$port_a"
replica_a=$started
ready a "$port_a" "$replica_a"
echo "soak: starting replica B on port $port_b (its model: replica A's)" >&2
start b "$port_b" SHOPGRAPH_LLM_URL="http://127.0.0.1:$port_a/v1" SHOPGRAPH_LLM_API_KEY="$key"
replica_b=$started
ready b "$port_b" "$replica_b"

mkdir -p "$cache"
out="$cache/soak-$(date +%Y%m%d-%H%M%S).json"
python3 scripts/soak.py \
    --targets "http://127.0.0.1:$port_a,http://127.0.0.1:$port_b" \
    --pids "$replica_a,$replica_b" \
    --key "$key" \
    --users "$work/users.txt" --skus "$work/skus.txt" --queries "$work/queries.txt" \
    --seconds "$seconds" --concurrency 16 --chat-concurrency 1 \
    --out "$out"

echo
for name in a b; do
    pid_var="replica_$name"
    kill -0 "${!pid_var}" 2>/dev/null || echo "replica ${name^^}: EXITED during the soak"
    count=$(grep -cE 'WARN|ERROR' "$work/$name.log" || true)
    echo "replica ${name^^}: $count log lines with WARN or ERROR (log: ${out%.json}-$name.log)"
    cp "$work/$name.log" "${out%.json}-$name.log"
done
