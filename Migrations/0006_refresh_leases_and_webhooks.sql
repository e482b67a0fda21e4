-- The refresher claims due credentials with a lease instead of holding a row
-- lock across the provider call: the claim commits at once (status
-- 'refreshing', visible in metadata), no database connection waits on a
-- provider, and a replica that dies mid-refresh loses its claim when the
-- lease expires.
--
-- next_refresh_at stays the planned refresh (a window before expiry);
-- next_attempt_at is when a credential in back-off is tried again. due_at is
-- the one time the scan orders by, derived from the status so that no write
-- path can forget it.

ALTER TABLE credentials
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN due_at timestamptz GENERATED ALWAYS AS (
        CASE status
            WHEN 'active' THEN next_refresh_at
            WHEN 'backoff' THEN next_attempt_at
            WHEN 'refreshing' THEN lease_expires_at
        END) STORED;

-- Move rows already in back-off (whose retry time was kept in next_refresh_at).
UPDATE credentials SET next_attempt_at = next_refresh_at WHERE status = 'backoff';

DROP INDEX credentials_due_refresh;
-- The scan reads only due rows, oldest first: its cost grows with the number
-- of due credentials, not with the number stored.
CREATE INDEX credentials_due ON credentials (due_at) WHERE due_at IS NOT NULL;
-- "Tokens about to expire that cannot be refreshed" (webhook) and the
-- expiry-ordered views read only rows that do expire.
CREATE INDEX credentials_expiry ON credentials (expires_at) WHERE expires_at IS NOT NULL;

-- Webhook events are written in the same transaction as the change they
-- report (an outbox), then delivered, signed, with retries, by whichever
-- replica claims them. `dedupe_key` keeps one event per fact (one "expiring"
-- warning per token expiry) however many replicas notice it.
CREATE TABLE webhook_events (
    id              uuid PRIMARY KEY,
    type            text NOT NULL,
    payload         jsonb NOT NULL,
    dedupe_key      text UNIQUE,
    created_at      timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text,
    delivered_at    timestamptz,
    -- Given up after too many failed attempts; kept for the operator to see.
    failed_at       timestamptz
);

CREATE INDEX webhook_events_pending ON webhook_events (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
