-- tokenward control plane, schema 1. Secrets are sealed (XChaCha20-Poly1305 under the
-- master key) before they reach this database; API keys are stored as their SHA-256 only.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Signing keys move announced -> active -> retired. An announced key is published (JWKS and
-- the filter config) but does not sign before activate_at; a retired key stops signing and
-- stays published until publish_until, when every token it signed has expired.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL CHECK (alg IN ('EdDSA', 'ES256')),
    public_jwk     TEXT NOT NULL,
    private_sealed BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    activate_at    INTEGER NOT NULL,
    retired_at     INTEGER,
    publish_until  INTEGER
);

-- Every JWT minted, so a tenant's tokens can be revoked by jti; pruned after expiry.
CREATE TABLE issued_tokens (
    jti        TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    tenant     TEXT,
    kid        TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX issued_tokens_tenant ON issued_tokens (tenant);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL UNIQUE,
    subject    TEXT NOT NULL,
    tenant     TEXT,
    scopes     TEXT NOT NULL,
    models     TEXT NOT NULL,
    plan       TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE revoked_jtis (
    jti        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL
);

CREATE TABLE revoked_subjects (
    subject    TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL
);

-- Providers, routes, plans and prices are stored as the filter's own config types (JSON),
-- validated by compiling the whole rendered configuration before they are written.
CREATE TABLE providers (
    name              TEXT PRIMARY KEY,
    document          TEXT NOT NULL,
    credential_sealed BLOB
);

CREATE TABLE routes (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    document TEXT NOT NULL
);

CREATE TABLE plans (
    name     TEXT PRIMARY KEY,
    document TEXT NOT NULL
);

CREATE TABLE prices (
    model    TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    document TEXT NOT NULL
);

-- Who did what, when. Never a secret: credentials appear by id or fingerprint only.
CREATE TABLE audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
