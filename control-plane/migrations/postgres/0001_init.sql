-- tokenward control plane on Postgres, schema 1: the same tables as SQLite's schema 4, for
-- several replicas over one database. Secrets are sealed (XChaCha20-Poly1305 under the
-- master key) before they reach it; API keys are kept as their SHA-256 only. Times are Unix
-- seconds. Documents (providers, routes, plans, prices) are the filter's own config types as
-- JSON text, validated by compiling the whole configuration before they are written.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL CHECK (alg IN ('EdDSA', 'ES256')),
    public_jwk     TEXT NOT NULL,
    private_sealed BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    activate_at    BIGINT NOT NULL,
    retired_at     BIGINT,
    publish_until  BIGINT
);

CREATE TABLE issued_tokens (
    jti        TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    tenant     TEXT,
    kid        TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    api_key_id TEXT
);
CREATE INDEX issued_tokens_tenant ON issued_tokens (tenant);
CREATE INDEX issued_tokens_api_key ON issued_tokens (api_key_id);
CREATE INDEX issued_tokens_expiry ON issued_tokens (expires_at);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL UNIQUE,
    subject    TEXT NOT NULL,
    tenant     TEXT,
    scopes     TEXT NOT NULL,
    models     TEXT NOT NULL,
    plan       TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE revoked_jtis (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_jtis_expiry ON revoked_jtis (expires_at);

CREATE TABLE revoked_subjects (
    subject    TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL
);

CREATE TABLE revoked_keys (
    kid        TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL
);

CREATE TABLE providers (
    name              TEXT PRIMARY KEY,
    document          TEXT NOT NULL,
    credential_sealed BYTEA
);

CREATE TABLE routes (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    document TEXT NOT NULL
);

CREATE TABLE plans (
    name     TEXT PRIMARY KEY,
    document TEXT NOT NULL
);

CREATE TABLE prices (
    model    TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    document TEXT NOT NULL
);

CREATE TABLE audit (
    id     BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE TABLE proxies (
    node      TEXT PRIMARY KEY,
    replica   TEXT NOT NULL,
    last_seen BIGINT NOT NULL,
    status    TEXT NOT NULL
);

CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL
);

-- The revision: every committed change to what the configuration is rendered from moves it,
-- whichever replica made it, and tells every replica at commit (NOTIFY carries only the
-- number). Minted tokens, the audit log, proxies and leases do not move it.
CREATE TABLE revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO revision (id, n) VALUES (1, 0);

-- One trigger per table and event, each over the rows the statement changed: a statement that
-- changes nothing (a prune with nothing to prune) leaves the revision where it is.
CREATE FUNCTION tokenward_revision_moves() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    moved BIGINT;
BEGIN
    IF EXISTS (SELECT 1 FROM changed_rows) THEN
        UPDATE revision SET n = n + 1 WHERE id = 1 RETURNING n INTO moved;
        PERFORM pg_notify('tokenward_revision', moved::text);
    END IF;
    RETURN NULL;
END;
$$;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['settings', 'signing_keys', 'api_keys', 'revoked_jtis',
        'revoked_subjects', 'revoked_keys', 'providers', 'routes', 'plans', 'prices']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS changed_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tokenward_revision_moves()',
                       t || '_insert_revision', t);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS changed_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tokenward_revision_moves()',
                       t || '_update_revision', t);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS changed_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION tokenward_revision_moves()',
                       t || '_delete_revision', t);
    END LOOP;
END;
$$;
