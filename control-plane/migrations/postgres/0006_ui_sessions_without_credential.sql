-- Schema 6 (SQLite: schema 9): a dashboard session keeps who its credential is (an API key's
-- id and hash, a token's jti, signing key and grants, as JSON), no longer the credential
-- sealed under the master key: a copy of the database and the master key together must not
-- yield an admin credential. The sessions of before are dropped with their column: everyone
-- signs in again.

DROP TABLE ui_sessions;
CREATE TABLE ui_sessions (
    id_sha256  TEXT PRIMARY KEY,
    credential TEXT NOT NULL,
    subject    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
