# Shared settings for the project's scripts. Source it; do not run it.
# Everything a script starts is recorded under $OUTBOX_RUN_DIR and stopped by PID.

OUTBOX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUTBOX_CACHE=${OUTBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outbox-relay}
OUTBOX_RUN_DIR=${OUTBOX_RUN_DIR:-$OUTBOX_ROOT/.run}
OUTBOX_BUILD_DIR=${OUTBOX_BUILD_DIR:-$OUTBOX_ROOT/build}

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$OUTBOX_ROOT/scripts/kafka/pom.xml")
KAFKA_LIBS=$OUTBOX_CACHE/kafka-$KAFKA_VERSION/libs

OUTBOX_PG_PORT=${OUTBOX_PG_PORT:-55432}
OUTBOX_KAFKA_PORT=${OUTBOX_KAFKA_PORT:-19092}
OUTBOX_KAFKA_CONTROLLER_PORT=${OUTBOX_KAFKA_CONTROLLER_PORT:-19093}
OUTBOX_REDIS_PORT=${OUTBOX_REDIS_PORT:-16379}
OUTBOX_PG_PASSWORD=${OUTBOX_PG_PASSWORD:-outbox-local}

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a command as the PostgreSQL service user when we are root (initdb refuses root).
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# True when the PID in file $1 is a live process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Waits up to $2 seconds for command $1 (a string) to succeed.
wait_for() {
  local cmd=$1 secs=$2 i
  for ((i = 0; i < secs * 4; i++)); do
    if eval "$cmd" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  return 1
}
