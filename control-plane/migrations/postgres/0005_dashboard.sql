-- Schema 5 (SQLite: schema 8): what the dashboard reads (docs/dashboard.md). What each
-- minted token grants (scopes, models, plan, as JSON) for its list of recent tokens; an index
-- on (credential, hour) that answers "last used" and the spike job's read of one credential's
-- week (docs/quotas.md, "Spend spikes") without reading the ledger; and the signed-in
-- sessions, by the SHA-256 of the cookie's id, with the admin credential sealed under the
-- master key.

ALTER TABLE issued_tokens ADD COLUMN grants TEXT;
CREATE INDEX issued_tokens_issued ON issued_tokens (issued_at);
CREATE INDEX usage_by_credential ON usage (credential, hour);

CREATE TABLE ui_sessions (
    id_sha256         TEXT PRIMARY KEY,
    credential_sealed TEXT NOT NULL,
    subject           TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
