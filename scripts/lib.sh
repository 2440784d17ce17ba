# Shared settings for the project's scripts. Source it; do not run it.
# Everything a script starts is recorded under $OUTBOX_RUN_DIR and stopped by PID.

OUTBOX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUTBOX_CACHE=${OUTBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outbox-relay}
OUTBOX_RUN_DIR=${OUTBOX_RUN_DIR:-$OUTBOX_ROOT/.run}
OUTBOX_BUILD_DIR=${OUTBOX_BUILD_DIR:-$OUTBOX_ROOT/build}

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$OUTBOX_ROOT/scripts/kafka/pom.xml")
KAFKA_LIBS=$OUTBOX_CACHE/kafka-$KAFKA_VERSION/libs
# Kafka's command-line clients (the Java console consumer), a classpath of their own: scripts/kafka-tools/pom.xml.
KAFKA_TOOLS_LIBS=$OUTBOX_CACHE/kafka-tools-$KAFKA_VERSION/libs

# Every default port sits below the kernel's ephemeral range (32768-60999 on Linux): a server bound there can
# find its port held by some client's outgoing connection, which no "is it listening" probe sees.
OUTBOX_PG_PORT=${OUTBOX_PG_PORT:-15432}
OUTBOX_KAFKA_PORT=${OUTBOX_KAFKA_PORT:-19092}
OUTBOX_KAFKA_CONTROLLER_PORT=${OUTBOX_KAFKA_CONTROLLER_PORT:-19093}
OUTBOX_REDIS_PORT=${OUTBOX_REDIS_PORT:-16379}
OUTBOX_PG_PASSWORD=${OUTBOX_PG_PASSWORD:-outbox-local}

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# PostgreSQL versions: Debian's 15 is the default; the others are the builds pinned in
# scripts/postgres/pom.xml, fetched by scripts/install.sh for each major in OUTBOX_PG_VERSIONS.
PG_POM=$OUTBOX_ROOT/scripts/postgres/pom.xml
OUTBOX_PG_VERSIONS=${OUTBOX_PG_VERSIONS:-14 16 17 18}
OUTBOX_PG_VERSION=${OUTBOX_PG_VERSION:-15}
# psql and pg_isready: Debian's client speaks to every server from 14 to 18.
PG_CLIENT_BIN=${PG_CLIENT_BIN:-/usr/lib/postgresql/15/bin}

# The pinned full version of PostgreSQL major $1 (17 -> 17.6.0); empty for 15 and for an unknown major.
pg_dist_version() { sed -n "s:.*<postgresql$1\.version>\(.*\)</postgresql$1\.version>.*:\1:p" "$PG_POM"; }
# Where scripts/install.sh unpacks major $1.
pg_dist_dir() { echo "$OUTBOX_CACHE/postgresql-$(pg_dist_version "$1")"; }

# Ports of PostgreSQL major $1 and of its standby, each overridable as OUTBOX_PG<major>_PORT and
# OUTBOX_PG<major>_STANDBY_PORT. 15 keeps OUTBOX_PG_PORT; the others sit just above it, so every
# checkout with its own OUTBOX_PG_PORT (spaced 100 apart) gets its own ports.
pg_port() {
  local var=OUTBOX_PG$1_PORT
  if [ -n "${!var:-}" ]; then echo "${!var}"; elif [ "$1" = 15 ]; then echo "$OUTBOX_PG_PORT"; else echo $((OUTBOX_PG_PORT + $1 - 10)); fi
}
pg_standby_port() {
  local var=OUTBOX_PG$1_STANDBY_PORT
  if [ -n "${!var:-}" ]; then echo "${!var}"; else echo $((OUTBOX_PG_PORT + 20 + $1 - 10)); fi
}

# Kafka's TLS and SASL_SSL (SCRAM-SHA-512) listeners, beside the PLAINTEXT one.
OUTBOX_KAFKA_TLS_PORT=${OUTBOX_KAFKA_TLS_PORT:-$((OUTBOX_KAFKA_PORT + 2))}
OUTBOX_KAFKA_SASL_PORT=${OUTBOX_KAFKA_SASL_PORT:-$((OUTBOX_KAFKA_PORT + 3))}
# A PLAINTEXT listener that advertises OUTBOX_KAFKA_PROXY_PORT, where a test's TCP proxy listens (nothing else
# does): every connection a client makes to the broker then goes through the proxy, for network-fault tests.
OUTBOX_KAFKA_PROXIED_PORT=${OUTBOX_KAFKA_PROXIED_PORT:-$((OUTBOX_KAFKA_PORT + 4))}
OUTBOX_KAFKA_PROXY_PORT=${OUTBOX_KAFKA_PROXY_PORT:-$((OUTBOX_KAFKA_PORT + 5))}
OUTBOX_KAFKA_SASL_USER=${OUTBOX_KAFKA_SASL_USER:-outbox}
OUTBOX_KAFKA_SASL_PASSWORD=${OUTBOX_KAFKA_SASL_PASSWORD:-outbox-scram-local}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a command as the PostgreSQL service user when we are root (initdb refuses root).
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# True when the PID in file $1 is a live process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Waits up to $2 seconds (wall clock, however long each try takes) for command $1 (a string) to succeed.
wait_for() {
  local cmd=$1 deadline=$((SECONDS + $2))
  while true; do
    if eval "$cmd" >/dev/null 2>&1; then return 0; fi
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.25
  done
}

# Fails when something this script did not start already answers on 127.0.0.1:$1 ($2 names it).
port_free_or_die() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "$2: 127.0.0.1:$1 is already taken by a process this run directory did not start; choose other ports (OUTBOX_PG_PORT, OUTBOX_KAFKA_PORT, ...)"
  fi
  # Nothing listens, but a socket may still hold the port (a client's outgoing connection when the port is in the
  # ephemeral range): bind it the way a server does to find out.
  if ! python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; then
    die "$2: 127.0.0.1:$1 is held by another socket (nothing listens there: an outgoing connection's port?); choose other ports (OUTBOX_PG_PORT, OUTBOX_KAFKA_PORT, ...), below 32768"
  fi
}
