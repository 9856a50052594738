#!/usr/bin/env bash
# The Telegram bot's own cost: searches through the bot (32 chats against a Bot API
# on loopback, the real dispatcher, store and index) against the same searches through
# the HTTP search API, the peer in the same run. Prints throughput, p50 and p99 of
# each, their ratio, and the server's memory.
#
#   scripts/bench-telegram.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/setup.sh
cargo test --workspace --locked --test e2e -- --ignored --nocapture --exact \
    telegram::bench_search_through_the_bot_and_through_the_api 2>&1 |
    grep -E '^(telegram|peer|  [0-9]|ratio|server)'
