#!/usr/bin/env bash
# The relay and the walsender's ceiling for each source shape (OUTBOX_BENCH_SHAPE of tests/bench/relay_throughput.sh):
# the default table (jsonb, every column published), bytea payloads with a publication column list, and no table at
# all (pg_logical_emit_message envelopes). Each is one relay_throughput.sh run with its own references; the load's own
# time says what writing the events costs the service (docs/benchmarks.md).
#
#   tests/bench/relay_source_shapes.sh [N] [ROWS_PER_TRANSACTION] [SHAPES]      (services must be running)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib.sh"
source "$root/tests/bench/sweep_lib.sh"
bench_sweep source OUTBOX_BENCH_SHAPE "${3:-table bytea messages}" "${1:-200000}" "${2:-100}"
