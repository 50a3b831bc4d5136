#!/usr/bin/env bash
# infer-doctor's trace analysis beside HolisticTraceAnalysis 0.5.0's on the same traces, one after the other: wall
# time and peak resident memory of each, from /usr/bin/time. Both compute the same analyses (temporal, idle,
# kernel types and kernels, overlap, launches, memory copies, queue length, engine steps): HTA through
# crates/trace/tests/hta_reference.py, the script the agreement tests use.
#
# Usage: bench/peers/trace_vs_hta.sh [BINARY]   (default target/release/infer-doctor)
# Environment: SIZES (generated traces, MB: "100 1024"), HTA_TIMEOUT (s, 3600), HTA_MEMORY_GB (16: HTA past it
#              is stopped and reported as such, so it cannot take the machine down). Generated traces are kept
#              in $HOME/.cache/infer-doctor/bench-traces/ and reused. Targets: 20× faster, 1/10 of HTA's memory.
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=${1:-target/release/infer-doctor}
sizes=${SIZES:-100 1024}
hta_timeout=${HTA_TIMEOUT:-3600}
hta_memory_gb=${HTA_MEMORY_GB:-16}
cache=${INFER_DOCTOR_CACHE:-$HOME/.cache/infer-doctor}/bench-traces
[ -x "$binary" ] || { echo "$binary: build it first (cargo build --release)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 2; }
hta_bin=$(scripts/real-servers/install-hta.sh | tail -n1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

traces=(fixtures/trace/*.json.gz)
mkdir -p "$cache"
for mb in $sizes; do
    file=$cache/vllm-rank0-${mb}mb.json
    [ -s "$file" ] || python3 bench/peers/make_kineto_trace.py --size-mb "$mb" --out "$file"
    traces+=("$file")
done

# Runs a command under /usr/bin/time; prints "SECONDS PEAK_KB", or "failed: WHY" when it did not finish.
measure() {
    if /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err"; then
        cat "$work/time"
    else
        local why
        why=$(grep -v Warning "$work/err" | grep -Eo 'MemoryError|Killed|Terminated|[A-Za-z]+Error' | tail -n1)
        echo "failed: ${why:-exit $(tail -n1 "$work/time")} after $(awk '/^[0-9.]+ [0-9]+$/ {print $1 " s"}' "$work/time")"
    fi
}

echo "| trace | size MB | events | infer-doctor s | HTA s | faster | infer-doctor MiB | HTA MiB | less memory |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for trace in "${traces[@]}"; do
    size=$(du -m --apparent-size "$trace" | cut -f1)
    ours=$(measure "$binary" trace "$trace" --format json)
    events=$("$binary" trace "$trace" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ranks"][0]["events"]["events"])')
    # HTA under an address-space cap: past it, Python raises MemoryError instead of the kernel killing at random.
    theirs=$(measure bash -c "ulimit -v $((hta_memory_gb * 1024 * 1024)); HTA_DISABLE_NS_ROUNDING=1 \
        exec timeout $hta_timeout $hta_bin/python crates/trace/tests/hta_reference.py '$trace'")
    read -r ours_s ours_kb <<<"$ours"
    if [[ $theirs == failed* ]]; then
        printf "| %s | %s | %s | %s | %s | | %.0f | (cap %s GiB) | |\n" "$(basename "$trace")" "$size" "$events" \
            "$ours_s" "$theirs" "$((ours_kb / 1024))" "$hta_memory_gb"
        continue
    fi
    read -r hta_s hta_kb <<<"$theirs"
    awk -v n="$(basename "$trace")" -v mb="$size" -v ev="$events" -v os="$ours_s" -v ok="$ours_kb" \
        -v hs="$hta_s" -v hk="$hta_kb" 'BEGIN {
        speed = hs / (os > 0.01 ? os : 0.01); memory = hk / ok
        printf "| %s | %d | %d | %.2f | %.2f | %.0f× %s | %.0f | %.0f | %.0f× %s |\n", n, mb, ev, os, hs,
            speed, (speed >= 20 ? "(pass)" : "(under 20×)"), ok / 1024, hk / 1024, memory,
            (memory >= 10 ? "(pass)" : "(under 10×)")
    }'
done
