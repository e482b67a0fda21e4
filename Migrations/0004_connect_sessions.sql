-- Browser "connect with provider" sessions (Authorization Code + PKCE).
-- The PKCE verifier is sealed like any credential value; `state` is stored
-- only as a hash and is single-use.

CREATE TABLE connect_sessions (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    vault_id         uuid NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    client_id        uuid NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    credential_name  text NOT NULL CHECK (credential_name ~ '^[A-Za-z][A-Za-z0-9_]{0,127}$'),
    scopes           text[],
    return_url       text,
    state_hash       bytea UNIQUE,
    state_expires_at timestamptz,
    sealed_verifier  bytea,
    key_version      integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text NOT NULL,
    expires_at       timestamptz NOT NULL,
    used_at          timestamptz
);

CREATE INDEX connect_sessions_expiry ON connect_sessions (expires_at) WHERE used_at IS NULL;
