#!/bin/sh
# config_loads.sh SECONDS BINARY CONFIG [ARGS...]
# Passes when BINARY's own config loader accepts CONFIG: it does not exit with 2 (bad usage or config)
# within SECONDS. What happens after loading (it cannot reach PostgreSQL or Kafka here, or it is still
# running when the time is up) does not matter. The environment supplies the ${VAR}s of CONFIG.
set -u
seconds=$1 binary=$2 config=$3
shift 3
out=$(timeout --kill-after=5 "$seconds" "$binary" --config "$config" "$@" 2>&1)
rc=$?
printf '%s\n' "$out" | head -40
if [ "$rc" -eq 2 ]; then
  echo "FAIL: $(basename "$binary") rejected $config (exit 2)"
  exit 1
fi
echo "ok: $(basename "$binary") loaded $config (exit $rc; 124 = still running after ${seconds}s)"
