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
source "$root/tests/bench/sweep_lib.sh"
export OUTBOX_BENCH_MAX_INFLIGHT_MESSAGES=10000000
bench_sweep window OUTBOX_BENCH_MAX_INFLIGHT_BYTES "${3:-1MiB 2MiB 4MiB 8MiB 16MiB 64MiB}" "${1:-200000}" "${2:-100}"
