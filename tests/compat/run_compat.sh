#!/usr/bin/env bash
# Runs test binaries against a freshly started PostgreSQL of one major version, beside the Kafka of
# this run (label compat; one CTest test per version).
#
#   tests/compat/run_compat.sh MAJOR BINARY...
#
# Failures listed for MAJOR in tests/compat/known_failures.txt are printed as KNOWN FAILURE and do not
# fail the run; any other failure does, and so does a listed test that now passes (take it off the list).
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"

major=${1:?usage: run_compat.sh MAJOR BINARY...}
shift
[ $# -gt 0 ] || die "usage: run_compat.sh MAJOR BINARY..."
[ "$major" != 15 ] || die "15 is the default suite's server; compat runs 14, 16, 17 and 18"
[ -n "${OUTBOX_KAFKA_BROKERS:-}" ] || die "OUTBOX_KAFKA_BROKERS is not set: run through scripts/test.sh -L compat"
known_file=$OUTBOX_ROOT/tests/compat/known_failures.txt
services=$OUTBOX_ROOT/scripts/services.sh
export OUTBOX_PG_VERSION=$major

cleanup() { "$services" stop postgres >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$services" stop postgres >/dev/null 2>&1 || true
rm -rf "$OUTBOX_RUN_DIR/postgres-$major"
t0=$SECONDS
"$services" start postgres >/dev/null
# shellcheck disable=SC1090
source "$OUTBOX_RUN_DIR/services-pg$major.env"
server=$("$PG_CLIENT_BIN/psql" "$OUTBOX_PG_DSN" -XtAc "SHOW server_version")
log "compat: PostgreSQL $server on 127.0.0.1:$OUTBOX_PG_PORT (started in $((SECONDS - t0)) s)"

out=$OUTBOX_RUN_DIR/compat-$major
rm -rf "$out"
mkdir -p "$out"
status=0
failed_all=()
for bin in "$@"; do
  name=$(basename "$bin")
  t1=$SECONDS
  set +e
  "$bin" --gtest_output="json:$out/$name.json" >"$out/$name.log" 2>&1
  rc=$?
  set -e
  if [ ! -f "$out/$name.json" ]; then
    tail -50 "$out/$name.log" >&2
    log "compat $major: $name exited $rc without a result file"
    status=1
    continue
  fi
  read -r passed failed < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
cases = [c for s in r["testsuites"] for c in s["testsuite"] if c.get("result", "COMPLETED") == "COMPLETED"]
failed = [c for c in cases if c.get("failures")]
print(len(cases) - len(failed), len(failed))
' "$out/$name.json")
  mapfile -t names < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
for s in r["testsuites"]:
    for c in s["testsuite"]:
        if c.get("failures"):
            print(s["name"] + "." + c["name"])
' "$out/$name.json")
  failed_all+=("${names[@]}")
  log "compat $major: $name: $passed passed, $failed failed ($((SECONDS - t1)) s)"
  if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then
    tail -50 "$out/$name.log" >&2
    log "compat $major: $name exited $rc with no failed test"
    status=1
  fi
done

# Known failures: lines "<major> <Suite.test> <why>"; '#' starts a comment.
declare -A known=()
while read -r v test why; do
  [ -n "$v" ] && [ "${v:0:1}" != "#" ] && [ "$v" = "$major" ] && known[$test]=$why
done <"$known_file"
for t in "${failed_all[@]}"; do
  [ -n "$t" ] || continue
  if [ -n "${known[$t]:-}" ]; then
    # Also collected for scripts/test.sh, which repeats them after the whole run.
    echo "KNOWN FAILURE (PostgreSQL $major): $t: ${known[$t]}" | tee -a "$OUTBOX_RUN_DIR/compat-known-failures.log"
  else
    echo "FAILED (PostgreSQL $major): $t; output in $out"
    grep -F -A 40 "[ RUN      ] $t" "$out"/*.log | head -80 || true
    status=1
  fi
done
for t in "${!known[@]}"; do
  if ! printf '%s\n' "${failed_all[@]}" | grep -qxF "$t"; then
    echo "NOW PASSES (PostgreSQL $major): $t is listed in tests/compat/known_failures.txt but did not fail; take it off"
    status=1
  fi
done
log "compat $major: done in $((SECONDS - t0)) s"
exit "$status"
