#!/usr/bin/env bash
# Commit→ack latency of the relay under a steady load, next to a source-side reference measured in the same run.
#
#   tests/bench/relay_latency.sh [RATE] [SECONDS] [ROWS_PER_TRANSACTION]      (services must be running)
#
# Defaults: 1000 events/s for 60 s in transactions of 1 row. A paced loop inside PostgreSQL commits
# RATE/ROWS_PER_TRANSACTION transactions a second into a fresh outbox table while the relay streams it.
#   relay      for every record: the broker's append time (the topic is created with
#              message.timestamp.type=LogAppendTime, so the record's timestamp is when the broker wrote it, just
#              before it acknowledged it) less the record's outbox_commit_ts_ms header (PostgreSQL's commit
#              timestamp); read back with kcat.
#   reference  for every transaction: the time pg_recvlogical (pgoutput, the relay's plugin and publication) received
#              its Commit message on a second slot less the commit timestamp in it: what the walsender alone adds.
#   kafka      after the relay's run, the same rate for the same time from a paced producer (Debian's
#              python3-confluent-kafka, on the same librdkafka, with the relay's producer settings: idempotent,
#              acks=all, lz4, the same linger.ms) that puts its clock in each value, to a second LogAppendTime
#              topic: the broker's append time less that clock, i.e. what producing to this broker alone adds.
# Both clocks are this machine's; the figures have a resolution of 1 ms (the header and the append time are in
# milliseconds). The load's session commits with synchronous_commit on. Prints p50, p99, p99.9 and the maximum
# of all three, the relay's p99 less the reference's (and their ratio), less both references' together, the rate
# the load achieved, and the latency of the relay's first record on the topic.
# OUTBOX_BENCH_LINGER_MS sets the producer's linger.ms (sink.properties) instead of the relay's default, as for
# tests/bench/relay_throughput.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib.sh"
source "$root/tests/bench/bench_lib.sh"
rate=${1:-1000}
seconds=${2:-60}
per_tx=${3:-1}
for v in "$rate" "$seconds" "$per_tx"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || die "usage: tests/bench/relay_latency.sh [RATE] [SECONDS] [ROWS_PER_TRANSACTION] (got '$v')"
done
tx_rate=$(python3 -c "print($rate / $per_tx)")
transactions=$((rate * seconds / per_tx))
[ "$transactions" -gt 0 ] || die "RATE * SECONDS must be at least ROWS_PER_TRANSACTION"

ref_pid=''
bench_cleanup() {
  [ -z "$ref_pid" ] || kill "$ref_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
bench_begin lat
# The topic exists before the first record, with the broker's append time as the record timestamp.
bench_create_topic "$tag" message.timestamp.type=LogAppendTime
bench_relay_config
bench_start_relay "$dir/relay.log"

# The reference: pg_recvlogical with pgoutput (the relay's plugin, on the same publication) on a slot of its own,
# what arrives stamped with its receive time. pg_recvlogical writes each message followed by a newline; on this
# publication the slot sees only the load's transactions.
pg -c "SELECT pg_create_logical_replication_slot('${tag}_ref', 'pgoutput')" >/dev/null
python3 -u - "$dir/ref.txt" "$PG_CLIENT_BIN/pg_recvlogical" -d "$OUTBOX_PG_DSN" -S "${tag}_ref" --start -f - \
  -o proto_version=1 -o "publication_names=${tag}_pub" <<'PY' &
import os, re, signal, struct, subprocess, sys, time
out_path, cmd = sys.argv[1], sys.argv[2:]
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
def stop(*_):
    proc.terminate()
    proc.wait()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
PG_EPOCH = 946684800.0  # 2000-01-01 in Unix seconds
# A Commit message: 'C', flags 0, commit LSN, end LSN, commit timestamp (microseconds since 2000), then the newline;
# the message before it ends with a newline too. Found by a scan rather than by parsing every message, which a
# reader in Python could not do at tens of thousands of rows a second without measuring itself. Text values hold
# no NUL byte, and the LSN and time checks below refuse a look-alike made of other messages' binary fields.
commit = re.compile(rb"\nC\x00(.{24})\n", re.S)
buf = b""
with open(out_path, "w") as out:
    while True:
        chunk = os.read(proc.stdout.fileno(), 1 << 20)
        if not chunk:
            break
        received = time.time()
        buf += chunk
        last = 0
        for m in commit.finditer(buf):
            commit_lsn, end_lsn, commit_us = struct.unpack(">QQq", m.group(1))
            committed = PG_EPOCH + commit_us / 1e6
            if end_lsn > commit_lsn and abs(received - committed) < 3600:
                out.write("%.3f\n" % ((received - committed) * 1000.0))
            last = m.end() - 1  # the newline may start the next match
        buf = buf[max(last, len(buf) - 28):]
        out.flush()
PY
ref_pid=$!
wait_for "pg -c \"SELECT 1 FROM pg_replication_slots WHERE slot_name = '${tag}_ref' AND active\" | grep -q 1" 30 \
  || die "pg_recvlogical did not start"

log "load: $rate events/s for ${seconds}s, $per_tx per transaction ($transactions transactions)"
t0=$(date +%s.%N)
# As on a production server: each commit flushes its WAL, so the walsender can send it at once (the local
# services run with synchronous_commit off, where the WAL writer flushes every 200 ms).
pg >/dev/null <<SQL
SET synchronous_commit = on;
DO \$\$
DECLARE
  started double precision := extract(epoch FROM clock_timestamp());
  ahead double precision;
BEGIN
  FOR i IN 0 .. $transactions - 1 LOOP
    INSERT INTO ${tag}_outbox (aggregate_type, aggregate_id, event_type, payload)
      SELECT '${tag}', 'agg-' || ((i * $per_tx + g) % 1000), 'order_placed',
             jsonb_build_object('seq', i * $per_tx + g, 'note', repeat('x', 100))
        FROM generate_series(0, $per_tx - 1) g;
    COMMIT;
    ahead := started + (i + 1) / $tx_rate::double precision - extract(epoch FROM clock_timestamp());
    IF ahead > 0 THEN PERFORM pg_sleep(ahead); END IF;
  END LOOP;
END
\$\$;
SQL
t1=$(date +%s.%N)
target=$(pg -c "SELECT pg_current_wal_insert_lsn()")
wait_for "[ \"\$(pg -c \"SELECT confirmed_flush_lsn >= '$target' FROM pg_replication_slots WHERE slot_name = '$tag'\")\" = t ]" 300 \
  || { tail -20 "$dir/relay.log"; die "the relay did not confirm the load"; }
wait_for "[ \"\$(wc -l <'$dir/ref.txt')\" -ge $transactions ]" 120 || die "the reference did not receive every transaction"
kill "$ref_pid" 2>/dev/null || true
wait "$ref_pid" 2>/dev/null || true
ref_pid=''
kcat -C -b "$OUTBOX_KAFKA_BROKERS" -t "$tag" -o beginning -e -q -f '%T %h\n' >"$dir/records.txt"
bench_stop_relay

# The Kafka-side reference: RATE records a second for SECONDS, each value the writer's clock in ms when it wrote it.
log "kafka reference: a producer at $rate records/s for ${seconds}s"
bench_create_topic "${tag}_kafka" message.timestamp.type=LogAppendTime
# Debian's own interpreter: python3-confluent-kafka is installed for it, not for another python3 on the PATH.
/usr/bin/python3 -u - "$OUTBOX_KAFKA_BROKERS" "${tag}_kafka" "$rate" "$seconds" "$bench_linger_ms" <<'PY'
import sys, time
from confluent_kafka import Producer  # Debian's python3-confluent-kafka, on the system's librdkafka like the relay
brokers, topic, rate, seconds, linger = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all", "compression.type": "lz4",
              "linger.ms": linger, "partitioner": "murmur2_random"})
failed = []
start = time.time()
for i in range(rate * seconds):
    ahead = start + i / rate - time.time()
    if ahead > 0:
        time.sleep(ahead)
    p.produce(topic, key="agg-%d" % (i % 1000), value=str(int(time.time() * 1000)),
              on_delivery=lambda err, msg: failed.append(err) if err else None)
    p.poll(0)
if p.flush(60) or failed:
    sys.exit("the Kafka reference lost records: %s" % failed[:3])
PY
kcat -C -b "$OUTBOX_KAFKA_BROKERS" -t "${tag}_kafka" -o beginning -e -q -f '%T %s\n' >"$dir/kafka.txt"

python3 - "$dir/records.txt" "$dir/ref.txt" "$rate" "$seconds" "$per_tx" "$t0" "$t1" "$((rate * seconds / per_tx * per_tx))" \
  "$dir/kafka.txt" <<'PY'
import sys
records_path, ref_path, kafka_path = sys.argv[1], sys.argv[2], sys.argv[9]
rate, seconds, per_tx = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t0, t1, expected = float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
relay = []
first = None  # (commit ms, latency ms) of the earliest commit: the relay's first record on the topic
for line in open(records_path):
    ts, _, headers = line.rstrip("\n").partition(" ")
    commit = next((h.split("=", 1)[1] for h in headers.split(",") if h.startswith("outbox_commit_ts_ms=")), None)
    if commit is not None:
        relay.append(int(ts) - int(commit))
        if first is None or int(commit) < first[0]:
            first = (int(commit), int(ts) - int(commit))
ref = [float(x) for x in open(ref_path)]
kafka = [int(a) - int(b) for a, b in (line.split() for line in open(kafka_path) if line.strip())]
if len(relay) != expected:
    sys.exit("expected %d records in Kafka, read %d" % (expected, len(relay)))
def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100.0 * len(s)))]
def row(name, values):
    print("%-10s %9d %8.1f %8.1f %8.1f %8.1f" % (name, len(values), pct(values, 50), pct(values, 99),
                                              pct(values, 99.9), max(values)))
print("load: %d events/s asked, %.0f achieved (%d events in %.1f s), %d per transaction"
      % (rate, expected / (t1 - t0), expected, t1 - t0, per_tx))
print("%-10s %9s %8s %8s %8s %8s" % ("ms", "samples", "p50", "p99", "p99.9", "max"))
row("relay", relay)
row("reference", ref)
row("kafka", kafka)
r99, f99, k99 = pct(relay, 99), pct(ref, 99), pct(kafka, 99)
print("the relay's first record on the topic (its metadata not fetched before): %d ms" % first[1])
print("relay p99 - reference p99: %.1f ms; relay p99 / reference p99: %.2f" % (r99 - f99, r99 / max(f99, 0.001)))
print("relay p99 - (reference p99 + kafka p99): %.1f ms" % (r99 - f99 - k99))
PY
