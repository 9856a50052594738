#!/usr/bin/env python3
"""A bounded soak test of `shopgraph serve` replicas: steady mixed load for N seconds.

What it measures, against one or more replicas (``--targets``) sharing one store:

* storefront traffic from ``--concurrency`` workers, each with its own keep-alive
  connection to every replica, requests going round-robin over the replicas, mixed
  by fixed weights (each worker's choices seeded by its index, so a run repeats):
    - 50% ``GET /api/v1/users/USER/recommendations?n=20``
    - 25% ``GET /api/v1/search?q=QUERY&per_page=20``
    - 25% ``POST /api/v1/events`` (a ``view`` of a sku by a shopper, a unique key)
* the customer's chat from ``--chat-concurrency`` workers: a guest session
  (``POST /api/v1/chat/sessions``), then questions (``POST /api/v1/chat/messages``)
  whose server-sent-event answer is read whole; a new session every 5 messages.
  A session's messages go to the replica that made it (its token is that replica's
  unless the replicas share a session secret); sessions go round-robin.
* per kind and overall: requests, errors (any status but 200, any exception, any
  timeout; a chat answer without ``event: done`` too), throughput and latency
  percentiles (nearest rank over every request);
* every ``--sample-secs``: each replica's resident memory (VmRSS of ``--pids``) and the
  requests completed in the window, so a leak or a slowdown shows as a trend; and the
  memory growth after warm-up: last sample / first sample at or after 20% of the run,
  minus 1.

It prints a summary and writes the figures as JSON (``--out``). It judges nothing: the
exit status is 0 whatever the figures, 2 for bad arguments.

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import random
import sys
import threading
import time
import urllib.parse
from array import array
from dataclasses import dataclass, field

STOREFRONT_TIMEOUT_S = 60.0
CHAT_TIMEOUT_S = 180.0
MESSAGES_PER_SESSION = 5
MAX_ERROR_SAMPLES = 50
WARMUP_SHARE = 0.2
# After a connection-level failure (refused, reset), a worker waits this long before
# its next request, so a dead replica is not hammered in a tight loop.
BACKOFF_S = 0.1

KINDS = ("recommendations", "search", "events", "chat_session", "chat_message")
QUESTIONS = (
    "How much is The Hobbit?",
    "Do you have books by Stephen King?",
    "Is The Joy Luck Club in stock?",
    "Recommend me a mystery novel",
)


# --- arguments -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A replica: where to connect, and the path prefix of its API (usually empty)."""

    url: str
    scheme: str
    host: str
    port: int
    prefix: str


def parse_target(url: str) -> Target:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) base URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Target(url.strip(), parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", required=True, help="replica base URLs, comma-separated")
    p.add_argument("--key", required=True, help="storefront API key")
    p.add_argument("--users", required=True, help="file: one shopper id a line")
    p.add_argument("--skus", required=True, help="file: one sku a line")
    p.add_argument("--queries", required=True, help="file: one search query a line")
    p.add_argument("--seconds", type=float, default=600, help="how long (default 600)")
    p.add_argument("--concurrency", type=int, default=16, help="storefront workers (16)")
    p.add_argument("--chat-concurrency", type=int, default=1, help="chat workers (1)")
    p.add_argument("--pids", default="", help="the replicas' process ids, in --targets order")
    p.add_argument("--sample-secs", type=float, default=10, help="sampling period (10)")
    p.add_argument("--out", required=True, help="where to write the JSON figures")
    args = p.parse_args(argv)

    try:
        args.targets = [parse_target(u) for u in args.targets.split(",") if u.strip()]
    except ValueError as e:
        p.error(str(e))
    if not args.targets:
        p.error("--targets names no replica")
    try:
        args.pids = [int(x) for x in args.pids.split(",") if x.strip()]
    except ValueError:
        p.error("--pids must be process ids, comma-separated")
    if args.pids and len(args.pids) != len(args.targets):
        p.error("--pids must name one process per target, in the same order")
    if args.seconds <= 0 or args.sample_secs <= 0:
        p.error("--seconds and --sample-secs must be positive")
    if args.concurrency < 0 or args.chat_concurrency < 0:
        p.error("--concurrency and --chat-concurrency must not be negative")
    if args.concurrency + args.chat_concurrency == 0:
        p.error("no workers: --concurrency and --chat-concurrency are both 0")
    # Checked now, not after the run: a run's figures must have somewhere to go.
    out_dir = os.path.dirname(os.path.abspath(args.out))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        p.error(f"--out: {e}")
    if not os.access(out_dir, os.W_OK):
        p.error(f"--out: cannot write in {out_dir}")
    for name in ("users", "skus", "queries"):
        path = getattr(args, name)
        try:
            lines = read_lines(path)
        except OSError as e:
            p.error(f"--{name}: {e}")
        if not lines and args.concurrency > 0:
            p.error(f"--{name}: {path} has no lines")
        setattr(args, name + "_list", lines)
    return args


# --- what was seen -------------------------------------------------------------------


@dataclass
class KindStats:
    count: int = 0
    errors: int = 0
    latencies_ms: array = field(default_factory=lambda: array("d"))


class Recorder:
    """Every request's outcome, shared by the workers (one lock; cheap next to HTTP)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds = {k: KindStats() for k in KINDS}
        self.error_samples: list[dict] = []
        self.completed = 0
        self.failed = 0
        self.started = time.monotonic()

    def ok(self, kind: str, latency_ms: float) -> None:
        with self.lock:
            s = self.kinds[kind]
            s.count += 1
            s.latencies_ms.append(latency_ms)
            self.completed += 1

    def error(self, kind: str, latency_ms: float, status: int | None, message: str) -> None:
        with self.lock:
            s = self.kinds[kind]
            s.count += 1
            s.errors += 1
            s.latencies_ms.append(latency_ms)
            self.completed += 1
            self.failed += 1
            if len(self.error_samples) < MAX_ERROR_SAMPLES:
                self.error_samples.append({
                    "at_s": round(time.monotonic() - self.started, 3),
                    "kind": kind,
                    "status": status,
                    "message": " ".join(message.split())[:200],
                })

    def totals(self) -> tuple[int, int]:
        with self.lock:
            return self.completed, self.failed


# --- HTTP ------------------------------------------------------------------------------


class Connections:
    """One keep-alive connection per target, for one worker."""

    def __init__(self, targets: list[Target], timeout: float) -> None:
        self.targets = targets
        self.conns: list[http.client.HTTPConnection] = [
            self._open(t, timeout) for t in targets
        ]

    @staticmethod
    def _open(t: Target, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if t.scheme == "https" else http.client.HTTPConnection
        return cls(t.host, t.port, timeout=timeout)

    def request(self, i: int, method: str, path: str, headers: dict[str, str],
                body: bytes | None = None) -> tuple[int, bytes]:
        """Sends one request to target `i` and reads the whole answer. On any failure
        the connection is closed (the next request opens it again) and the error raised."""
        conn = self.conns[i]
        try:
            conn.request(method, self.targets[i].prefix + path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.will_close:
                conn.close()
            return response.status, data
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        for c in self.conns:
            c.close()


def describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return f"timeout: {e}"
    return f"{type(e).__name__}: {e}"


def timed(recorder: Recorder, kind: str, send, judge=None) -> bytes | None:
    """Runs `send()` (returning status and body), records its latency and outcome, and
    returns the body of a success, None otherwise. `judge(body)` may refuse a 200 by
    returning a reason."""
    start = time.monotonic()
    try:
        status, body = send()
    except Exception as e:  # noqa: BLE001 - every failure is a counted error
        recorder.error(kind, (time.monotonic() - start) * 1000, None, describe(e))
        time.sleep(BACKOFF_S)
        return None
    latency_ms = (time.monotonic() - start) * 1000
    if status != 200:
        recorder.error(kind, latency_ms, status, body[:200].decode("utf-8", "replace"))
        return None
    reason = judge(body) if judge else None
    if reason:
        recorder.error(kind, latency_ms, status, reason)
        return None
    recorder.ok(kind, latency_ms)
    return body


# --- workers ---------------------------------------------------------------------------


def storefront_worker(index: int, args: argparse.Namespace, run_id: str,
                      recorder: Recorder, deadline: float, stop: threading.Event) -> None:
    rng = random.Random(index)
    conns = Connections(args.targets, STOREFRONT_TIMEOUT_S)
    auth = {"Authorization": f"Bearer {args.key}"}
    post = {**auth, "Content-Type": "application/json"}
    targets = itertools.cycle(range(len(args.targets)))
    try:
        for n in itertools.count():
            if stop.is_set() or time.monotonic() >= deadline:
                break
            t = next(targets)
            roll = rng.random()
            user = rng.choice(args.users_list)
            if roll < 0.50:
                path = f"/api/v1/users/{urllib.parse.quote(user, safe='')}/recommendations?n=20"
                timed(recorder, "recommendations", lambda: conns.request(t, "GET", path, auth))
            elif roll < 0.75:
                q = urllib.parse.quote(rng.choice(args.queries_list), safe="")
                path = f"/api/v1/search?q={q}&per_page=20"
                timed(recorder, "search", lambda: conns.request(t, "GET", path, auth))
            else:
                event = {
                    "key": f"soak-{run_id}-{index}-{n}",
                    "user": user,
                    "product": rng.choice(args.skus_list),
                    "kind": "view",
                    "at_ms": int(time.time() * 1000),
                }
                body = json.dumps(event).encode()
                timed(recorder, "events",
                      lambda: conns.request(t, "POST", "/api/v1/events", post, body))
    finally:
        conns.close()


def chat_done(body: bytes) -> str | None:
    if b"event: done" in body:
        return None
    if b"event: error" in body:
        start = body.find(b"event: error")
        return "answer ended in an error event: " + body[start:start + 200].decode(
            "utf-8", "replace")
    return "answer without an `event: done`"


def chat_worker(index: int, args: argparse.Namespace, recorder: Recorder,
                deadline: float, stop: threading.Event) -> None:
    conns = Connections(args.targets, CHAT_TIMEOUT_S)
    json_headers = {"Content-Type": "application/json"}
    targets = itertools.cycle(range(len(args.targets)))
    # Offset so that two chat workers do not start on the same replica.
    for _ in range(index % len(args.targets)):
        next(targets)
    questions = itertools.cycle(QUESTIONS)
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            t = next(targets)
            body = timed(recorder, "chat_session",
                         lambda: conns.request(t, "POST", "/api/v1/chat/sessions",
                                               json_headers, b"{}"),
                         judge=lambda b: None if session_token(b) else "no token in the answer")
            if body is None:
                time.sleep(1.0)  # guests' sessions are rate-limited by address
                continue
            token = session_token(body)
            headers = {**json_headers, "Authorization": f"Bearer {token}",
                       "Accept": "text/event-stream"}
            for _ in range(MESSAGES_PER_SESSION):
                if stop.is_set() or time.monotonic() >= deadline:
                    break
                message = json.dumps({"text": next(questions)}).encode()
                timed(recorder, "chat_message",
                      lambda: conns.request(t, "POST", "/api/v1/chat/messages", headers,
                                            message),
                      judge=chat_done)
    finally:
        conns.close()


def session_token(body: bytes) -> str | None:
    try:
        token = json.loads(body).get("token")
    except (ValueError, AttributeError):
        return None
    return token if isinstance(token, str) and token else None


# --- memory and throughput over time -------------------------------------------------


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


class Sampler(threading.Thread):
    """Every `period` seconds: each pid's RSS, and the requests done in the window."""

    def __init__(self, pids: list[int], period: float, recorder: Recorder) -> None:
        super().__init__(name="sampler", daemon=True)
        self.pids, self.period, self.recorder = pids, period, recorder
        self.samples: list[dict] = []
        self.finished = threading.Event()
        self._last = (0.0, 0, 0)

    def sample(self) -> None:
        now = time.monotonic() - self.recorder.started
        completed, failed = self.recorder.totals()
        last_t, last_completed, last_failed = self._last
        window = now - last_t
        done = completed - last_completed
        self.samples.append({
            "t_s": round(now, 2),
            "rss_mib": [rss_mib(p) for p in self.pids],
            "requests": done,
            "errors": failed - last_failed,
            "rps": round(done / window, 2) if window > 0 else None,
        })
        self._last = (now, completed, failed)

    def run(self) -> None:
        self.sample()
        while not self.finished.wait(self.period):
            self.sample()

    def stop(self) -> None:
        self.finished.set()
        self.join()
        self.sample()  # the last one, at the end of the run


def memory_growth(samples: list[dict], replicas: int, total_s: float) -> list[float | None]:
    """Per replica: last RSS / RSS at the first sample at or after 20% of the run, - 1."""
    cutoff = WARMUP_SHARE * total_s
    growth: list[float | None] = []
    for r in range(replicas):
        series = [(s["t_s"], s["rss_mib"][r]) for s in samples if s["rss_mib"][r] is not None]
        base = next((rss for t, rss in series if t >= cutoff), None)
        if not series or not base:
            growth.append(None)
            continue
        growth.append(round(series[-1][1] / base - 1, 4))
    return growth


# --- figures -----------------------------------------------------------------------------


def percentile(sorted_ms: list[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least p% of values at or below it."""
    if not sorted_ms:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_ms)))
    return round(sorted_ms[rank - 1], 2)


def figures(count: int, errors: int, latencies: list[float], seconds: float) -> dict:
    ordered = sorted(latencies)
    return {
        "count": count,
        "errors": errors,
        "error_rate": round(errors / count, 5) if count else None,
        "throughput_rps": round(count / seconds, 2) if seconds > 0 else None,
        "p50_ms": percentile(ordered, 50),
        "p90_ms": percentile(ordered, 90),
        "p99_ms": percentile(ordered, 99),
        "max_ms": round(ordered[-1], 2) if ordered else None,
    }


def report(args: argparse.Namespace, run_id: str, recorder: Recorder, sampler: Sampler,
           total_s: float) -> dict:
    kinds = {k: figures(s.count, s.errors, s.latencies_ms, total_s)
             for k, s in recorder.kinds.items()}
    everything = list(itertools.chain.from_iterable(s.latencies_ms
                                                    for s in recorder.kinds.values()))
    overall = figures(sum(s.count for s in recorder.kinds.values()),
                      sum(s.errors for s in recorder.kinds.values()), everything, total_s)
    return {
        "run_id": run_id,
        "targets": [t.url for t in args.targets],
        "pids": args.pids,
        "seconds_requested": args.seconds,
        "total_seconds": round(total_s, 2),
        "concurrency": args.concurrency,
        "chat_concurrency": args.chat_concurrency,
        "kinds": kinds,
        "overall": overall,
        "memory": {"sample_secs": args.sample_secs, "series": sampler.samples},
        "memory_growth_after_warmup": memory_growth(sampler.samples, len(args.pids), total_s),
        "error_samples": recorder.error_samples,
    }


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def print_summary(r: dict) -> None:
    print(f"\nsoak {r['run_id']}: {r['total_seconds']:.0f} s over {len(r['targets'])} "
          f"replica(s), {r['concurrency']} storefront + {r['chat_concurrency']} chat workers")
    header = f"{'kind':<16}{'count':>9}{'errors':>8}{'req/s':>9}{'p50 ms':>9}" \
             f"{'p90 ms':>9}{'p99 ms':>10}{'max ms':>10}"
    print(header)
    rows = [*r["kinds"].items(), ("overall", r["overall"])]
    for name, f in rows:
        if f["count"] == 0 and name != "overall":
            continue
        print(f"{name:<16}{f['count']:>9}{f['errors']:>8}{fmt(f['throughput_rps']):>9}"
              f"{fmt(f['p50_ms']):>9}{fmt(f['p90_ms']):>9}{fmt(f['p99_ms']):>10}"
              f"{fmt(f['max_ms']):>10}")
    series = r["memory"]["series"]
    for i, pid in enumerate(r["pids"]):
        rss = [s["rss_mib"][i] for s in series if s["rss_mib"][i] is not None]
        growth = r["memory_growth_after_warmup"][i]
        if rss:
            print(f"replica {i} (pid {pid}): RSS first {rss[0]:.0f} MiB, max {max(rss):.0f} MiB, "
                  f"last {rss[-1]:.0f} MiB; growth after warm-up "
                  f"{'-' if growth is None else f'{growth * 100:+.1f}%'}")
        else:
            print(f"replica {i} (pid {pid}): no memory readings")
    rps = [s["rps"] for s in series if s["rps"] is not None]
    if rps:
        print(f"throughput per {r['memory']['sample_secs']:g} s window: min {min(rps):.1f}, "
              f"max {max(rps):.1f} req/s")
    for e in r["error_samples"][:5]:
        print(f"error at {e['at_s']:.1f} s, {e['kind']}, status {e['status']}: {e['message']}")
    if len(r["error_samples"]) > 5:
        print(f"... {len(r['error_samples']) - 5} more error samples in the JSON")


# --- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}"
    recorder = Recorder()
    deadline = recorder.started + args.seconds
    stop = threading.Event()
    sampler = Sampler(args.pids, args.sample_secs, recorder)
    sampler.start()
    workers = [
        threading.Thread(target=storefront_worker, name=f"storefront-{i}",
                         args=(i, args, run_id, recorder, deadline, stop), daemon=True)
        for i in range(args.concurrency)
    ] + [
        threading.Thread(target=chat_worker, name=f"chat-{i}",
                         args=(i, args, recorder, deadline, stop), daemon=True)
        for i in range(args.chat_concurrency)
    ]
    for w in workers:
        w.start()
    print(f"soak {run_id}: {len(workers)} workers for {args.seconds:g} s against "
          f"{', '.join(t.url for t in args.targets)}", flush=True)
    try:
        for w in workers:
            # In-flight requests end by their timeouts, so this wait is bounded.
            while w.is_alive():
                w.join(timeout=1.0)
    except KeyboardInterrupt:
        print("soak: interrupted; finishing in-flight requests", file=sys.stderr)
        stop.set()
        for w in workers:
            w.join()
    total_s = time.monotonic() - recorder.started
    sampler.stop()
    return report(args, run_id, recorder, sampler, total_s)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_summary(result)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
