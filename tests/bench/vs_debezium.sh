#!/usr/bin/env bash
# The relay side by side with Debezium on one load, on PostgreSQL and Kafka of the benchmark's own.
#
#   tests/bench/vs_debezium.sh [N] [ROWS_PER_TRANSACTION] [PAYLOAD_BYTES]     (defaults 200000 100 200)
#
# It starts private services (scripts/services.sh with OUTBOX_RUN_DIR=.run-bench and ports of its own, stopped at
# the end), makes one outbox table, one pgoutput slot per tool on one publication, and the two topics (3
# partitions each), then commits N rows once. The tools then drain the same rows one after the other:
#   relay      outbox-relay with its defaults;
#   debezium   Debezium's PostgreSQL connector (tests/bench/debezium/pom.xml, from Maven Central) with its Outbox
#              EventRouter, in Kafka Connect standalone (Kafka's own, from kafka-tools), snapshot.mode=no_data on
#              its slot, StringConverter for key and value, and the relay's producer settings (idempotent,
#              acks=all, lz4, the relay's linger.ms).
# For each: events/s from its start until all N records are in Kafka (the topic's end offsets, read with kcat every
# 100 ms), the steady rate between 10 % and 90 % of them, the time to the first record, CPU per event (its process's
# user + system time) and peak RSS. A source reference in the same run: pg_recvlogical draining a third slot with
# the same rows while a kcat producer loads the broker as the tools do (the walsender's ceiling with the broker
# busy), so "relay / ceiling" means what it says. OUTBOX_BENCH_ORDER=debezium runs Debezium first.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export OUTBOX_RUN_DIR=${OUTBOX_BENCH_RUN_DIR:-$root/.run-bench}
export OUTBOX_PG_PORT=${OUTBOX_BENCH_PG_PORT:-25432}
export OUTBOX_KAFKA_PORT=${OUTBOX_BENCH_KAFKA_PORT:-20092}
export OUTBOX_KAFKA_CONTROLLER_PORT=$((OUTBOX_KAFKA_PORT + 1))
export OUTBOX_REDIS_PORT=${OUTBOX_BENCH_REDIS_PORT:-17379}
source "$root/scripts/lib.sh"
n=${1:-200000}
per_tx=${2:-100}
payload_bytes=${3:-200}
for v in "$n" "$per_tx" "$payload_bytes"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || die "usage: tests/bench/vs_debezium.sh [N] [ROWS_PER_TRANSACTION] [PAYLOAD_BYTES] (got '$v')"
done
[ "$payload_bytes" -ge 40 ] || die "PAYLOAD_BYTES: at least 40 (the JSON around the padding)"

# The connector and its dependencies, resolved once into the cache like the broker's jars.
dbz_pom=$root/tests/bench/debezium/pom.xml
dbz_version=$(sed -n 's:.*<debezium.version>\(.*\)</debezium.version>.*:\1:p' "$dbz_pom")
plugin_dir=$OUTBOX_CACHE/debezium-$dbz_version/plugin
if [ ! -f "$plugin_dir/.complete" ] || [ "$(cat "$plugin_dir/.complete")" != "$(sha256sum "$dbz_pom" | cut -d' ' -f1)" ]; then
  log "resolving Debezium $dbz_version with Maven into $plugin_dir"
  rm -rf "$plugin_dir"
  mkdir -p "$plugin_dir/debezium-connector-postgres"
  mvn -q -B -f "$dbz_pom" dependency:copy-dependencies -DincludeScope=runtime -DexcludeGroupIds=org.apache.kafka \
    -DoutputDirectory="$plugin_dir/debezium-connector-postgres"
  sha256sum "$dbz_pom" | cut -d' ' -f1 >"$plugin_dir/.complete"
fi
[ -d "$KAFKA_TOOLS_LIBS" ] || die "no Kafka tools (Connect's runtime) in $KAFKA_TOOLS_LIBS: scripts/install.sh"

log "private services in $OUTBOX_RUN_DIR (PostgreSQL $OUTBOX_PG_PORT, Kafka $OUTBOX_KAFKA_PORT)"
"$root/scripts/services.sh" start >/dev/null
source "$root/tests/bench/bench_lib.sh"
connect_pid=''
bench_cleanup() {
  if [ -n "$connect_pid" ]; then
    kill -9 "$connect_pid" 2>/dev/null || true
    wait "$connect_pid" 2>/dev/null || true
  fi
}
bench_teardown() { "$root/scripts/services.sh" stop >/dev/null 2>&1; }
bench_begin vs

relay_topic=${tag}_relay
dbz_topic=${tag}_dbz
bench_create_topic "$relay_topic"
bench_create_topic "$dbz_topic"
bench_create_topic "${tag}_load"
# The relay makes its slot and the publication, then stops; Debezium's slot and the reference's are made beside it,
# all before the load, so that every slot holds exactly the load.
bench_relay_config
bench_start_relay "$dir/setup.log"
bench_stop_relay
pg -c "SELECT pg_create_logical_replication_slot('${tag}_dbz', 'pgoutput')" >/dev/null
pg -c "SELECT pg_create_logical_replication_slot('${tag}_src', 'pgoutput')" >/dev/null

log "inserting $n rows in transactions of $per_tx, payloads of about $payload_bytes bytes"
pad=$((payload_bytes - 36))
pg >/dev/null <<SQL
SELECT format('INSERT INTO ${tag}_outbox (aggregate_type, aggregate_id, event_type, payload)
  SELECT %L, ''agg-'' || (g %% 1000), ''order_placed'', jsonb_build_object(''seq'', g, ''note'', repeat(''x'', $pad))
  FROM generate_series(%s, %s) g', '${relay_topic}', s, least(s + $per_tx - 1, $n))
  FROM generate_series(1, $n, $per_tx) s \\gexec
SQL
target=$(pg -c "SELECT pg_current_wal_insert_lsn()")
value_bytes=$(pg -c "SELECT avg(length(payload::text))::int FROM ${tag}_outbox")

# watch NAME TOPIC PID T0: polls TOPIC's end offsets until N records are in, with PID's peak RSS and CPU time;
# writes T0 (the tool's start) to $dir/NAME.start, its samples (time, records) to $dir/NAME.samples and its
# figures (peak RSS in KiB, CPU ticks) to $dir/NAME.figures.
watch() {
  local name=$1 topic=$2 pid=$3 peak=0 hwm count=0
  echo "$4" >"$dir/$name.start"
  : >"$dir/$name.samples"
  while [ "$count" -lt "$n" ]; do
    kill -0 "$pid" 2>/dev/null || { tail -30 "$dir/$name.log"; die "$name exited"; }
    count=$(kcat -Q -b "$OUTBOX_KAFKA_BROKERS" -t "$topic:0:-1" -t "$topic:1:-1" -t "$topic:2:-1" 2>/dev/null \
      | awk '{s += $4} END {print s + 0}')
    echo "$(date +%s.%N) $count" >>"$dir/$name.samples"
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${hwm:-0}" -gt "$peak" ] && peak=$hwm
    sleep 0.1  # the poll interval: the resolution of the time to the first record
  done
  # utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat, after the command name in parentheses)
  echo "$peak $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')" >"$dir/$name.figures"
}

run_relay() {
  log "relay: draining its slot"
  local t0
  t0=$(date +%s.%N)
  "$relay_bin" --config "$dir/relay.yaml" 2>"$dir/relay.log" &
  relay_pid=$!
  watch relay "$relay_topic" "$relay_pid" "$t0"
  bench_stop_relay
}

run_debezium() {
  log "debezium: draining its slot"
  cat >"$dir/worker.properties" <<PROPS
bootstrap.servers=$OUTBOX_KAFKA_BROKERS
listeners=http://127.0.0.1:$((OUTBOX_KAFKA_PORT + 10))
plugin.path=$plugin_dir
offset.storage.file.filename=$dir/connect.offsets
offset.flush.interval.ms=1000
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
producer.enable.idempotence=true
producer.acks=all
producer.compression.type=lz4
producer.linger.ms=$bench_linger_ms
PROPS
  cat >"$dir/connector.properties" <<PROPS
name=$tag
connector.class=io.debezium.connector.postgresql.PostgresConnector
tasks.max=1
database.hostname=127.0.0.1
database.port=$OUTBOX_PG_PORT
database.user=postgres
database.password=$OUTBOX_PG_PASSWORD
database.dbname=outbox
topic.prefix=$tag
plugin.name=pgoutput
slot.name=${tag}_dbz
publication.name=${tag}_pub
publication.autocreate.mode=disabled
snapshot.mode=no_data
table.include.list=public.${tag}_outbox
transforms=outbox
transforms.outbox.type=io.debezium.transforms.outbox.EventRouter
transforms.outbox.table.field.event.id=id
transforms.outbox.table.field.event.key=aggregate_id
transforms.outbox.table.field.event.payload=payload
transforms.outbox.route.by.field=aggregate_type
transforms.outbox.route.topic.replacement=$dbz_topic
PROPS
  local t0
  t0=$(date +%s.%N)
  java -Xms256m -Dlog4j2.level=WARN -cp "$KAFKA_TOOLS_LIBS/*" org.apache.kafka.connect.cli.ConnectStandalone \
    "$dir/worker.properties" "$dir/connector.properties" >"$dir/debezium.log" 2>&1 &
  connect_pid=$!
  watch debezium "$dbz_topic" "$connect_pid" "$t0"
  bench_cleanup
  connect_pid=''
}

run_reference() {
  log "reference: pg_recvlogical draining its slot while kcat loads the broker"
  python3 - "$n" "$value_bytes" >"$dir/records.txt" <<'PY'
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    print(f"agg-{i % 1000}\t" + ("{\"seq\": %d, \"note\": \"" % i).ljust(size - 2, "x") + "\"}")
PY
  kcat -P -b "$OUTBOX_KAFKA_BROKERS" -t "${tag}_load" -K $'\t' -z lz4 -X enable.idempotence=true -X acks=all \
    -X linger.ms="$bench_linger_ms" <"$dir/records.txt" &
  local load_pid=$! t0 t1
  t0=$(date +%s.%N)
  pg_recvlogical -d "$OUTBOX_PG_DSN" --slot "${tag}_src" --start --no-loop -E "$target" -f /dev/null \
    -o proto_version=1 -o "publication_names=${tag}_pub"
  t1=$(date +%s.%N)
  wait "$load_pid" || true
  echo "$t0 $t1" >"$dir/reference.figures"
}

if [ "${OUTBOX_BENCH_ORDER:-relay}" = debezium ]; then
  run_debezium
  run_relay
else
  run_relay
  run_debezium
fi
run_reference

python3 - "$dir" "$n" "$per_tx" "$value_bytes" "$(getconf CLK_TCK)" "$dbz_version" <<'PY'
import sys
d, n, per_tx, value_bytes, tck, dbz = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
def figures(name):
    start = float(open(f"{d}/{name}.start").read())
    samples = [(float(t) - start, int(c)) for t, c in (line.split() for line in open(f"{d}/{name}.samples"))]
    peak_kib, ticks = map(int, open(f"{d}/{name}.figures").read().split())
    end = next(t for t, c in samples if c >= n)
    first = next(t for t, c in samples if c > 0)
    t10 = next(t for t, c in samples if c >= n * 0.1)
    t90 = next(t for t, c in samples if c >= n * 0.9)
    steady = (0.8 * n) / (t90 - t10) if t90 > t10 else float("nan")
    cpu_s = ticks / tck
    return {"rate": n / end, "steady": steady, "first": first, "cpu_us": cpu_s / n * 1e6, "rss": peak_kib / 1024}
r, z = figures("relay"), figures("debezium")
t0, t1 = map(float, open(f"{d}/reference.figures").read().split())
ceiling = n / (t1 - t0)
print(f"load: {n} rows, {per_tx} per transaction, ~{value_bytes} B payloads; Debezium {dbz}")
print("%-10s %14s %14s %12s %14s %12s" % ("", "events/s", "steady 10-90%", "first (s)", "CPU us/event", "peak RSS MiB"))
for name, f in (("relay", r), ("debezium", z)):
    print("%-10s %14.0f %14.0f %12.2f %14.1f %12.1f" % (name, f["rate"], f["steady"], f["first"], f["cpu_us"], f["rss"]))
print(f"source ceiling (pg_recvlogical, broker loaded by kcat): {ceiling:,.0f} rows/s")
print(f"relay / debezium: {r['rate'] / z['rate']:.2f}x events/s, {r['steady'] / z['steady']:.2f}x steady; "
      f"debezium / relay: {z['cpu_us'] / r['cpu_us']:.1f}x CPU per event, {z['rss'] / r['rss']:.1f}x RSS")
print(f"relay / ceiling: {r['rate'] / ceiling:.2f}")
PY
