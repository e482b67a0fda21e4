-- The audit log is append-only: a trigger refuses UPDATE and DELETE, so not
-- even a bug in the service can rewrite history. Rows name vaults and
-- credentials by name (not by foreign key) so they outlive what they describe.

CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    vault       text,
    credential  text,
    outcome     text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    detail      jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_events_time ON audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_credential ON audit_events (vault, credential, occurred_at DESC);
CREATE INDEX audit_events_actor ON audit_events (actor, occurred_at DESC);
CREATE INDEX audit_events_action ON audit_events (action, occurred_at DESC);

CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER audit_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

-- Usage per credential per key per day, written in batches by the injection
-- path's in-memory aggregator (never one write per request).
CREATE TABLE usage_daily (
    credential_id uuid NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    api_key_id    uuid NOT NULL,
    day           date NOT NULL,
    calls         bigint NOT NULL DEFAULT 0 CHECK (calls >= 0),
    last_used_at  timestamptz NOT NULL,
    PRIMARY KEY (credential_id, api_key_id, day)
);
