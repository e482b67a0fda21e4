-- Every replica caches sealed credentials for the injection endpoint; any
-- change to what a use of a credential would see, however it is made (the
-- API, the refresher, rekey, or SQL by hand), tells them all at once. The
-- payload is "<vault>/<name>", the cache's key.
CREATE FUNCTION credentials_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed credentials%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    PERFORM pg_notify('latchkey_credentials',
                      (SELECT name FROM vaults WHERE id = changed.vault_id) || '/' || changed.name);
    RETURN NULL;
END;
$$;

CREATE TRIGGER credentials_changed
    AFTER UPDATE ON credentials FOR EACH ROW
    WHEN (OLD.sealed IS DISTINCT FROM NEW.sealed
          OR OLD.key_version IS DISTINCT FROM NEW.key_version
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.revision IS DISTINCT FROM NEW.revision
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.next_attempt_at IS DISTINCT FROM NEW.next_attempt_at)
    EXECUTE FUNCTION credentials_notify();

CREATE TRIGGER credentials_deleted
    AFTER DELETE ON credentials FOR EACH ROW
    EXECUTE FUNCTION credentials_notify();

-- "Which header_sets point at this credential?" (metadata, delete checks):
-- a header_set's attributes list the names its placeholders reference.
CREATE INDEX credentials_references ON credentials USING gin ((attributes -> 'references'))
    WHERE type = 'header_set';
