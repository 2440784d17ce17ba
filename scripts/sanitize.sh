#!/usr/bin/env bash
# Builds the project under the sanitizers and runs part of the test suite under each (docs/reliability.md,
# "Sanitizers"):
#   asan  build-asan/ (OUTBOX_SANITIZE=address;undefined, LeakSanitizer on): every unit test, and the integration
#         tests of the relay end to end, the consumer SDK on Kafka, the payment ledger and the dedupe stores
#   tsan  build-tsan/ (OUTBOX_SANITIZE=thread): the unit tests of the threaded parts (the consumer SDK on the
#         librdkafka mock cluster, the Kafka layer, the metrics endpoint, the dedupe stores) and the relay's and
#         the consumer's integration tests on Kafka
# Only the targets those tests need are built. The integration tests need the local services
# (scripts/services.sh start); their settings are read from $OUTBOX_RUN_DIR/services.env.
# A sanitizer report fails the run, whether it comes from a test binary or from an outbox-relay, outboxctl or
# payment-ledger a test started: every sanitized process writes its reports to $OUTBOX_RUN_DIR/sanitize/<kind>/,
# and a report there is a failure even when the test passed.
#   scripts/sanitize.sh                     both: the two builds (one after the other; up to date when
#                                           scripts/test.sh made them beside its tests), then the asan and the
#                                           tsan tests side by side (they mostly wait on the services), each into
#                                           its own log, printed when both are done
#   scripts/sanitize.sh tsan                one
#   scripts/sanitize.sh --build-only asan   build only; needs no services
# OUTBOX_ASAN_BUILD_DIR and OUTBOX_TSAN_BUILD_DIR move the build directories.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

build_only=0
if [ "${1:-}" = --build-only ]; then
  build_only=1
  shift
fi
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(asan tsan)
for k in "${kinds[@]}"; do
  [[ $k == asan || $k == tsan ]] || die "usage: scripts/sanitize.sh [--build-only] [asan] [tsan] (got '$k')"
done

supp=$OUTBOX_ROOT/tests/sanitizers
unit_asan=(base_unit_tests config_unit_tests metrics_unit_tests kafka_unit_tests relay_unit_tests dedupe_unit_tests
  outboxctl_unit_tests consumer_unit_tests)
integration_asan=(smoke_integration_tests relay_integration_tests consumer_integration_tests dedupe_integration_tests)
unit_tsan=(consumer_unit_tests kafka_unit_tests metrics_unit_tests dedupe_unit_tests relay_unit_tests)
integration_tsan=(relay_integration_tests consumer_integration_tests)

# The CTest names each kind runs (ctest -R): every test of the binaries it built (a test binary that is not built
# has no tests in that build directory) but the static checks of deploy/ and docs/, which run nothing sanitized;
# of the integration binaries, the suites below, chosen to keep .ci/run within its time budget (docs/reliability.md
# has what each costs).
select_asan='^(unit\.|integration\.((smoke|relay_records|relay_errors|consumer_on_kafka|payment_ledger|retry_tiers|redis_store|postgres_inbox_test)\.|relay_gaps\.a_bad_row_))'
select_tsan='^(unit\.|integration\.(relay_records|consumer_on_kafka|payment_ledger)\.)'
exclude='^unit\.(docs|deploy\.(promtool|static))'

# Sets sanitize, build_dir, targets and select for kind $1.
kind_settings() {
  case $1 in
    asan)
      sanitize='address;undefined'
      build_dir=${OUTBOX_ASAN_BUILD_DIR:-$OUTBOX_ROOT/build-asan}
      targets=("${unit_asan[@]}" "${integration_asan[@]}" outbox-relay payment-ledger)
      select=$select_asan
      ;;
    tsan)
      sanitize=thread
      build_dir=${OUTBOX_TSAN_BUILD_DIR:-$OUTBOX_ROOT/build-tsan}
      targets=("${unit_tsan[@]}" "${integration_tsan[@]}")
      select=$select_tsan
      ;;
  esac
}

# Configures and builds kind $1's targets.
build_kind() {
  local sanitize build_dir targets select
  kind_settings "$1"
  # clang-14 (as for scripts/fuzz.sh) at -O0 -g1: the instrumented build is the larger part of the cost, and GCC 12
  # takes about twice as long at -O0 and twice as long again at -O1 (docs/reliability.md); the tests wait on the
  # services more than they compute, and -g1 keeps a line number in every frame of a report. Warnings are errors
  # in the main build, not skewed by the instrumentation here.
  CC=clang-14 CXX=clang++-14 cmake -S "$OUTBOX_ROOT" -B "$build_dir" -G Ninja -DOUTBOX_SANITIZE="$sanitize" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O0 -g1 -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O0 -g1 -DNDEBUG" >/dev/null
  cmake --build "$build_dir" --target "${targets[@]}" -j "$(nproc)"
}

# Runs kind $1's tests; every report ends the process with an error and is written to $reports/<sanitizer>.<pid>.
test_kind() {
  local kind=$1 sanitize build_dir targets select
  kind_settings "$kind"
  local reports=$OUTBOX_RUN_DIR/sanitize/$kind
  rm -rf "$reports"
  mkdir -p "$reports"
  local rc=0 env
  if [ "$kind" = asan ]; then
    env=(ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:log_path=$reports/asan
      LSAN_OPTIONS=suppressions=$supp/lsan.supp:print_suppressions=0
      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan)
  else
    env=(TSAN_OPTIONS=halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$supp/tsan.supp:print_suppressions=0:log_path=$reports/tsan)
  fi
  env "${env[@]}" ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -j 1 -R "$select" -E "$exclude" || rc=$?
  local found
  found=$(find "$reports" -type f | sort)
  if [ -n "$found" ]; then
    log "$kind: sanitizer reports (each file is one process; kept in $reports):"
    while read -r f; do
      echo "==== $f" >&2
      head -60 "$f" >&2
    done <<<"$found"
    failed+=("$kind: $(wc -l <<<"$found") processes reported")
  fi
  [ "$rc" = 0 ] || failed+=("$kind: ctest exit $rc")
}

if [ "$build_only" = 1 ]; then
  for k in "${kinds[@]}"; do build_kind "$k"; done
  exit 0
fi

if [ -z "${OUTBOX_PG_DSN:-}" ]; then
  [ -f "$OUTBOX_RUN_DIR/services.env" ] || die "no $OUTBOX_RUN_DIR/services.env: start the services first (scripts/services.sh start)"
  # shellcheck disable=SC1091
  source "$OUTBOX_RUN_DIR/services.env"
fi
if "$OUTBOX_ROOT/scripts/services.sh" status | grep -qE '^(postgres|kafka|redis): down'; then
  die "the local services are not all running: scripts/services.sh start, then run this again"
fi

timings=()
failed=()
mkdir -p "$OUTBOX_RUN_DIR/sanitize"
for k in "${kinds[@]}"; do
  t0=$(date +%s)
  build_kind "$k"
  timings+=("$k build $(($(date +%s) - t0))s")
done
if [ ${#kinds[@]} -eq 1 ]; then
  t1=$(date +%s)
  test_kind "${kinds[0]}"
  timings+=("${kinds[0]} tests $(($(date +%s) - t1))s")
else
  # Each kind's tests by this script for that kind alone (its build is up to date by now), in a process group of its
  # own, into its own log.
  pids=()
  trap 'for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done' EXIT
  t1=$(date +%s)
  for k in "${kinds[@]}"; do
    setsid "$0" "$k" >"$OUTBOX_RUN_DIR/sanitize/$k.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!kinds[@]}"; do
    k=${kinds[$i]}
    rc=0
    wait "${pids[$i]}" || rc=$?
    log "==== $k tests, exit $rc (their log: $OUTBOX_RUN_DIR/sanitize/$k.log)"
    cat "$OUTBOX_RUN_DIR/sanitize/$k.log" >&2
    [ "$rc" = 0 ] || failed+=("$k: exit $rc")
  done
  pids=()
  timings+=("both test runs side by side $(($(date +%s) - t1))s")
fi
joined=$(printf '%s, ' "${timings[@]}")
log "sanitizers: ${joined%, }"
[ ${#failed[@]} -eq 0 ] || die "sanitizers failed: ${failed[*]}"
