#!/usr/bin/env bash
# Starts and stops the project's own PostgreSQL, Kafka (KRaft) and Redis on loopback.
#
#   scripts/services.sh start [postgres|kafka|redis ...]   # default: all; waits until each answers
#   scripts/services.sh stop  [postgres|kafka|redis ...]   # stops only what this script started
#   scripts/services.sh status
#   scripts/services.sh env                                # prints the connection settings
#   scripts/services.sh start-standby | promote-standby | stop-standby | crash-primary
#
# PostgreSQL is Debian's 15 unless OUTBOX_PG_VERSION names another major (14, 16, 17, 18; fetched
# by scripts/install.sh). Each version has its own data directory and port (see pg_port in lib.sh)
# and its own env file: services.env for 15, services-pg<major>.env for the others, each with the
# Kafka and Redis settings too. `stop` without targets stops every version and standby of this
# run directory (and the pairs tests made under pairs/); `stop postgres` stops the selected
# version and its standby.
#
# start-standby makes a streaming physical standby of the selected version's server (base backup,
# physical slot, hot_standby_feedback; on 17+ also sync_replication_slots, and the primary names
# the slot in synchronized_standby_slots). promote-standby promotes it; stop-standby stops and
# discards it (its slot too). Its settings are OUTBOX_PG_STANDBY_* in the version's env file.
# crash-primary stops the selected version's primary the way a crash does (pg_ctl -m immediate).
#
# TLS is always on: a local CA and a server certificate for 127.0.0.1/localhost in
# $OUTBOX_RUN_DIR/tls, PostgreSQL with ssl=on (plain TCP still accepted), and Kafka with an SSL
# and a SASL_SSL listener beside PLAINTEXT. The SASL_SSL listener takes SCRAM-SHA-512 and PLAIN
# for the one user OUTBOX_KAFKA_SASL_USER / OUTBOX_KAFKA_SASL_PASSWORD.
#
# State lives in $OUTBOX_RUN_DIR (default .run/ in the checkout). Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

KAFKA_DIR=$OUTBOX_RUN_DIR/kafka
REDIS_DIR=$OUTBOX_RUN_DIR/redis
TLS_DIR=$OUTBOX_RUN_DIR/tls
# Where a PostgreSQL build from the cache is mirrored when the postgres user cannot read the cache.
OUTBOX_PG_STAGE_DIR=${OUTBOX_PG_STAGE_DIR:-$OUTBOX_RUN_DIR/dist}
KAFKA_KEYSTORE_PASSWORD=outbox-local-keystore
STANDBY_SLOT=${OUTBOX_PG_STANDBY_SLOT:-outbox_standby}

PG_V=$OUTBOX_PG_VERSION
case "$PG_V" in
  15) ;;
  *) [ -n "$(pg_dist_version "$PG_V")" ] || die "OUTBOX_PG_VERSION=$PG_V: choose one of 14 15 16 17 18" ;;
esac
if [ "$PG_V" = 15 ]; then
  PG_DIR=$OUTBOX_RUN_DIR/postgres
  ENV_FILE=$OUTBOX_RUN_DIR/services.env
else
  PG_DIR=$OUTBOX_RUN_DIR/postgres-$PG_V
  ENV_FILE=$OUTBOX_RUN_DIR/services-pg$PG_V.env
fi
PG_PORT=$(pg_port "$PG_V")
SB_DIR=$PG_DIR-standby
SB_PORT=$(pg_standby_port "$PG_V")

# --- TLS material -------------------------------------------------------------------------------

# A local CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and the
# server's PKCS#12 keystore for Kafka. Made once; made again when missing or due within a day.
ensure_tls() {
  if [ -f "$TLS_DIR/kafka-server.p12" ] && openssl x509 -checkend 86400 -noout -in "$TLS_DIR/server.crt" >/dev/null 2>&1; then
    return
  fi
  log "tls: making a local CA and certificates in $TLS_DIR"
  rm -rf "$TLS_DIR"
  mkdir -p "$TLS_DIR"
  local d=$TLS_DIR
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=outbox-relay local test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth" \
    "keyUsage=critical,digitalSignature,keyEncipherment" >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 365 \
    -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$OUTBOX_KAFKA_SASL_USER" -keyout "$d/client.key" \
    -out "$d/client.csr" 2>/dev/null
  printf '%s\n' "extendedKeyUsage=clientAuth" >"$d/client.ext"
  openssl x509 -req -in "$d/client.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 365 \
    -extfile "$d/client.ext" -out "$d/client.crt" 2>/dev/null
  openssl pkcs12 -export -name kafka -in "$d/server.crt" -inkey "$d/server.key" -certfile "$d/ca.crt" \
    -passout "pass:$KAFKA_KEYSTORE_PASSWORD" -out "$d/kafka-server.p12"
  rm -f "$d"/*.csr "$d"/*.ext "$d"/*.srl
  chmod 600 "$d"/*.key
}

# --- PostgreSQL ---------------------------------------------------------------------------------

# The bin/ directory of the selected version's server, readable by the user that runs it.
pg_server_bin() {
  if [ "$PG_V" = 15 ]; then
    echo "$PG_BIN"
    return
  fi
  local dist version
  dist=$(pg_dist_dir "$PG_V")
  version=$(pg_dist_version "$PG_V")
  [ -x "$dist/bin/postgres" ] || die "PostgreSQL $version is not installed in $dist: run OUTBOX_PG_VERSIONS=$PG_V scripts/install.sh"
  if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$dist/bin/postgres" 2>/dev/null; then
    echo "$dist/bin"
    return
  fi
  # As root the cache is under /root, which the postgres user cannot enter: mirror it (hard links
  # where the file system allows) into the run directory once.
  local staged=$OUTBOX_PG_STAGE_DIR/postgresql-$version
  if [ ! -f "$staged/.complete" ]; then
    rm -rf "$staged"
    mkdir -p "$OUTBOX_PG_STAGE_DIR"
    cp -al "$dist" "$staged" 2>/dev/null || { rm -rf "$staged"; cp -a "$dist" "$staged"; }
    chmod 755 "$OUTBOX_PG_STAGE_DIR"
  fi
  echo "$staged/bin"
}

psql_at() {
  local port=$1
  shift
  PGPASSWORD=$OUTBOX_PG_PASSWORD PGSSLMODE=disable "$PG_CLIENT_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -X -v ON_ERROR_STOP=1 "$@"
}

pg_dsn_at() {
  echo "host=127.0.0.1 port=$1 user=postgres password=$OUTBOX_PG_PASSWORD dbname=outbox"
}

pg_admin_dsn() { pg_dsn_at "$PG_PORT"; }

pg_ready_at() { "$PG_CLIENT_BIN/pg_isready" -q -h 127.0.0.1 -p "$1"; }
pg_ready() { pg_ready_at "$PG_PORT"; }

# Copies the server certificate into data directory $1 with the owner and mode PostgreSQL demands.
install_pg_tls() {
  local data=$1
  cp "$TLS_DIR/server.crt" "$data/server.crt"
  cp "$TLS_DIR/server.key" "$data/server.key"
  chmod 600 "$data/server.key"
  if [ "$(id -u)" = 0 ]; then chown postgres "$data/server.crt" "$data/server.key"; fi
  grep -q "^ssl = on" "$data/postgresql.conf" || cat >>"$data/postgresql.conf" <<CONF
# outbox relay: TLS from the local CA in $TLS_DIR (plain TCP is still accepted)
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
CONF
}

start_postgres() {
  mkdir -p "$OUTBOX_RUN_DIR"
  ensure_tls
  local bin
  bin=$(pg_server_bin)
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    log "postgres: initdb in $PG_DIR/data"
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
    printf '%s\n' "$OUTBOX_PG_PASSWORD" >"$PG_DIR/pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR/pwfile"
    as_pg_user "$bin/initdb" -D "$PG_DIR/data" -U postgres --pwfile="$PG_DIR/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log"
    rm -f "$PG_DIR/pwfile"
    cat >>"$PG_DIR/data/postgresql.conf" <<CONF
# outbox relay: local test server
listen_addresses = '127.0.0.1'
port = $PG_PORT
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
  install_pg_tls "$PG_DIR/data"
  if [ -f "$PG_DIR/data/postmaster.pid" ] && pg_ready; then
    log "postgres: already running on 127.0.0.1:$PG_PORT"
    # A server started before TLS was configured takes ssl = on with a reload.
    if [ "$(psql_at "$PG_PORT" -d postgres -qtAc "SHOW ssl")" != on ]; then
      psql_at "$PG_PORT" -d postgres -qtAc "SELECT pg_reload_conf()" >/dev/null
    fi
  else
    port_free_or_die "$PG_PORT" postgres
    as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 -o "-p $PG_PORT" start >/dev/null \
      || { tail -20 "$PG_DIR/server.log" >&2; die "postgres did not start"; }
    log "postgres: started on 127.0.0.1:$PG_PORT"
  fi
  psql_at "$PG_PORT" -d postgres -qtAc "SELECT 1 FROM pg_database WHERE datname='outbox'" | grep -q 1 \
    || psql_at "$PG_PORT" -d postgres -qc "CREATE DATABASE outbox" >/dev/null
}

# Stops the server in data directory $1 (fast shutdown) if it runs.
stop_pg_dir() {
  local data=$1 name=$2
  if [ -f "$data/postmaster.pid" ]; then
    as_pg_user "$(pg_server_bin)/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    log "$name: stopped"
  fi
}

stop_postgres() {
  stop_standby
  stop_pg_dir "$PG_DIR/data" postgres
}

# A streaming standby of the selected version's server: base backup through the low-level backup
# API (the builds beside Debian's have no pg_basebackup, and Debian's 15 cannot back up 16+),
# a physical slot reserved before it, hot_standby_feedback, and on 17+ what failover slots need.
start_standby() {
  pg_ready || die "postgres $PG_V is not running on 127.0.0.1:$PG_PORT: start it first (scripts/services.sh start postgres)"
  local bin
  bin=$(pg_server_bin)
  if [ ! -f "$SB_DIR/data/PG_VERSION" ]; then
    log "standby: base backup of 127.0.0.1:$PG_PORT into $SB_DIR/data"
    rm -rf "$SB_DIR"
    mkdir -p "$SB_DIR/data"
    chmod 700 "$SB_DIR/data"
    psql_at "$PG_PORT" -d postgres -qtAc "SELECT pg_create_physical_replication_slot('$STANDBY_SLOT', true)
      WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '$STANDBY_SLOT')" >/dev/null
    local start_fn="pg_backup_start('outbox standby', true)" stop_fn="pg_backup_stop()"
    if [ "$PG_V" -lt 15 ]; then
      start_fn="pg_start_backup('outbox standby', true, false)"
      stop_fn="pg_stop_backup(false)"
    fi
    # One session holds the backup open while the files are copied (WAL comes from the slot).
    PGOPTIONS='-c client_min_messages=warning' psql_at "$PG_PORT" -d postgres -qtA <<SQL >/dev/null
SELECT $start_fn;
\\! tar -C '$PG_DIR/data' -cf - --warning=no-file-changed --warning=no-file-removed --exclude=./postmaster.pid --exclude=./postmaster.opts --exclude='./pg_wal/*' --exclude='./pg_replslot/*' . | tar -C '$SB_DIR/data' -xf - ; echo \$? >'$SB_DIR/copy.rc'
SELECT labelfile FROM $stop_fn \\g '$SB_DIR/data/backup_label'
SQL
    [ "$(cat "$SB_DIR/copy.rc")" = 0 ] || die "standby: copying $PG_DIR/data failed"
    # The copy must not inherit the primary's slot protection list (it names the standby's own slot).
    sed -i '/^synchronized_standby_slots/d' "$SB_DIR/data/postgresql.auto.conf"
    touch "$SB_DIR/data/standby.signal"
    cat >>"$SB_DIR/data/postgresql.conf" <<CONF
# outbox relay: streaming standby of 127.0.0.1:$PG_PORT
port = $SB_PORT
unix_socket_directories = '$SB_DIR'
hot_standby = on
hot_standby_feedback = on
primary_slot_name = '$STANDBY_SLOT'
primary_conninfo = 'host=127.0.0.1 port=$PG_PORT user=postgres password=$OUTBOX_PG_PASSWORD dbname=outbox application_name=$STANDBY_SLOT'
CONF
    if [ "$PG_V" -ge 17 ]; then
      printf '%s\n' "sync_replication_slots = on" >>"$SB_DIR/data/postgresql.conf"
    fi
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$SB_DIR"; fi
  fi
  if [ -f "$SB_DIR/data/postmaster.pid" ] && pg_ready_at "$SB_PORT"; then
    log "standby: already running on 127.0.0.1:$SB_PORT"
  else
    port_free_or_die "$SB_PORT" standby
    as_pg_user "$bin/pg_ctl" -D "$SB_DIR/data" -l "$SB_DIR/server.log" -w -t 60 -o "-p $SB_PORT" start >/dev/null \
      || { tail -20 "$SB_DIR/server.log" >&2; die "standby did not start"; }
    log "standby: started on 127.0.0.1:$SB_PORT"
  fi
  if [ "$(psql_at "$SB_PORT" -d postgres -qtAc "SELECT pg_is_in_recovery()")" = t ]; then
    wait_for "[ \"\$(psql_at $PG_PORT -d postgres -qtAc \"SELECT count(*) FROM pg_stat_replication WHERE application_name = '$STANDBY_SLOT' AND state = 'streaming'\")\" = 1 ]" 60 \
      || { tail -20 "$SB_DIR/server.log" >&2; die "standby on 127.0.0.1:$SB_PORT does not stream from 127.0.0.1:$PG_PORT"; }
    if [ "$PG_V" -ge 17 ]; then
      # Logical walsenders of failover slots wait until this standby has the WAL they send.
      psql_at "$PG_PORT" -d postgres -qc "ALTER SYSTEM SET synchronized_standby_slots = '$STANDBY_SLOT'" -c "SELECT pg_reload_conf()" >/dev/null
    fi
  fi
}

promote_standby() {
  [ -f "$SB_DIR/data/postmaster.pid" ] || die "no standby runs in $SB_DIR: scripts/services.sh start-standby first"
  if [ "$(psql_at "$SB_PORT" -d postgres -qtAc "SELECT pg_is_in_recovery()")" = t ]; then
    as_pg_user "$(pg_server_bin)/pg_ctl" -D "$SB_DIR/data" -w -t 60 promote >/dev/null
  fi
  wait_for "[ \"\$(psql_at $SB_PORT -d postgres -qtAc 'SELECT pg_is_in_recovery()')\" = f ]" 60 \
    || die "standby on 127.0.0.1:$SB_PORT did not leave recovery"
  log "standby: promoted; 127.0.0.1:$SB_PORT accepts writes"
}

stop_standby() {
  [ -d "$SB_DIR" ] || return 0
  stop_pg_dir "$SB_DIR/data" standby
  if pg_ready; then
    if [ "$PG_V" -ge 17 ]; then
      psql_at "$PG_PORT" -d postgres -qc "ALTER SYSTEM RESET synchronized_standby_slots" -c "SELECT pg_reload_conf()" >/dev/null || true
    fi
    psql_at "$PG_PORT" -d postgres -qtAc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
      WHERE slot_name = '$STANDBY_SLOT' AND NOT active" >/dev/null || true
  fi
  rm -rf "$SB_DIR"
}

# --- Kafka --------------------------------------------------------------------------------------

kafka_ready() { kcat -b "127.0.0.1:$OUTBOX_KAFKA_PORT" -L -m 2 -t __probe_nonexistent >/dev/null 2>&1; }

# Probes with PLAIN: Debian 12's librdkafka (2.0.2, below 2.6.1) fails SCRAM against Kafka 4 brokers.
kafka_sasl_ready() {
  kcat -b "127.0.0.1:$OUTBOX_KAFKA_SASL_PORT" -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN \
    -X "sasl.username=$OUTBOX_KAFKA_SASL_USER" -X "sasl.password=$OUTBOX_KAFKA_SASL_PASSWORD" \
    -X "ssl.ca.location=$TLS_DIR/ca.crt" -L -m 2 -t __probe_nonexistent >/dev/null 2>&1
}

scram_marker() { printf '%s' "$OUTBOX_KAFKA_SASL_USER:$OUTBOX_KAFKA_SASL_PASSWORD" | sha256sum | cut -d' ' -f1; }

start_kafka() {
  [ -d "$KAFKA_LIBS" ] || die "Kafka jars missing in $KAFKA_LIBS: run scripts/install.sh"
  mkdir -p "$KAFKA_DIR"
  ensure_tls
  if pid_alive "$KAFKA_DIR/kafka.pid"; then
    wait_for kafka_ready 60 || die "kafka (pid $(cat "$KAFKA_DIR/kafka.pid")) runs but does not answer"
    log "kafka: already running on 127.0.0.1:$OUTBOX_KAFKA_PORT"
    wait_for kafka_sasl_ready 10 || log "kafka: warning: no SASL_SSL listener on 127.0.0.1:$OUTBOX_KAFKA_SASL_PORT (a broker started by an older services.sh); restart it: scripts/services.sh stop kafka && scripts/services.sh start kafka"
    return
  fi
  local port
  for port in "$OUTBOX_KAFKA_PORT" "$OUTBOX_KAFKA_CONTROLLER_PORT" "$OUTBOX_KAFKA_TLS_PORT" "$OUTBOX_KAFKA_SASL_PORT" \
    "$OUTBOX_KAFKA_PROXIED_PORT"; do
    port_free_or_die "$port" kafka
  done
  cat >"$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$OUTBOX_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$OUTBOX_KAFKA_PORT,CONTROLLER://127.0.0.1:$OUTBOX_KAFKA_CONTROLLER_PORT,SSL://127.0.0.1:$OUTBOX_KAFKA_TLS_PORT,SASL_SSL://127.0.0.1:$OUTBOX_KAFKA_SASL_PORT,PROXIED://127.0.0.1:$OUTBOX_KAFKA_PROXIED_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$OUTBOX_KAFKA_PORT,SSL://127.0.0.1:$OUTBOX_KAFKA_TLS_PORT,SASL_SSL://127.0.0.1:$OUTBOX_KAFKA_SASL_PORT,PROXIED://127.0.0.1:$OUTBOX_KAFKA_PROXY_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,PROXIED:PLAINTEXT
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/kafka-server.p12
ssl.keystore.password=$KAFKA_KEYSTORE_PASSWORD
ssl.key.password=$KAFKA_KEYSTORE_PASSWORD
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$OUTBOX_KAFKA_SASL_USER="$OUTBOX_KAFKA_SASL_PASSWORD";
log.dirs=$KAFKA_DIR/data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
# Timed-out transactions are aborted within a second of their timeout instead of ten (tests of a stalled relay).
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
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
  local scram="SCRAM-SHA-512=[name=$OUTBOX_KAFKA_SASL_USER,password=$OUTBOX_KAFKA_SASL_PASSWORD]"
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    # The SCRAM user is written into the cluster metadata at format time: no extra JVM per start.
    java -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" -cp "$cp" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$KAFKA_DIR/server.properties" --add-scram "$scram" >"$KAFKA_DIR/format.log" 2>&1 \
      || { cat "$KAFKA_DIR/format.log" >&2; die "kafka storage format failed"; }
    scram_marker >"$KAFKA_DIR/data/.scram"
  fi
  setsid nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" -cp "$cp" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >>"$KAFKA_DIR/server.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_DIR/kafka.pid"
  if ! wait_for kafka_ready 90; then
    tail -30 "$KAFKA_DIR/server.log" >&2
    die "kafka did not answer on 127.0.0.1:$OUTBOX_KAFKA_PORT within 90 s"
  fi
  if [ "$(cat "$KAFKA_DIR/data/.scram" 2>/dev/null)" != "$(scram_marker)" ]; then
    # A data directory formatted before the SCRAM listener existed, or another password: set it.
    log "kafka: setting the SCRAM-SHA-512 credentials of $OUTBOX_KAFKA_SASL_USER"
    java -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" -cp "$cp" kafka.admin.ConfigCommand \
      --bootstrap-server "127.0.0.1:$OUTBOX_KAFKA_PORT" --alter --entity-type users \
      --entity-name "$OUTBOX_KAFKA_SASL_USER" \
      --add-config "SCRAM-SHA-512=[password=$OUTBOX_KAFKA_SASL_PASSWORD]" >"$KAFKA_DIR/scram.log" 2>&1 \
      || { cat "$KAFKA_DIR/scram.log" >&2; die "kafka: could not set the SCRAM credentials"; }
    scram_marker >"$KAFKA_DIR/data/.scram"
  fi
  if ! wait_for kafka_sasl_ready 60; then
    tail -30 "$KAFKA_DIR/server.log" >&2
    die "kafka's SASL_SSL listener 127.0.0.1:$OUTBOX_KAFKA_SASL_PORT did not accept $OUTBOX_KAFKA_SASL_USER within 60 s"
  fi
  log "kafka: started on 127.0.0.1:$OUTBOX_KAFKA_PORT, TLS $OUTBOX_KAFKA_TLS_PORT, SASL_SSL $OUTBOX_KAFKA_SASL_PORT (pid $(cat "$KAFKA_DIR/kafka.pid"))"
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
export OUTBOX_PG_PORT=$PG_PORT
export OUTBOX_PG_PASSWORD='$OUTBOX_PG_PASSWORD'
export OUTBOX_PG_DATA='$PG_DIR/data'
export OUTBOX_KAFKA_BROKERS=127.0.0.1:$OUTBOX_KAFKA_PORT
# The ports too, so that a test that restarts a service through this script restarts this run's, not the defaults.
export OUTBOX_KAFKA_PORT=$OUTBOX_KAFKA_PORT
export OUTBOX_KAFKA_CONTROLLER_PORT=$OUTBOX_KAFKA_CONTROLLER_PORT
export OUTBOX_REDIS_PORT=$OUTBOX_REDIS_PORT
export OUTBOX_KAFKA_TOOLS_LIBS='$KAFKA_TOOLS_LIBS'
export OUTBOX_REDIS_URL=redis://127.0.0.1:$OUTBOX_REDIS_PORT
export OUTBOX_SERVICES_SCRIPT='$OUTBOX_ROOT/scripts/services.sh'
export OUTBOX_RUN_DIR='$OUTBOX_RUN_DIR'
export OUTBOX_PG_VERSION=$PG_V
export OUTBOX_PG${PG_V}_PORT=$PG_PORT
export OUTBOX_PG${PG_V}_STANDBY_PORT=$SB_PORT
$([ "$PG_V" = 15 ] || echo "export OUTBOX_PG15_PORT=$(pg_port 15)")
export OUTBOX_PG_BIN='$(pg_server_bin)'
export OUTBOX_PG_STAGE_DIR='$OUTBOX_PG_STAGE_DIR'
export OUTBOX_PG_PAIR_PORT=$((OUTBOX_PG_PORT + 40))
export OUTBOX_PG_SCRATCH_PORT=$((OUTBOX_PG_PORT + 67))
export OUTBOX_TLS_CA='$TLS_DIR/ca.crt'
export OUTBOX_TLS_CLIENT_CERT='$TLS_DIR/client.crt'
export OUTBOX_TLS_CLIENT_KEY='$TLS_DIR/client.key'
export OUTBOX_PG_TLS_DSN='$(pg_admin_dsn) sslmode=verify-full sslrootcert=$TLS_DIR/ca.crt'
export OUTBOX_KAFKA_TLS_BROKERS=127.0.0.1:$OUTBOX_KAFKA_TLS_PORT
export OUTBOX_KAFKA_SASL_BROKERS=127.0.0.1:$OUTBOX_KAFKA_SASL_PORT
export OUTBOX_KAFKA_PROXIED_PORT=$OUTBOX_KAFKA_PROXIED_PORT
export OUTBOX_KAFKA_PROXY_PORT=$OUTBOX_KAFKA_PROXY_PORT
export OUTBOX_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export OUTBOX_KAFKA_SASL_USER='$OUTBOX_KAFKA_SASL_USER'
export OUTBOX_KAFKA_SASL_PASSWORD='$OUTBOX_KAFKA_SASL_PASSWORD'
ENV
  if [ -f "$SB_DIR/data/PG_VERSION" ]; then
    cat >>"$ENV_FILE" <<ENV
export OUTBOX_PG_STANDBY_PORT=$SB_PORT
export OUTBOX_PG_STANDBY_DSN='$(pg_dsn_at "$SB_PORT")'
export OUTBOX_PG_STANDBY_DATA='$SB_DIR/data'
export OUTBOX_PG_STANDBY_SLOT=$STANDBY_SLOT
ENV
  fi
}

status() {
  pg_ready && echo "postgres: up on 127.0.0.1:$PG_PORT" || echo "postgres: down"
  if [ -d "$SB_DIR" ]; then pg_ready_at "$SB_PORT" && echo "standby: up on 127.0.0.1:$SB_PORT" || echo "standby: down"; fi
  kafka_ready && echo "kafka: up on 127.0.0.1:$OUTBOX_KAFKA_PORT" || echo "kafka: down"
  redis_ready && echo "redis: up on 127.0.0.1:$OUTBOX_REDIS_PORT" || echo "redis: down"
}

# Runs `services.sh "$@"` once for every other PostgreSQL version with a data directory here.
for_other_versions() {
  local d v
  for d in "$OUTBOX_RUN_DIR"/postgres-[0-9]*; do
    v=${d##*/postgres-}
    case "$v" in *-standby | "$PG_V") continue ;; esac
    [ -d "$d" ] && OUTBOX_PG_VERSION=$v "$0" "$@"
  done
  return 0
}

cmd=${1:-}
shift || true
targets=("$@")
all=0
[ ${#targets[@]} -gt 0 ] || { targets=(postgres kafka redis); all=1; }
case "$cmd" in
  start)
    for t in "${targets[@]}"; do "start_$t"; done
    write_env
    cat "$ENV_FILE"
    ;;
  stop)
    if [ "$all" = 1 ] && [ "$PG_V" = 15 ]; then
      for_other_versions stop postgres
      # Primary/standby pairs that tests made in run directories of their own (tests/support pg_standby).
      for d in "$OUTBOX_RUN_DIR"/pairs/*/; do
        if [ -d "$d" ]; then OUTBOX_PG_VERSION=15 OUTBOX_RUN_DIR=${d%/} "$0" stop; fi
      done
    fi
    for ((i = ${#targets[@]} - 1; i >= 0; i--)); do "stop_${targets[i]}"; done
    ;;
  start-standby) start_standby; write_env; cat "$ENV_FILE" ;;
  promote-standby) promote_standby ;;
  crash-primary) as_pg_user "$(pg_server_bin)/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 60 stop >/dev/null
                 log "postgres $PG_V: crashed (immediate stop)" ;;
  stop-standby) stop_standby; write_env ;;
  status) status ;;
  env) write_env; cat "$ENV_FILE" ;;
  *) echo "usage: $0 start|stop|status|env [postgres|kafka|redis ...] | start-standby|promote-standby|stop-standby|crash-primary" >&2; exit 2 ;;
esac
