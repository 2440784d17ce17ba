-- merchant-notify's status table (notify.table, default merchant_notifications): one row per notification.
-- merchant-notify creates it when missing; ship this for a role that may not create tables, together with
-- dedupe/schema.sql (the inbox, with inbox.create_table: false).
CREATE TABLE IF NOT EXISTS merchant_notifications (
  event_id         text PRIMARY KEY,
  merchant         text NOT NULL,
  status           text NOT NULL CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz,
  last_http_status integer,
  last_error       text,
  url              text,
  body             text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz
);
CREATE INDEX IF NOT EXISTS merchant_notifications_merchant_status
  ON merchant_notifications (merchant, status, updated_at DESC);
