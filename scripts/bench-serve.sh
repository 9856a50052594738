#!/usr/bin/env bash
# The storefront API under load: `shopgraph serve` over the Book-Crossing bookstore
# (imported into the embedded SQLite store by scripts/run.sh, or here), and wrk from a
# second process, 64 connections for 30 seconds each:
#   1. GET /healthz: the server with nothing behind it, the peer in this run;
#   2. GET /api/v1/users/USER/recommendations?n=20 over 2,000 readers with history,
#      each request a random one (Lua).
# Prints throughput, p50 and p99 of each, their ratio, and the server's memory.
#
#   scripts/bench-serve.sh [SECONDS]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${SHOPGRAPH_CACHE:-$repo/.cache}"
db="sqlite:$cache/shopgraph.db"
seconds="${1:-30}"
scripts/setup.sh
command -v wrk >/dev/null 2>&1 || {
    echo "bench: installing wrk with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
# The tests' build (dependencies at opt-level 3, shopgraph's crates at 2), the one CI
# caches: built as `cargo test --workspace` builds it, so nothing is compiled twice.
cargo test --workspace --locked --no-run -q 2>/dev/null
bin="${CARGO_TARGET_DIR:-$repo/target}/debug/shopgraph"
shopgraph() { "$bin" "$@"; }

marker="$cache/.bookstore-imported-$(echo "$db" | sha256sum | cut -c1-12)"
if [ ! -f "$marker" ]; then
    shopgraph import bookcrossing --data-dir "$cache/data" --db "$db"
    touch "$marker"
fi
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 - "$cache/shopgraph.db" >"$work/users.txt" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("""SELECT u.external_id FROM users u JOIN events e ON e.user_id = u.id
                     GROUP BY u.id HAVING COUNT(*) >= 3 ORDER BY u.id LIMIT 2000""")
for (external,) in rows:
    print(external)
PY
key="bench-$(date +%s)-$RANDOM"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SHOPGRAPH_API_KEYS="storefront:bench:$key" RUST_LOG=warn \
    "$bin" serve --addr "127.0.0.1:$port" --db "$db" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 1800); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 1
done
curl -fs "http://127.0.0.1:$port/readyz"; echo
cat >"$work/recs.lua" <<LUA
local users = {}
for line in io.lines("$work/users.txt") do users[#users + 1] = line end
math.randomseed(42)
request = function()
  local u = users[math.random(#users)]
  return wrk.format("GET", "/api/v1/users/" .. u .. "/recommendations?n=20", { ["Authorization"] = "Bearer $key" })
end
LUA
# Warm: every reader once, so the product cache holds what the lists show.
wrk -t2 -c16 -d10s -s "$work/recs.lua" "http://127.0.0.1:$port" >/dev/null
run() { wrk -t2 -c64 -d"${seconds}s" --latency "$@"; }
echo "--- peer: GET /healthz, 64 connections, ${seconds}s"
run "http://127.0.0.1:$port/healthz" | tee "$work/peer.txt"
echo "--- GET /api/v1/users/USER/recommendations?n=20, 64 connections, ${seconds}s"
run -s "$work/recs.lua" "http://127.0.0.1:$port" | tee "$work/recs.txt"
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" \
    "http://127.0.0.1:$port/api/v1/users/$(head -1 "$work/users.txt")/recommendations?n=20")
python3 - "$work/peer.txt" "$work/recs.txt" "/proc/$server/status" "$status" <<'PY'
import re, sys
def read(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", text)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return rps, pct(50), pct(99), int(errors.group(1)) if errors else 0
peer, recs = read(sys.argv[1]), read(sys.argv[2])
mem = dict(re.findall(r"(Vm\w+):\s+(\d+) kB", open(sys.argv[3]).read()))
print(f"\nstorefront recommendations (top 20) at 64 connections: {recs[0]:,.0f} requests/s, p50 {recs[1]:.2f} ms, p99 {recs[2]:.2f} ms, non-2xx {recs[3]} (a sample answered {sys.argv[4]})")
print(f"peer /healthz:                                        {peer[0]:,.0f} requests/s, p50 {peer[1]:.2f} ms, p99 {peer[2]:.2f} ms")
print(f"ratio recommendations / healthz: throughput {recs[0] / peer[0]:.2f}x, p99 {recs[2] / peer[2]:.1f}x")
print(f"server memory: resident {int(mem['VmRSS']) / 1024:.0f} MiB, peak {int(mem['VmHWM']) / 1024:.0f} MiB")
PY
