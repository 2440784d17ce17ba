#!/usr/bin/env bash
# Runs once on an empty data directory, from /docker-entrypoint-initdb.d of the postgres image
# (deploy/compose.yaml; in Kubernetes from the outbox-postgres-init ConfigMap, which holds this file).
#   - database `app` with the outbox table of SPEC §2, the publication, the relay's state table, and the
#     role outbox-relay logs in as (LOGIN REPLICATION, SELECT on the outbox, the state table's rows: all
#     deploy/config/relay.yaml needs);
#   - when LEDGER_PG_PASSWORD is set: database `ledger` owned by role `ledger`, with the accounts
#     table of examples/payment-ledger/schema.sql (mounted at /opt/outbox/ledger-schema.sql).
set -euo pipefail
: "${OUTBOX_PG_PASSWORD:?set OUTBOX_PG_PASSWORD: the password of the outbox_relay role}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v relay_password="$OUTBOX_PG_PASSWORD" <<'SQL'
CREATE ROLE outbox_relay LOGIN REPLICATION PASSWORD :'relay_password';
CREATE DATABASE app;
\connect app
CREATE TABLE public.outbox (
  id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  aggregate_type text        NOT NULL,
  aggregate_id   text        NOT NULL,
  event_type     text        NOT NULL,
  payload        jsonb,
  headers        jsonb       NOT NULL DEFAULT '{}'::jsonb,
  created_at     timestamptz NOT NULL DEFAULT now()
);
GRANT USAGE ON SCHEMA public TO outbox_relay;
GRANT SELECT ON public.outbox TO outbox_relay;
-- Created here by the table's owner: the relay would need to own the table to create it.
CREATE PUBLICATION outbox_pub FOR TABLE public.outbox WITH (publish = 'insert', publish_via_partition_root = true);
-- Which slot the relay publishes from, so that a lost slot is never silently recreated (source.state_table).
CREATE TABLE public.outbox_relay_state (
  slot_name text PRIMARY KEY, system_identifier text NOT NULL, timeline integer NOT NULL, database text NOT NULL,
  slot_created_lsn pg_lsn, backfill text NOT NULL, backfill_snapshot text, backfill_tables text NOT NULL DEFAULT '',
  relay_version text, updated_at timestamptz NOT NULL DEFAULT now(), leader_epoch bigint NOT NULL DEFAULT 0);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.outbox_relay_state TO outbox_relay;
SQL

if [ -n "${LEDGER_PG_PASSWORD:-}" ] && [ -f /opt/outbox/ledger-schema.sql ]; then
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v ledger_password="$LEDGER_PG_PASSWORD" <<'SQL'
CREATE ROLE ledger LOGIN PASSWORD :'ledger_password';
CREATE DATABASE ledger OWNER ledger;
\connect ledger
SET ROLE ledger;
\i /opt/outbox/ledger-schema.sql
SQL
fi
