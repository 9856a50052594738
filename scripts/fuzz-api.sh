#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document: schemathesis (pinned, in its own
# venv) reads /openapi.json of a `shopgraph serve` over the Book-Crossing excerpt (a
# fresh SQLite store in a temporary directory, an admin key, no rate limits) and sends
# generated requests, valid and invalid, to every operation for a bounded time. Each
# response is checked: no 5xx, and the body matches the schema documented for its
# status. A request that takes longer than 20 seconds is a finding too (a hang).
#
# Not fuzzed: POST /api/v1/chat/messages (a generation on the CPU per request) and
# POST /api/v1/insight/segments, /api/v1/insight/rules (recompute jobs). The chat
# operations want a customer's session token, so with the admin key most of their
# requests end at 403.
#
# The reports (JUnit XML, schemathesis's JSON summary and its NDJSON event stream,
# gzipped) and both logs go to $SHOPGRAPH_CACHE/fuzz-api-DATE/; a summary is printed:
# operations, requests, their statuses, the failures by operation and check, and any
# panic the server logged. Exits non-zero when schemathesis found failures or errors,
# the server panicked, or it died.
#
#   scripts/fuzz-api.sh [SECONDS]     the whole fuzzing budget, default 300
#
# Replay one failure: cd into the report folder and `$cache/venv-schemathesis/bin/st
# replay ID` against a server started the same way (IDs are in st.log).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${SHOPGRAPH_CACHE:-$repo/.cache}"
seconds="${1:-300}"
case "$seconds" in
    '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac
[ "$seconds" -ge 60 ] || { echo "fuzz: give it at least 60 seconds" >&2; exit 2; }
schemathesis_version="4.32.5"
scripts/setup.sh

venv="$cache/venv-schemathesis"
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$schemathesis_version" ]; then
    echo "fuzz: installing schemathesis $schemathesis_version into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "schemathesis==$schemathesis_version"
    echo "$schemathesis_version" >"$venv/.installed"
fi

# The tests' build (dependencies at opt-level 3, shopgraph's crates at 2), the one CI
# caches: built as `cargo test --workspace` builds it, so nothing is compiled twice.
cargo test --workspace --locked --no-run -q 2>/dev/null
bin="${CARGO_TARGET_DIR:-$repo/target}/debug/shopgraph"

out="$cache/fuzz-api-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; [ -f "$work/serve.log" ] && cp "$work/serve.log" "$out/"; rm -rf "$work"' EXIT

echo "fuzz: importing the Book-Crossing excerpt into a fresh store" >&2
"$bin" import "$repo/graph_data/excerpts/bookcrossing" --db "sqlite:$work/shop.db" >/dev/null
printf '[rate_limit]\nper_key = 0\nper_ip = 0\n' >"$work/config.toml"
key="fuzz-$(date +%s)-$RANDOM$RANDOM"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SHOPGRAPH_CONFIG="$work/config.toml" SHOPGRAPH_API_KEYS="admin:fuzz:$key" RUST_LOG=warn \
    "$bin" serve --addr "127.0.0.1:$port" --db "sqlite:$work/shop.db" \
    --index-dir "$work/search" --snapshot "$work/graph.snapshot" \
    --synonyms graph_data/synonyms.txt --model-dir "$cache/models/all-MiniLM-L6-v2" \
    --llm-model "$cache/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" \
    >"$work/serve.log" 2>&1 &
server=$!
echo "fuzz: waiting for the server to be ready (it loads its models)" >&2
for _ in $(seq 1 1800); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 1
done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || {
    echo "fuzz: the server was not ready after 30 minutes" >&2
    tail -50 "$work/serve.log"
    exit 1
}

# schemathesis stops itself at --max-time, checked between requests, so the budget keeps
# a tenth, at least 30 s, for the requests in flight then (up to the 20 s timeout each),
# loading the schema and writing the reports. `timeout` is the hard cap: SIGINT at the
# budget, which schemathesis answers by finishing its reports, SIGKILL 30 s after.
# Examples per operation in each fuzzing round (a sixth of the budget in seconds, 50 for
# the default): small enough that a round reaches every operation well inside the
# budget, after which schemathesis starts another round with new inputs until
# --max-time.
margin=$((seconds / 10))
[ "$margin" -ge 30 ] || margin=30
max_time=$((seconds - margin))
examples=$((seconds / 6))
[ "$examples" -le 200 ] || examples=200
st=(
    "$venv/bin/st" run "http://127.0.0.1:$port/openapi.json"
    --header "Authorization: Bearer $key"
    --checks not_a_server_error,response_schema_conformance
    --exclude-name "POST /api/v1/chat/messages"
    --exclude-name "POST /api/v1/insight/segments"
    --exclude-name "POST /api/v1/insight/rules"
    --max-examples "$examples"
    --max-time "$max_time"
    --request-timeout 20
    --workers 2
    --seed 42
    --generation-database none
    --report junit,json,ndjson
    --report-junit-path "$out/junit.xml"
    --report-json-path "$out/report.json"
    --report-ndjson-path "$out/events.ndjson"
    --no-color
)
echo "fuzz: schemathesis $schemathesis_version for ${seconds}s against 127.0.0.1:$port; reports in $out" >&2
# Run from the report folder: schemathesis keeps its replay data (.schemathesis/) there.
status=0
# With pipefail, the pipeline's status is schemathesis's (or timeout's 124), not tee's.
(cd "$out" && timeout -s INT -k 30 "$seconds" "${st[@]}") 2>&1 | tee "$out/st.log" || status=$?

alive=yes
kill -0 "$server" 2>/dev/null || alive=no
cp "$work/serve.log" "$out/serve.log"
panics=$(grep -c 'panicked' "$out/serve.log" || true)

python3 - "$out" "$status" "$alive" <<'PY'
import collections, json, os, sys
out, status, alive = sys.argv[1], int(sys.argv[2]), sys.argv[3]
report_path, events_path = os.path.join(out, "report.json"), os.path.join(out, "events.ndjson")
report = json.load(open(report_path)) if os.path.exists(report_path) else None

requests = collections.Counter()  # operation -> requests sent
statuses = collections.defaultdict(collections.Counter)  # operation -> "2xx" -> n
failing = collections.Counter()  # (operation, check, code, title) -> failing test cases
errors = collections.Counter()  # (operation, error type) -> n
if os.path.exists(events_path):
    for line in open(events_path):
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        kind, body = next(iter(event.items()))
        if kind == "ScenarioFinished":
            recorder = body.get("recorder", {})
            cases = recorder.get("cases", {})
            def name(case_id):
                value = cases.get(case_id, {}).get("value", {})
                return f"{value['method']} {value['path']}" if value else recorder.get("label", "?")
            # By the operation the request was made for: the methods it does not
            # document (TRACE, PUT, … to see they are refused) count under it.
            label = recorder.get("label", "?")
            for case_id, interaction in recorder.get("interactions", {}).items():
                requests[label] += 1
                response = interaction.get("response")
                code = response.get("status_code") if response else None
                statuses[label][f"{code // 100}xx" if code else "none"] += 1
            for case_id, checks in recorder.get("checks", {}).items():
                for check in checks:
                    if check.get("status") == "failure":
                        f = (check.get("failure_info") or {}).get("failure") or {}
                        failing[(name(case_id), check["name"], f.get("code", ""), f.get("title", ""))] += 1
        elif kind == "NonFatalError":
            value = body.get("value", {})
            errors[(body.get("label", "?"), value.get("type", "?"))] += 1

print("\n=== fuzz-api summary")
if report:
    ops, cases = report["operations"], report["test_cases"]
    print(f"operations: {ops['tested']} tested of {ops['selected']} selected ({ops['total']} in the document)")
    print(f"test cases: {cases['generated']} generated, {cases['with_failures']} failing "
          f"({cases['unique_failures']} unique), {cases['errored']} errored; stop: {report['stop_reason']}, "
          f"{report['running_time']:.0f}s, seed {report['seed']}")
else:
    print("no report.json: schemathesis was killed before it could write one")
total = sum(requests.values())
print(f"requests: {total} to {len(requests)} operations")
if statuses:
    print(f"  {'operation':<62} {'requests':>8}  statuses")
    for op in sorted(statuses, key=lambda o: (o.split(" ", 1)[-1], o)):
        spread = ", ".join(f"{k} {v}" for k, v in sorted(statuses[op].items()))
        print(f"  {op:<62} {requests[op]:>8}  {spread}")
if failing:
    print("failures (operation, check: failing test cases):")
    for (op, check, code, title), n in sorted(failing.items()):
        print(f"  {op:<62} {check} {code} {title}: {n}")
if report and report.get("failures"):
    print("unique failures by check (schemathesis):")
    for f in report["failures"]:
        print(f"  {f['code']} {f['title']}: {f['count']} on {', '.join(f['operations'])}")
if errors:
    print("errors (operation, type: count; a ReadTimeout is a request past 20 s):")
    for (op, kind), n in sorted(errors.items()):
        print(f"  {op:<62} {kind}: {n}")
if not failing and not errors and not (report and report.get("failures")):
    print("failures: none")
print(f"schemathesis exit status: {status}" + (" (stopped by timeout)" if status == 124 else ""))
print(f"server: {'still running' if alive == 'yes' else 'DIED during the run'}")
PY
gzip -f "$out/events.ndjson" 2>/dev/null || true

if [ "$panics" -gt 0 ]; then
    echo "server panics (lines in $out/serve.log: $panics):"
    grep 'panicked' "$out/serve.log" | head -50
else
    echo "server panics: none"
fi
echo "reports: $out"
[ "$status" -eq 0 ] && [ "$alive" = yes ] && [ "$panics" -eq 0 ]
