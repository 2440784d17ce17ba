#!/usr/bin/env bash
# The whole test suite from a fresh clone: install, build, start the local services, run every
# test (unit, integration, fault, compat), stop the services again (also on failure or Ctrl-C).
# Extra arguments go to ctest, e.g. `scripts/test.sh -L unit`; `scripts/test.sh -L compat` runs only
# the PostgreSQL 14-18 label (about 4 minutes), `scripts/test.sh -LE compat` everything else.
# A full run (no ctest arguments) also runs every fuzz target of scripts/fuzz.sh for OUTBOX_FUZZ_SECONDS (default
# 20) each; OUTBOX_FUZZ_SECONDS=0 skips it, and setting it runs it with a partial run too. A fuzz finding fails the
# run like a failed test.
# After the tests, a full run runs part of the suite under AddressSanitizer + UndefinedBehaviorSanitizer and under
# ThreadSanitizer (scripts/sanitize.sh, in build-asan/ and build-tsan/); a sanitizer report fails the run.
# OUTBOX_SANITIZERS=0 skips it, OUTBOX_SANITIZERS=asan or tsan runs only one, and setting it runs it after a partial
# run too.
# The sanitizer and fuzz builds, and then the fuzzing itself (it needs no services), run at the lowest CPU and I/O
# priority as soon as the main build is done, beside the tests, which mostly wait on the services; their logs are
# $OUTBOX_RUN_DIR/prebuild.log and $OUTBOX_RUN_DIR/fuzz.log, and the fuzz summary is printed after the tests.
# The unit tests run two at a time, the others one at a time (they share the services, and some restart them).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

started=0
prebuild_pid=''
cleanup() {
  local rc=$?
  if [ -n "$prebuild_pid" ]; then kill -- "-$prebuild_pid" 2>/dev/null || true; fi
  if [ -s "$OUTBOX_RUN_DIR/compat-known-failures.log" ]; then
    log "known failures on other PostgreSQL versions (tests/compat/known_failures.txt):"
    cat "$OUTBOX_RUN_DIR/compat-known-failures.log" >&2
  fi
  if [ "$started" = 1 ]; then "$OUTBOX_ROOT/scripts/services.sh" stop || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sanitizers=${OUTBOX_SANITIZERS:-asan tsan}
run_sanitizers=0
if [ "$sanitizers" != 0 ] && { [ $# -eq 0 ] || [ -n "${OUTBOX_SANITIZERS:-}" ]; }; then run_sanitizers=1; fi
fuzz_seconds=${OUTBOX_FUZZ_SECONDS:-20}
run_fuzz=0
if [ "$fuzz_seconds" != 0 ] && { [ $# -eq 0 ] || [ -n "${OUTBOX_FUZZ_SECONDS:-}" ]; }; then run_fuzz=1; fi

rm -f "$OUTBOX_RUN_DIR/compat-known-failures.log"
t0=$(date +%s)
"$OUTBOX_ROOT/scripts/install.sh"
t1=$(date +%s)
OUTBOX_WERROR=ON "$OUTBOX_ROOT/scripts/build.sh"
t2=$(date +%s)
if [ "$run_sanitizers" = 1 ] || [ "$run_fuzz" = 1 ]; then
  mkdir -p "$OUTBOX_RUN_DIR"
  rm -f "$OUTBOX_RUN_DIR/fuzz.rc"
  # A build failure here shows again, with its output, when scripts/sanitize.sh builds below.
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid nice -n 19 ionice -c 3 bash -c '
    if [ "$1" = 1 ]; then "$0/scripts/sanitize.sh" --build-only $3 || exit; fi
    if [ "$2" = 1 ]; then
      rc=0
      "$0/scripts/fuzz.sh" "$4" >"$5/fuzz.log" 2>&1 || rc=$?
      echo "$rc" >"$5/fuzz.rc"
    fi' \
    "$OUTBOX_ROOT" "$run_sanitizers" "$run_fuzz" "$sanitizers" "$fuzz_seconds" "$OUTBOX_RUN_DIR" \
    >"$OUTBOX_RUN_DIR/prebuild.log" 2>&1 &
  prebuild_pid=$!
fi
started=1
"$OUTBOX_ROOT/scripts/services.sh" start >/dev/null
# shellcheck disable=SC1091
source "$OUTBOX_RUN_DIR/services.env"
t3=$(date +%s)
log "install $((t1 - t0))s, build $((t2 - t1))s, services $((t3 - t2))s; running tests"
ctest_args=(--test-dir "$OUTBOX_BUILD_DIR" --output-on-failure --timeout 900)
if [ $# -eq 0 ]; then
  ctest "${ctest_args[@]}" -j 2 -L unit
  ctest "${ctest_args[@]}" -j 1 -LE unit
else
  ctest "${ctest_args[@]}" -j 1 "$@"
fi
t4=$(date +%s)
log "tests $((t4 - t3))s"
if [ -n "$prebuild_pid" ]; then
  prebuild_rc=0
  wait "$prebuild_pid" || prebuild_rc=$?
  prebuild_pid=''
  log "sanitizer and fuzz builds and fuzzing beside the tests: done $(($(date +%s) - t4))s after them (exit $prebuild_rc)"
fi
t4=$(date +%s)
if [ "$run_sanitizers" = 1 ]; then
  # shellcheck disable=SC2086 # one word per sanitizer build
  "$OUTBOX_ROOT/scripts/sanitize.sh" $sanitizers
  log "sanitizers $(($(date +%s) - t4))s"
fi
if [ "$run_fuzz" = 1 ]; then
  [ -f "$OUTBOX_RUN_DIR/fuzz.rc" ] || { tail -40 "$OUTBOX_RUN_DIR/prebuild.log" >&2; die "fuzzing did not run (its build failed?)"; }
  cat "$OUTBOX_RUN_DIR/fuzz.log" >&2
  [ "$(cat "$OUTBOX_RUN_DIR/fuzz.rc")" = 0 ] || die "fuzzing failed (exit $(cat "$OUTBOX_RUN_DIR/fuzz.rc")); its log: $OUTBOX_RUN_DIR/fuzz.log"
fi
log "total $(($(date +%s) - t0))s"
