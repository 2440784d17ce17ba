#!/usr/bin/env bash
# End-to-end relay throughput: N outbox rows already committed in the slot, timed from relay start
# until the slot's confirmed_flush_lsn passes them (every record acknowledged by Kafka). The
# references, in the same run, are kcat producing N records of the same size with the same producer
# settings (idempotent, acks=all, lz4, the relay's linger.ms), and pg_recvlogical draining a second pgoutput
# slot that holds the same rows (the source side's ceiling); the ratios are what to compare across
# machines. The relay's own CPU time per event is printed too.
#
#   tests/bench/relay_throughput.sh [N] [ROWS_PER_TRANSACTION]      (services must be running)
#
# OUTBOX_BENCH_SHAPE picks the source: `table` (default: the default outbox table, jsonb payloads, a publication of
# every column), `bytea` (bytea payloads and a publication with a column list of the six mapped columns), or
# `messages` (no row at all: pg_logical_emit_message(true, ...) envelopes, source.logical_messages). The load's own
# time is printed too: what writing the events costs the service.
# OUTBOX_BENCH_DELIVERY=exactly_once runs the relay with Kafka transactions (tests/bench/relay_eos_ratio.sh
# runs both modes one after the other and prints the ratio); OUTBOX_BENCH_TX_RECORDS sets
# sink.transaction_max_records and OUTBOX_BENCH_TX_TIME sink.transaction_max_time.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib.sh"
source "$root/tests/bench/bench_lib.sh"
n=${1:-200000}
per_tx=${2:-100}

shape=${OUTBOX_BENCH_SHAPE:-table}
case $shape in table | bytea | messages) ;; *) die "OUTBOX_BENCH_SHAPE is '$shape': table, bytea or messages" ;; esac
bench_begin bench
source_lines=''
recv_options=()
case $shape in
  bytea)
    pg -c "ALTER TABLE ${tag}_outbox ALTER COLUMN payload TYPE bytea USING convert_to(payload::text, 'UTF8')"
    pg -c "CREATE PUBLICATION ${tag}_pub FOR TABLE ${tag}_outbox (id, aggregate_type, aggregate_id, event_type, payload,
      headers)
      WITH (publish = 'insert')" ;;
  messages)
    source_lines="  logical_messages:
    prefix: ${tag}"
    recv_options=(-o messages=true) ;;
esac
sink="  delivery: ${OUTBOX_BENCH_DELIVERY:-at_least_once}
  checkpoint_topic: ${tag}_checkpoints"
[ -z "${OUTBOX_BENCH_TX_RECORDS:-}" ] || sink+=$'\n'"  transaction_max_records: $OUTBOX_BENCH_TX_RECORDS"
[ -z "${OUTBOX_BENCH_TX_TIME:-}" ] || sink+=$'\n'"  transaction_max_time: $OUTBOX_BENCH_TX_TIME"
bench_relay_config "$sink" "$source_lines"
# Create the slot and publication, then stop: the rows below wait in the slot.
bench_start_relay "$dir/setup.log"
bench_stop_relay
# The source-side reference: a second slot on the same publication sees the same rows.
pg -c "SELECT pg_create_logical_replication_slot('${tag}_src', 'pgoutput')" >/dev/null

# The event's payload, as SQL over g (its number); each \gexec statement below is one transaction of $per_tx events.
payload_sql="jsonb_build_object('seq', g, 'customer', 'c-' || g, 'total_cents', g * 7, 'note', repeat('x', 100))"
payload=${payload_sql//\'/\'\'}  # inside the format() literal below
case $shape in
  table) load="INSERT INTO ${tag}_outbox (aggregate_type, aggregate_id, event_type, payload)
    SELECT %L, ''agg-'' || (g %% 1000), ''order_placed'', $payload FROM generate_series(%s, %s) g" ;;
  bytea) load="INSERT INTO ${tag}_outbox (aggregate_type, aggregate_id, event_type, payload)
    SELECT %L, ''agg-'' || (g %% 1000), ''order_placed'', convert_to(($payload)::text, ''UTF8'')
    FROM generate_series(%s, %s) g" ;;
  messages) load="SELECT count(pg_logical_emit_message(true, %1\$L, jsonb_build_object(''id'', gen_random_uuid(),
    ''aggregate_type'', %1\$L, ''aggregate_id'', ''agg-'' || (g %% 1000), ''event_type'', ''order_placed'',
    ''payload'', $payload)::text)) FROM generate_series(%2\$s, %3\$s) g" ;;
esac
log "writing $n events ($shape) in transactions of $per_tx"
l0=$(date +%s.%N)
pg >/dev/null <<SQL
SELECT format('$load', '${tag}', s, s + $per_tx - 1) FROM generate_series(1, $n, $per_tx) s \\gexec
SQL
l1=$(date +%s.%N)
target=$(pg -c "SELECT pg_current_wal_insert_lsn()")
value_bytes=$(pg -c "SELECT avg(length(($payload_sql)::text))::int FROM generate_series(1, 1000) g")

t0=$(date +%s.%N)
"$relay_bin" --config "$dir/relay.yaml" 2>"$dir/relay.log" &
relay_pid=$!
peak_kib=0
until [ "$(pg -c "SELECT confirmed_flush_lsn >= '$target' FROM pg_replication_slots WHERE slot_name = '$tag'")" = t ]; do
  kill -0 "$relay_pid" 2>/dev/null || { cat "$dir/relay.log"; die "relay exited"; }
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$relay_pid/status" 2>/dev/null || echo 0)
  [ "${hwm:-0}" -gt "$peak_kib" ] && peak_kib=$hwm
  sleep 0.05  # poll interval of the until-loop above
done
t1=$(date +%s.%N)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$relay_pid/status" 2>/dev/null || echo 0)
[ "${hwm:-0}" -gt "$peak_kib" ] && peak_kib=$hwm
# utime + stime, in clock ticks (fields 14 and 15; the command name holds no spaces here)
cpu_ticks=$(awk '{print $14 + $15}' "/proc/$relay_pid/stat")
bench_stop_relay

ts0=$(date +%s.%N)
pg_recvlogical -d "$OUTBOX_PG_DSN" --slot "${tag}_src" --start --no-loop -E "$target" -f /dev/null \
  -o proto_version=1 -o "publication_names=${tag}_pub" "${recv_options[@]}"
ts1=$(date +%s.%N)

# Reference: the same number of records of the same size, produced by kcat (librdkafka).
python3 - "$n" "$value_bytes" >"$dir/records.txt" <<'PY'
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    print(f"agg-{i % 1000}\t" + ("{\"seq\": %d, \"note\": \"" % i).ljust(size - 2, "x") + "\"}")
PY
t2=$(date +%s.%N)
kcat -P -b "$OUTBOX_KAFKA_BROKERS" -t "${tag}_reference" -K $'\t' -z lz4 \
  -X enable.idempotence=true -X acks=all -X linger.ms="$bench_linger_ms" -X partitioner=murmur2_random <"$dir/records.txt"
t3=$(date +%s.%N)

python3 - "$n" "$t0" "$t1" "$t2" "$t3" "$peak_kib" "$value_bytes" "$per_tx" "$ts0" "$ts1" "$cpu_ticks" \
  "$(getconf CLK_TCK)" "${OUTBOX_BENCH_DELIVERY:-at_least_once}" "$shape" "$l0" "$l1" <<'PY'
import sys
n = int(sys.argv[1]); t0, t1, t2, t3 = map(float, sys.argv[2:6]); peak = int(sys.argv[6])
ts0, ts1 = float(sys.argv[9]), float(sys.argv[10]); cpu_s = int(sys.argv[11]) / int(sys.argv[12])
relay, ref, source = n / (t1 - t0), n / (t3 - t2), n / (ts1 - ts0)
l0, l1 = float(sys.argv[15]), float(sys.argv[16])
print(f"events: {n} ({sys.argv[8]} per transaction, ~{sys.argv[7]} B values), delivery {sys.argv[13]}, source {sys.argv[14]}")
print(f"load:   {l1 - l0:.2f} s to write them ({n / (l1 - l0):,.0f} events/s from one session)")
print(f"relay:  {relay:,.0f} events/s end to end (slot -> Kafka acked -> LSN confirmed), peak RSS {peak / 1024:.1f} MiB")
print(f"kcat:   {ref:,.0f} records/s (same size and producer settings)")
print(f"source: {source:,.0f} rows/s (pg_recvlogical draining a pgoutput slot with the same rows)")
print(f"ratio:  {relay / ref:.2f} of the bare producer, {relay / source:.2f} of the bare source")
print(f"relay CPU: {cpu_s:.2f} s, {cpu_s / n * 1e6:.1f} us/event ({cpu_s / (t1 - t0):.0%} of one core while relaying)")
PY
