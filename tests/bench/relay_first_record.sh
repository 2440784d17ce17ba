#!/usr/bin/env bash
# The first record on a topic that does not exist yet: how long from its row's commit until it is in Kafka, next to
# a bare producer's first record on a new topic in the same run.
#
#   tests/bench/relay_first_record.sh [TOPICS]      (services must be running; default 5)
#
#   relay      the relay streams an idle slot; one session (synchronous_commit on) commits one row whose
#              aggregate_type names a topic no one made, TOPICS times, one topic each. The broker creates the topic
#              when the relay first asks for it (auto.create.topics.enable). The figure is from the commit's return
#              until the topic's high watermark is above 0, i.e. the broker wrote and acknowledged the record,
#              polled every 2 ms by a client of its own.
#   reference  a producer on the same librdkafka (Debian's python3-confluent-kafka) with the relay's settings
#              (idempotent, acks=all, lz4, the same linger.ms), started and connected beforehand, produces one
#              record to a new topic, TOPICS times: from produce() until its delivery report.
# Prints each figure, their medians and the ratio of the medians.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib.sh"
source "$root/tests/bench/bench_lib.sh"
topics=${1:-5}
[[ $topics =~ ^[1-9][0-9]*$ ]] || die "usage: tests/bench/relay_first_record.sh [TOPICS] (got '$topics')"

bench_begin firstrec
bench_relay_config
bench_start_relay "$dir/relay.log"

log "relay: $topics rows, each for a topic that does not exist yet"
# Debian's own interpreter: python3-confluent-kafka is installed for it, not for another python3 on the PATH.
/usr/bin/python3 -u - "$OUTBOX_KAFKA_BROKERS" "$OUTBOX_PG_DSN" "${tag}_outbox" "$tag" "$topics" "$bench_linger_ms" \
  >"$dir/figures.txt" <<'PY'
import subprocess, sys, time
from confluent_kafka import Consumer, Producer, TopicPartition
brokers, dsn, table, tag, topics, linger = sys.argv[1:7]
topics = int(topics)
watch = Consumer({"bootstrap.servers": brokers, "group.id": tag + "_watch", "allow.auto.create.topics": False})
watch.list_topics(timeout=10)
# One session for every row, so that connecting is not part of the figure.
psql = subprocess.Popen(["psql", dsn, "-qtAX", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        text=True, bufsize=1)
psql.stdin.write("SET synchronous_commit = on;\n")

def in_kafka(topic):
    md = watch.list_topics(topic=topic, timeout=1).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        return False
    for p in md.partitions:
        try:
            if watch.get_watermark_offsets(TopicPartition(topic, p), timeout=1)[1] > 0:
                return True
        except Exception:  # no leader yet
            pass
    return False

for i in range(topics):
    topic = f"{tag}_new_{i}"
    psql.stdin.write(f"INSERT INTO {table} (aggregate_type, aggregate_id, event_type, payload) "
                     f"VALUES ('{topic}', 'k', 'created', '{{}}'); SELECT 'committed';\n")
    assert psql.stdout.readline().strip() == "committed"
    t0 = time.time()
    while not in_kafka(topic):
        if time.time() - t0 > 30:
            sys.exit(f"the record for {topic} was not in Kafka after 30 s")
        time.sleep(0.002)
    print(f"relay {1000 * (time.time() - t0):.1f}")
    time.sleep(0.2)
psql.stdin.close()
psql.wait()

p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all", "compression.type": "lz4",
              "linger.ms": linger, "partitioner": "murmur2_random"})
p.list_topics(timeout=10)
for i in range(topics):
    topic = f"{tag}_ref_{i}"
    done = []
    t0 = time.time()
    p.produce(topic, b"{}", key=b"k", on_delivery=lambda err, msg: done.append((time.time(), err)))
    while not done:
        p.poll(0.001)
        if time.time() - t0 > 60:
            sys.exit(f"the reference record for {topic} was not delivered after 60 s")
    if done[0][1] is not None:
        sys.exit(f"the reference record for {topic} failed: {done[0][1]}")
    print(f"reference {1000 * (done[0][0] - t0):.1f}")
PY
bench_stop_relay

python3 - "$dir/figures.txt" <<'PY'
import statistics, sys
figures = {"relay": [], "reference": []}
for line in open(sys.argv[1]):
    who, ms = line.split()
    figures[who].append(float(ms))
for who, values in figures.items():
    print(f"{who + ':':11}" + ", ".join(f"{v:.0f}" for v in values) + f" ms (median {statistics.median(values):.0f} ms)")
r, ref = statistics.median(figures["relay"]), statistics.median(figures["reference"])
print(f"ratio:     relay / reference {r / ref:.3f}")
PY
