-- The browser connect flow: a session is opened through a one-time URL whose
-- token is stored only as a hash, and a vault lists the return URLs a session
-- may send the browser back to (never an open redirect).
ALTER TABLE connect_sessions ADD COLUMN token_hash bytea UNIQUE;
ALTER TABLE vaults ADD COLUMN connect_return_urls text[] NOT NULL DEFAULT '{}';
