-- API key usage per hour (for "calls in the last 24 h"), written in batches
-- by each replica's in-memory aggregator, never once per request.
CREATE TABLE api_key_usage_hourly (
    api_key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    hour       timestamptz NOT NULL,
    calls      bigint NOT NULL CHECK (calls >= 0),
    PRIMARY KEY (api_key_id, hour)
);

-- An ephemeral key's expiry is audited once, by whichever replica sees it first.
ALTER TABLE api_keys ADD COLUMN expiry_audited_at timestamptz;
CREATE INDEX api_keys_expiring ON api_keys (expires_at)
    WHERE expires_at IS NOT NULL AND expiry_audited_at IS NULL AND status = 'active';

-- Every replica caches keys; any change to what a key may do, however it is
-- made (the API, the CLI, or SQL by hand), tells them all at once.
CREATE FUNCTION api_keys_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_api_keys', OLD.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_access_changed
    AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.role IS DISTINCT FROM NEW.role
          OR OLD.vaults IS DISTINCT FROM NEW.vaults
          OR OLD.credentials IS DISTINCT FROM NEW.credentials
          OR OLD.ip_allowlist IS DISTINCT FROM NEW.ip_allowlist
          OR OLD.key_hash IS DISTINCT FROM NEW.key_hash)
    EXECUTE FUNCTION api_keys_notify();

CREATE TRIGGER api_keys_deleted
    AFTER DELETE ON api_keys FOR EACH ROW
    EXECUTE FUNCTION api_keys_notify();
