#!/usr/bin/env bash
# exactly_once against at_least_once in one run: tests/bench/relay_throughput.sh in each mode on the same
# number of rows (each run loads its own), then the ratio of the relay's end-to-end rates.
#
#   tests/bench/relay_eos_ratio.sh [N] [ROWS_PER_TRANSACTION]      (services must be running)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n=${1:-200000}
per_tx=${2:-100}
alo=$(OUTBOX_BENCH_DELIVERY=at_least_once "$here/relay_throughput.sh" "$n" "$per_tx")
eos=$(OUTBOX_BENCH_DELIVERY=exactly_once "$here/relay_throughput.sh" "$n" "$per_tx")
printf '%s\n\n%s\n\n' "$alo" "$eos"
rate() { sed -n 's/^relay: *\([0-9,]*\) events.*/\1/p' | tr -d ,; }
a=$(rate <<<"$alo")
e=$(rate <<<"$eos")
python3 -c "import sys; a, e = int(sys.argv[1]), int(sys.argv[2]); print(f'exactly_once / at_least_once: {e:,} / {a:,} events/s = {e / a:.2f}')" "$a" "$e"
