#!/usr/bin/env bash
# The relay's throughput, CPU and peak RSS against its in-flight window (relay.max_inflight_bytes, with
# relay.max_inflight_messages out of the way), each window one tests/bench/relay_throughput.sh run with its own
# kcat and pg_recvlogical references: the curve the default window is chosen from (docs/benchmarks.md).
#
#   tests/bench/relay_window_curve.sh [N] [ROWS_PER_TRANSACTION] [WINDOWS]      (services must be running)
#
# WINDOWS is a space-separated list of sizes (default "1MiB 2MiB 4MiB 8MiB 16MiB 64MiB").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib.sh"
n=${1:-200000}
per_tx=${2:-100}
windows=${3:-1MiB 2MiB 4MiB 8MiB 16MiB 64MiB}

rows=()
for w in $windows; do
  log "window $w"
  out=$(OUTBOX_BENCH_MAX_INFLIGHT_MESSAGES=10000000 OUTBOX_BENCH_MAX_INFLIGHT_BYTES=$w \
    "$root/tests/bench/relay_throughput.sh" "$n" "$per_tx")
  echo "$out"
  rows+=("$w|$(echo "$out" | tr '\n' '|')")
done

echo
echo "| window | relay events/s | relay / kcat | relay / source | CPU per event | peak RSS |"
echo "|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
  python3 - "$r" <<'PY'
import re, sys
w, text = sys.argv[1].split("|", 1)
rate = re.search(r"relay:\s+([\d,]+) events/s", text).group(1)
rss = re.search(r"peak RSS ([\d.]+) MiB", text).group(1)
kcat, source = re.search(r"ratio:\s+([\d.]+) of the bare producer, ([\d.]+) of the bare source", text).groups()
cpu = re.search(r"([\d.]+) us/event", text).group(1)
print(f"| {w} | {rate} | {kcat} | {source} | {cpu} µs | {rss} MiB |")
PY
done
