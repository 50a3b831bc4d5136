#!/usr/bin/env bash
# What `collect` costs beyond its probe, and how big its bundle is: the issue's targets are the probe's time plus
# at most 5 s, and under 10 MB for a 60 s probe. The simulator (with a log, so the engine log is gathered too)
# stands in for the server; the host's own nvidia-smi, journalctl and /proc are read as they are.
#
# Usage: bench/collect_cost.sh [BINARY]   (default: target/release/infer-doctor)
# Environment: DURATION (60s), CONCURRENCY (32).
set -euo pipefail

binary=${1:-target/release/infer-doctor}
duration=${DURATION:-60s}
concurrency=${CONCURRENCY:-32}

. "$(dirname "$0")/lib.sh"
start_sim "$binary" --scenario kv-saturated

# The probe's own span: per part (single-user, loaded), from its first send to its last end, on that part's clock.
probe_seconds() {
    for part in single loaded; do
        awk 'match($0, /"sent_us":[0-9]+/) { s = substr($0, RSTART + 10, RLENGTH - 10) + 0; if (!n++ || s < lo) lo = s }
             match($0, /"end_us":[0-9]+/) { e = substr($0, RSTART + 9, RLENGTH - 9) + 0; if (e > hi) hi = e }
             END { printf "%.3f\n", (hi - lo) / 1e6 }' "$1/$part/requests.jsonl"
    done | awk '{ t += $1 } END { printf "%.1f", t }'
}

for form in dir tar.gz; do
    out="$work/bundle"
    [ "$form" = tar.gz ] && out="$work/bundle.tar.gz"
    started=$(date +%s.%N)
    "$binary" collect --quiet --url "$url" --duration "$duration" --concurrency "$concurrency" --out "$out" >/dev/null
    took=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    size=$(du -sb "$out" | cut -f1)
    if [ "$form" = dir ]; then
        probe=$(probe_seconds "$out")
        printf 'directory: collect %s s, of which the probe %s s: %s s beyond it; %.1f MB\n' "$took" "$probe" \
            "$(awk -v a="$took" -v b="$probe" 'BEGIN { printf "%.1f", a - b }')" "$(awk -v s="$size" 'BEGIN { print s / 1e6 }')"
        rm -rf "$out"
    else
        printf 'tarball:   collect %s s; %.1f MB\n' "$took" "$(awk -v s="$size" 'BEGIN { print s / 1e6 }')"
    fi
done
