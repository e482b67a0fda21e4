-- Vaults (namespaces) and the one table that holds every credential type.
-- Secret fields are sealed together in `sealed` (AES-256-GCM, see
-- LatchkeyCrypto); every other column is metadata the service queries by.

CREATE TABLE vaults (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z][A-Za-z0-9_-]{0,63}$'),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL
);

-- The `default` vault always exists, with a fixed id.
INSERT INTO vaults (id, name, description, created_by)
VALUES ('00000000-0000-0000-0000-000000000001', 'default', 'The default vault', 'system');

CREATE TABLE credentials (
    id                uuid PRIMARY KEY,
    vault_id          uuid NOT NULL REFERENCES vaults (id) ON DELETE RESTRICT,
    name              text NOT NULL CHECK (name ~ '^[A-Za-z][A-Za-z0-9_]{0,127}$'),
    type              text NOT NULL CHECK (type IN ('oauth', 'oauth_client', 'client_credentials', 'bearer',
                                                    'api_key', 'header_set', 'basic', 'cookie', 'aws_sigv4')),
    description       text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'refreshing', 'backoff', 'needs_reauth', 'revoked')),
    -- nonce || ciphertext || tag, bound to (vault_id, id, key_version) as associated data.
    sealed            bytea NOT NULL,
    -- Fingerprint of the master key that sealed the row (see MasterKey.version).
    key_version       integer NOT NULL,
    -- Non-secret fields of the value, shown in metadata.
    attributes        jsonb NOT NULL DEFAULT '{}',
    -- oauth / client_credentials: the oauth_client in the same vault.
    client_id         uuid REFERENCES credentials (id) ON DELETE SET NULL,
    scopes            text[],
    -- Refresher state.
    expires_at        timestamptz,
    next_refresh_at   timestamptz,
    refresh_failures  integer NOT NULL DEFAULT 0 CHECK (refresh_failures >= 0),
    last_error        text,
    last_refreshed_at timestamptz,
    lease_owner       text,
    lease_expires_at  timestamptz,
    -- Bumped on every change of the sealed value; caches compare it.
    revision          bigint NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL,
    created_by        text NOT NULL,
    updated_at        timestamptz NOT NULL,
    last_rotated_at   timestamptz NOT NULL,
    CONSTRAINT credentials_vault_name_unique UNIQUE (vault_id, name),
    CONSTRAINT credentials_client_only_for_oauth
        CHECK (client_id IS NULL OR type IN ('oauth', 'client_credentials'))
);

-- Listing a vault's credentials by name (and cursor pagination) uses the
-- unique (vault_id, name) index. The refresher's scan reads only due rows:
CREATE INDEX credentials_due_refresh ON credentials (next_refresh_at)
    WHERE next_refresh_at IS NOT NULL AND status IN ('active', 'backoff', 'refreshing');
-- "Which credentials use this oauth_client?" (delete checks, metadata).
CREATE INDEX credentials_client ON credentials (client_id) WHERE client_id IS NOT NULL;
-- Rekey walks rows still sealed under an older key.
CREATE INDEX credentials_key_version ON credentials (key_version);
-- stale_days filters.
CREATE INDEX credentials_vault_rotated ON credentials (vault_id, last_rotated_at);
