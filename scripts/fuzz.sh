#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang-14, ASan + UBSan, in $OUTBOX_FUZZ_BUILD_DIR, default
# build-fuzz/) and runs each for SECONDS_PER_TARGET (default 30), one after the other, on a copy of its committed
# corpus in $OUTBOX_RUN_DIR/fuzz/<target>/. Prints per target the executions, coverage (cov/ft of libFuzzer's
# final line) and findings; exits non-zero when any target found a crash, a sanitizer report, a leak, a timeout
# or an out-of-memory. The inputs that did are kept in $OUTBOX_RUN_DIR/fuzz/<target>/findings/.
#   scripts/fuzz.sh                    every target, 30 s each
#   scripts/fuzz.sh 450 router         one target for 7.5 minutes
#   nice -n 19 scripts/fuzz.sh 450     the campaign of docs/reliability.md
#   scripts/fuzz.sh --build-only       build the targets, run nothing
set -euo pipefail
source "$(dirname "$0")/lib.sh"

build_only=0
if [ "${1:-}" = --build-only ]; then
  build_only=1
  shift
fi
seconds=${1:-30}
[[ $seconds =~ ^[0-9]+$ ]] || die "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [target...] (got '$seconds')"
shift || true
corpus_root=$OUTBOX_ROOT/tests/fuzz/corpus
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for d in "$corpus_root"/*/; do targets+=("$(basename "$d")"); done
fi
for t in "${targets[@]}"; do
  [ -d "$corpus_root/$t" ] || die "no fuzz target '$t' (one per folder of tests/fuzz/corpus/)"
done

build_dir=${OUTBOX_FUZZ_BUILD_DIR:-$OUTBOX_ROOT/build-fuzz}
t0=$(date +%s)
CC=clang-14 CXX=clang++-14 cmake -S "$OUTBOX_ROOT" -B "$build_dir" -G Ninja -DOUTBOX_FUZZ=ON -DOUTBOX_BUILD_TESTS=OFF \
  -DOUTBOX_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" --target fuzzers -j "$(nproc)"
[ "$build_only" = 0 ] || exit 0
log "fuzz build $(($(date +%s) - t0))s; ${#targets[@]} targets, ${seconds}s each"

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
failed=()
summary=()
for t in "${targets[@]}"; do
  work=$OUTBOX_RUN_DIR/fuzz/$t
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/findings"
  cp "$corpus_root/$t"/* "$work/corpus/"
  rc=0
  "$build_dir/tests/fuzz/fuzz_$t" "$work/corpus" -max_total_time="$seconds" -error_exitcode=77 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/findings/" >"$work/log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$work/log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  found=$(find "$work/findings" -type f | wc -l)
  line=$(printf '%-18s execs %-10s cov %-6s ft %-6s corpus %-5s findings %s' "$t" "${execs:-?}" "${cov:-?}" \
    "${ft:-?}" "$(find "$work/corpus" -type f | wc -l)" "$found")
  summary+=("$line")
  log "$line"
  if [ "$rc" != 0 ] || [ "$found" != 0 ]; then
    failed+=("$t")
    log "fuzz_$t failed (exit $rc); its report: $work/log, the input: $work/findings/"
    grep -E 'ERROR|runtime error|SUMMARY' "$work/log" | head -5 >&2 || true
  fi
done

log "fuzzing: build and ${#targets[@]} runs took $(($(date +%s) - t0))s"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  die "fuzzing found problems in: ${failed[*]} (reproduce: $build_dir/tests/fuzz/fuzz_<target> <input>)"
fi
