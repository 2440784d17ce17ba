-- The PostgreSQL inbox's tables, for services whose database role may not create tables
-- (`inbox.create_table: false`). Apply it with your migrations, as a role that may, in the schema the inbox
-- table is in; the SDK creates exactly these when `inbox.create_table` is true. The names are the defaults
-- (`outbox_inbox`, `outbox_inbox_parked`, `outbox_dead_letters`).
-- The service's role needs SELECT, INSERT, UPDATE, DELETE on the three tables and USAGE on the sequence.

-- One row per applied event: (group, dedupe key), inserted in the handler's transaction.
CREATE TABLE IF NOT EXISTS outbox_inbox (
  consumer_group text NOT NULL,
  event_id text NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_inbox_processed_at_idx ON outbox_inbox (processed_at);

-- Records the consumer gave up on (what `outboxctl reconcile` reads); a replay that applies one notes when.
CREATE TABLE IF NOT EXISTS outbox_dead_letters (
  consumer_group text NOT NULL,
  event_id text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  "offset" bigint NOT NULL,
  error_class text NOT NULL,
  error_message text NOT NULL,
  dead_lettered_at timestamptz NOT NULL DEFAULT now(),
  replayed_at timestamptz,
  PRIMARY KEY (consumer_group, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_dead_letters_dead_lettered_at_idx ON outbox_dead_letters (dead_lettered_at);

-- Per-key holds (`retry.ordering: per_key` with `retry.topics`): records parked behind their key.
CREATE TABLE IF NOT EXISTS outbox_inbox_parked (
  seq bigserial PRIMARY KEY,
  consumer_group text NOT NULL,
  topic text NOT NULL,
  key bytea NOT NULL,
  partition integer NOT NULL,
  "offset" bigint NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (consumer_group, topic, key, partition, "offset")
);
