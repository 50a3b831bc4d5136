#!/usr/bin/env bash
# What `bench --self-test` says a token event costs the client, beside the same run measured from outside: bench
# against the simulator in a process of its own, its CPU read by /usr/bin/time -v, its events from run.json.
#
# Usage: bench/selftest_vs_outside.sh [BINARY]   (default: target/release/infer-doctor)
# Environment: SECONDS_PER_RUN (10), ROUNDS (2). The two figures should agree within the machine's noise.
set -euo pipefail

binary=${1:-target/release/infer-doctor}
per_run=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-2}
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 2; }

. "$(dirname "$0")/lib.sh"
# The self-test's "user's run": 1,000 users, 20 tokens each, the tiny model with room for all of them.
start_sim "$binary" --model tiny --max-num-seqs 1024

outside() {
    rm -rf "$work/out"
    /usr/bin/time -v -o "$work/time" "$binary" bench --url "$url" --concurrency 1000 --output-tokens 20 \
        --ignore-eos --duration "${per_run}s" -q "$@" >/dev/null 2>"$work/bench.err" ||
        { cat "$work/bench.err" >&2; exit 1; }
    local cpu events
    cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { print s }' "$work/time")
    events=$(python3 -c 'import json, sys
t = json.load(open(sys.argv[1]))["summary"]["tokens"]
print(round(t["events_per_token"] * t["output_total"]))' "$work/out/run.json")
    awk -v c="$cpu" -v e="$events" -v s="$per_run" \
        'BEGIN { printf "%.0f events/s, client CPU per token event %.2f µs\n", e / s, c * 1e6 / e }'
}

for round in $(seq "$rounds"); do
    echo "round $round, from outside (bench in a process of its own, --out on):"
    echo "  $(outside --out "$work/out")"
    echo "round $round, bench --self-test:"
    "$binary" bench --self-test --self-test-duration "${per_run}s" -q | grep -A1 "^a user's run" | tail -n1
done
