# Shared set-up of the relay benchmarks: source it after scripts/lib.sh. Needs the local services
# (scripts/services.sh start) and a built relay.
[ -f "$OUTBOX_RUN_DIR/services.env" ] || die "start the services first: scripts/services.sh start"
# shellcheck disable=SC1091
source "$OUTBOX_RUN_DIR/services.env"
relay_bin=$OUTBOX_BUILD_DIR/relay/outbox-relay
[ -x "$relay_bin" ] || die "build first: scripts/build.sh"

pg() { psql "$OUTBOX_PG_DSN" -v ON_ERROR_STOP=1 -qtAX "$@"; }

relay_pid=''
# bench_begin PREFIX: a name of its own ($tag), a scratch folder ($dir), an empty outbox table ${tag}_outbox, and a
# cleanup on exit that kills $relay_pid, runs bench_cleanup (when the script defines one), drops the slots whose
# names start with $tag, the publication ${tag}_pub and the table, and then runs bench_teardown (when defined).
bench_begin() {
  tag=$1_$(date +%s)_$$
  dir=$(mktemp -d)
  trap bench_end EXIT
  pg -c "CREATE TABLE ${tag}_outbox (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), aggregate_type text NOT NULL,
    aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb, headers jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now())"
}

bench_end() {
  if [ -n "$relay_pid" ]; then
    kill -9 "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
  fi
  if declare -F bench_cleanup >/dev/null; then bench_cleanup || true; fi
  # A slot stays active for a moment after its client died.
  wait_for "pg -c \"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
    WHERE starts_with(slot_name, '$tag')\"" 15 || true
  pg -c "DROP PUBLICATION IF EXISTS ${tag}_pub; DROP TABLE IF EXISTS ${tag}_outbox" >/dev/null 2>&1 || true
  if declare -F bench_teardown >/dev/null; then bench_teardown || true; fi
  rm -rf "$dir"
}

# bench_create_topic NAME [CONFIG...]: a topic of 3 partitions made with Kafka's own TopicCommand (kafka-tools);
# each CONFIG is a key=value topic setting.
bench_create_topic() {
  local name=$1 args=()
  shift
  for c in "$@"; do args+=(--config "$c"); done
  [ -d "$KAFKA_TOOLS_LIBS" ] || die "no Kafka tools in $KAFKA_TOOLS_LIBS: scripts/install.sh"
  java -cp "$KAFKA_TOOLS_LIBS/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$OUTBOX_KAFKA_BROKERS" \
    --create --topic "$name" --partitions 3 --replication-factor 1 "${args[@]}" >"$dir/topic-$name.log" 2>&1 \
    || { cat "$dir/topic-$name.log"; die "cannot create topic $name"; }
}

# The producers' linger.ms: the relay's default (2, relay/src/publisher.cpp) or OUTBOX_BENCH_LINGER_MS. The reference
# producers (kcat, the Kafka leg, Debezium's) use it too, so that they keep the relay's settings.
bench_linger_ms=${OUTBOX_BENCH_LINGER_MS:-2}

# bench_relay_config [SINK_LINES] [SOURCE_LINES]: $dir/relay.yaml for slot $tag on the table, warnings only,
# confirming every 100 ms; SINK_LINES and SOURCE_LINES (YAML, indented by two) are added to `sink:` and `source:`. OUTBOX_BENCH_MAX_INFLIGHT_MESSAGES and
# OUTBOX_BENCH_MAX_INFLIGHT_BYTES set the in-flight window (relay.max_inflight_messages, relay.max_inflight_bytes),
# OUTBOX_BENCH_LINGER_MS the producer's linger.ms (sink.properties) instead of the relay's default.
bench_relay_config() {
  local window='' sink=${1:-} source_lines=${2:-}
  [ -z "${OUTBOX_BENCH_LINGER_MS:-}" ] || sink+=$'\n'"  properties: {linger.ms: '$OUTBOX_BENCH_LINGER_MS'}"
  [ -z "${OUTBOX_BENCH_MAX_INFLIGHT_MESSAGES:-}" ] || window+="  max_inflight_messages: $OUTBOX_BENCH_MAX_INFLIGHT_MESSAGES"$'\n'
  [ -z "${OUTBOX_BENCH_MAX_INFLIGHT_BYTES:-}" ] || window+="  max_inflight_bytes: $OUTBOX_BENCH_MAX_INFLIGHT_BYTES"$'\n'
  cat >"$dir/relay.yaml" <<YAML
source:
  dsn: \${OUTBOX_PG_DSN}
  slot: $tag
  publication: ${tag}_pub
  tables:
    - name: public.${tag}_outbox
${source_lines}
sink:
  brokers: \${OUTBOX_KAFKA_BROKERS}
${sink}
relay:
${window}  status_interval: 100ms
log:
  level: warn
YAML
}

# bench_start_relay LOG: starts the relay in the background ($relay_pid) and waits until its slot is active.
bench_start_relay() {
  "$relay_bin" --config "$dir/relay.yaml" 2>"$1" &
  relay_pid=$!
  wait_for "pg -c \"SELECT 1 FROM pg_replication_slots WHERE slot_name = '$tag' AND active\" | grep -q 1" 30 \
    || { cat "$1"; die "relay did not start"; }
}

# bench_stop_relay: SIGTERM, and waits for it to finish.
bench_stop_relay() {
  kill -TERM "$relay_pid"
  wait "$relay_pid" || true
  relay_pid=''
}
