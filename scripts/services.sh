#!/usr/bin/env bash
# Starts and stops the project's own PostgreSQL 15, Kafka (KRaft) and Redis on loopback.
#
#   scripts/services.sh start [postgres|kafka|redis ...]   # default: all; waits until each answers
#   scripts/services.sh stop  [postgres|kafka|redis ...]   # stops only what this script started
#   scripts/services.sh status
#   scripts/services.sh env                                # prints the connection settings
#
# State lives in $OUTBOX_RUN_DIR (default .run/ in the checkout). Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PG_DIR=$OUTBOX_RUN_DIR/postgres
KAFKA_DIR=$OUTBOX_RUN_DIR/kafka
REDIS_DIR=$OUTBOX_RUN_DIR/redis
ENV_FILE=$OUTBOX_RUN_DIR/services.env

pg_admin_dsn() {
  echo "host=127.0.0.1 port=$OUTBOX_PG_PORT user=postgres password=$OUTBOX_PG_PASSWORD dbname=outbox"
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$OUTBOX_PG_PORT"; }

start_postgres() {
  mkdir -p "$OUTBOX_RUN_DIR"
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    log "postgres: initdb in $PG_DIR/data"
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
    printf '%s\n' "$OUTBOX_PG_PASSWORD" >"$PG_DIR/pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR/pwfile"
    as_pg_user "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --pwfile="$PG_DIR/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log"
    rm -f "$PG_DIR/pwfile"
    cat >>"$PG_DIR/data/postgresql.conf" <<CONF
# outbox relay: local test server
listen_addresses = '127.0.0.1'
port = $OUTBOX_PG_PORT
unix_socket_directories = '$PG_DIR'
wal_level = logical
max_wal_senders = 20
max_replication_slots = 40
max_connections = 200
wal_sender_timeout = 60s
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
log_min_messages = warning
CONF
  fi
  if pg_ready; then
    log "postgres: already running on 127.0.0.1:$OUTBOX_PG_PORT"
  else
    as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null \
      || { tail -20 "$PG_DIR/server.log" >&2; die "postgres did not start"; }
    log "postgres: started on 127.0.0.1:$OUTBOX_PG_PORT"
  fi
  PGPASSWORD=$OUTBOX_PG_PASSWORD psql -h 127.0.0.1 -p "$OUTBOX_PG_PORT" -U postgres -d postgres -qtAc \
    "SELECT 1 FROM pg_database WHERE datname='outbox'" | grep -q 1 \
    || PGPASSWORD=$OUTBOX_PG_PASSWORD psql -h 127.0.0.1 -p "$OUTBOX_PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE outbox" >/dev/null
}

stop_postgres() {
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    log "postgres: stopped"
  fi
}

kafka_ready() { kcat -b "127.0.0.1:$OUTBOX_KAFKA_PORT" -L -m 2 -t __probe_nonexistent >/dev/null 2>&1; }

start_kafka() {
  [ -d "$KAFKA_LIBS" ] || die "Kafka jars missing in $KAFKA_LIBS: run scripts/install.sh"
  mkdir -p "$KAFKA_DIR"
  if pid_alive "$KAFKA_DIR/kafka.pid"; then
    wait_for kafka_ready 60 || die "kafka (pid $(cat "$KAFKA_DIR/kafka.pid")) runs but does not answer"
    log "kafka: already running on 127.0.0.1:$OUTBOX_KAFKA_PORT"
    return
  fi
  cat >"$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$OUTBOX_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$OUTBOX_KAFKA_PORT,CONTROLLER://127.0.0.1:$OUTBOX_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$OUTBOX_KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=4194304
log.retention.hours=24
PROPS
  cat >"$KAFKA_DIR/log4j2.yaml" <<'LOG4J'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
LOG4J
  local cp="$KAFKA_LIBS/*"
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    java -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" -cp "$cp" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/format.log" 2>&1 \
      || { cat "$KAFKA_DIR/format.log" >&2; die "kafka storage format failed"; }
  fi
  setsid nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" -cp "$cp" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >>"$KAFKA_DIR/server.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_DIR/kafka.pid"
  if ! wait_for kafka_ready 90; then
    tail -30 "$KAFKA_DIR/server.log" >&2
    die "kafka did not answer on 127.0.0.1:$OUTBOX_KAFKA_PORT within 90 s"
  fi
  log "kafka: started on 127.0.0.1:$OUTBOX_KAFKA_PORT (pid $(cat "$KAFKA_DIR/kafka.pid"))"
}

# Stops the process recorded in pid file $1, waiting up to $2 seconds before SIGKILL.
stop_pid_file() {
  local file=$1 secs=$2 name=$3 pid i
  pid_alive "$file" || { rm -f "$file"; return 0; }
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name: pid $pid did not stop in ${secs}s, sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  log "$name: stopped"
}

stop_kafka() { stop_pid_file "$KAFKA_DIR/kafka.pid" 30 kafka; }

redis_ready() { redis-cli -h 127.0.0.1 -p "$OUTBOX_REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start_redis() {
  mkdir -p "$REDIS_DIR"
  if pid_alive "$REDIS_DIR/redis.pid" && redis_ready; then
    log "redis: already running on 127.0.0.1:$OUTBOX_REDIS_PORT"
    return
  fi
  redis-server --bind 127.0.0.1 --port "$OUTBOX_REDIS_PORT" --dir "$REDIS_DIR" --save "" --appendonly no \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/server.log"
  wait_for redis_ready 30 || die "redis did not answer on 127.0.0.1:$OUTBOX_REDIS_PORT"
  log "redis: started on 127.0.0.1:$OUTBOX_REDIS_PORT"
}

stop_redis() { stop_pid_file "$REDIS_DIR/redis.pid" 10 redis; }

write_env() {
  mkdir -p "$OUTBOX_RUN_DIR"
  cat >"$ENV_FILE" <<ENV
export OUTBOX_PG_DSN='$(pg_admin_dsn)'
export OUTBOX_PG_HOST=127.0.0.1
export OUTBOX_PG_PORT=$OUTBOX_PG_PORT
export OUTBOX_PG_PASSWORD='$OUTBOX_PG_PASSWORD'
export OUTBOX_PG_DATA='$PG_DIR/data'
export OUTBOX_KAFKA_BROKERS=127.0.0.1:$OUTBOX_KAFKA_PORT
export OUTBOX_REDIS_URL=redis://127.0.0.1:$OUTBOX_REDIS_PORT
export OUTBOX_SERVICES_SCRIPT='$OUTBOX_ROOT/scripts/services.sh'
ENV
}

status() {
  pg_ready && echo "postgres: up on 127.0.0.1:$OUTBOX_PG_PORT" || echo "postgres: down"
  kafka_ready && echo "kafka: up on 127.0.0.1:$OUTBOX_KAFKA_PORT" || echo "kafka: down"
  redis_ready && echo "redis: up on 127.0.0.1:$OUTBOX_REDIS_PORT" || echo "redis: down"
}

cmd=${1:-}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(postgres kafka redis)
case "$cmd" in
  start)
    for t in "${targets[@]}"; do "start_$t"; done
    write_env
    cat "$ENV_FILE"
    ;;
  stop)
    for ((i = ${#targets[@]} - 1; i >= 0; i--)); do "stop_${targets[i]}"; done
    ;;
  status) status ;;
  env) write_env; cat "$ENV_FILE" ;;
  *) echo "usage: $0 start|stop|status|env [postgres|kafka|redis ...]" >&2; exit 2 ;;
esac
