-- payment-ledger: the business table. The inbox table (outbox_inbox) is created by the SDK at start,
-- in the same database, so that an inbox row and its credit commit in one transaction.
CREATE TABLE IF NOT EXISTS accounts (
  account_id    text   PRIMARY KEY,
  balance_cents bigint NOT NULL DEFAULT 0
);
