#!/usr/bin/env bash
# The main job, end to end on this machine: install, build, start PostgreSQL and Kafka, run
# outbox-relay against an `outbox` table, write a few orders, and show the Kafka records.
# The services stay up afterwards (scripts/services.sh stop stops them).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

"$OUTBOX_ROOT/scripts/install.sh"
"$OUTBOX_ROOT/scripts/build.sh"
"$OUTBOX_ROOT/scripts/services.sh" start postgres kafka >/dev/null
# shellcheck disable=SC1091
source "$OUTBOX_RUN_DIR/services.env"

demo=$OUTBOX_RUN_DIR/demo
mkdir -p "$demo"
psql_demo() { psql "$OUTBOX_PG_DSN" -v ON_ERROR_STOP=1 -qX "$@"; }

log "demo: creating tables demo_orders and demo_outbox"
psql_demo <<'SQL'
CREATE TABLE IF NOT EXISTS demo_orders (id bigserial PRIMARY KEY, customer text NOT NULL, total_cents bigint NOT NULL);
CREATE TABLE IF NOT EXISTS demo_outbox (
  id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  aggregate_type text        NOT NULL,
  aggregate_id   text        NOT NULL,
  event_type     text        NOT NULL,
  payload        jsonb,
  headers        jsonb       NOT NULL DEFAULT '{}'::jsonb,
  created_at     timestamptz NOT NULL DEFAULT now()
);
SQL

cat >"$demo/relay.yaml" <<'YAML'
source:
  dsn: ${OUTBOX_PG_DSN}
  slot: demo_relay
  publication: demo_pub
  tables:
    - name: public.demo_outbox
      delete_after_publish: true
sink:
  brokers: ${OUTBOX_KAFKA_BROKERS}
  topic_template: "demo.{aggregate_type}"
relay:
  status_interval: 250ms
  shutdown_timeout: 10s
log:
  format: text
YAML

"$OUTBOX_BUILD_DIR/relay/outbox-relay" --config "$demo/relay.yaml" --check
"$OUTBOX_BUILD_DIR/relay/outbox-relay" --config "$demo/relay.yaml" 2>"$demo/relay.log" &
relay_pid=$!
trap 'kill "$relay_pid" 2>/dev/null || true' EXIT
wait_for "grep -q streaming '$demo/relay.log'" 30 || { cat "$demo/relay.log" >&2; die "the relay did not start streaming"; }
log "demo: relay streaming (pid $relay_pid); placing three orders, each with its outbox row in the same transaction"

run_id=$(date +%s)
for i in 1 2 3; do
  psql_demo <<SQL
BEGIN;
WITH o AS (INSERT INTO demo_orders (customer, total_cents) VALUES ('customer-$i', ${i}250) RETURNING id, customer, total_cents)
INSERT INTO demo_outbox (aggregate_type, aggregate_id, event_type, payload, headers)
SELECT 'order', 'order-' || id, 'order_placed',
       jsonb_build_object('order_id', id, 'customer', customer, 'total_cents', total_cents, 'demo_run', $run_id),
       '{"trace_id": "demo-$run_id-$i"}'
FROM o;
COMMIT;
SQL
done

read_topic() {
  kcat -b "$OUTBOX_KAFKA_BROKERS" -C -t demo.order -o beginning -e -q \
    -f 'partition=%p offset=%o key=%k\nvalue=%s\nheaders=%h\n\n' 2>/dev/null
}
wait_for "[ \$(read_topic | grep -c '\"demo_run\": $run_id') -ge 3 ]" 30 || die "the three events did not reach Kafka"
log "demo: the three events on topic demo.order (partition, offset, key, value, headers):"
read_topic | grep -B1 -A2 "\"demo_run\": $run_id"
wait_for "[ \$(psql '$OUTBOX_PG_DSN' -qtAXc 'SELECT count(*) FROM demo_outbox') = 0 ]" 10 || true
log "demo: rows left in demo_outbox after publishing: $(psql_demo -tAc 'SELECT count(*) FROM demo_outbox') (delete_after_publish)"
log "demo: slot: $(psql_demo -tAc "SELECT slot_name || ' confirmed ' || confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'demo_relay'")"

kill -TERM "$relay_pid"
wait "$relay_pid" && rc=0 || rc=$?
trap - EXIT
log "demo: relay stopped on SIGTERM with exit code $rc; its log is in $demo/relay.log"
log "demo: services are still up: 'source $OUTBOX_RUN_DIR/services.env' to use them, 'scripts/services.sh stop' to stop them"
