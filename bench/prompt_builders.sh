#!/usr/bin/env bash
# Requests per second with exact-length prompts built by a real tokenizer against prompts that need none, against
# the simulator in a process of its own: one prompt-building thread once capped such a run near 2,000 req/s with no
# word. Prints each run's rate, the share of the run its requests waited for a prompt, and whether bench judged
# itself the limit (run.json's client.client_bound).
#
# Usage: bench/prompt_builders.sh [BINARY]   (default: target/release/infer-doctor)
# Environment: REQUESTS (20000), CONCURRENCY (256), INPUT_TOKENS (512), TOKENIZER (fixtures/tokenizers/claude-v1).
set -euo pipefail

binary=${1:-target/release/infer-doctor}
requests=${REQUESTS:-20000}
concurrency=${CONCURRENCY:-256}
input_tokens=${INPUT_TOKENS:-512}
tokenizer=${TOKENIZER:-fixtures/tokenizers/claude-v1}

. "$(dirname "$0")/lib.sh"
start_sim "$binary" --model tiny

# One run; prints its request rate, prompt-wait share and client_bound flag.
measure() {
    rm -rf "$work/out"
    "$binary" bench --url "$url" --num-requests "$requests" --concurrency "$concurrency" \
        --input-tokens "$input_tokens" --output-tokens 2 -q --out "$work/out" "$@" >/dev/null 2>"$work/bench.err" ||
        { cat "$work/bench.err" >&2; exit 1; }
    python3 - "$work/out/run.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(f'{s["throughput"]["request_rate"]:10.0f} {s["client"]["prompt_wait_share"] * 100:13.1f}% '
      f'{str(s["client"]["client_bound"]).lower():>13}')
PY
}

echo "cores: $(nproc), $requests requests, $concurrency users, $input_tokens-token prompts, 2 output tokens"
printf '%-34s %10s %14s %13s\n' prompts "req/s" "prompt wait" "client_bound"
printf '%-34s %s\n' "synthetic (no tokenizer)" "$(measure)"
printf '%-34s %s\n' "exact, $(basename "$tokenizer") tokenizer" "$(measure --tokenizer "$tokenizer")"
