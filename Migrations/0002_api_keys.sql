-- API keys. Only a SHA-256 hash of the key is stored; `prefix` (the first 12
-- characters) is kept for display.

CREATE TABLE api_keys (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    description      text NOT NULL DEFAULT '',
    prefix           text NOT NULL,
    key_hash         bytea NOT NULL UNIQUE,
    role             text NOT NULL CHECK (role IN ('admin', 'proxy', 'connect')),
    -- Vault names the key may use; '{*}' means all.
    vaults           text[] NOT NULL,
    -- Credential names a proxy key may inject; NULL means all in its vaults.
    credentials      text[],
    ip_allowlist     cidr[],
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    expires_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text NOT NULL,
    revoked_at       timestamptz,
    revoked_by       text,
    last_seen_at     timestamptz,
    blocked_attempts bigint NOT NULL DEFAULT 0
);

CREATE INDEX api_keys_status ON api_keys (status);
