-- Schema 8: what the dashboard reads (docs/dashboard.md). The ledger becomes a table
-- clustered on its key (WITHOUT ROWID): a period's hours are then read in one sweep instead
-- of a lookup per row (a million rows summed in a fraction of the time). What each minted
-- token grants (scopes, models, plan, as JSON) for its list of recent tokens; an index on
-- (credential, hour) that answers "last used" and the spike job's read of one credential's
-- week (docs/quotas.md, "Spend spikes") without reading the ledger; and the signed-in sessions,
-- by the SHA-256 of the cookie's id, with the admin credential sealed under the master key.

CREATE TABLE usage_clustered (
    hour                INTEGER NOT NULL,
    subject             TEXT NOT NULL,
    tenant              TEXT NOT NULL,
    plan                TEXT NOT NULL,
    credential          TEXT NOT NULL,
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    requests            INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cost_micro_usd      INTEGER NOT NULL,
    PRIMARY KEY (hour, subject, tenant, plan, credential, provider, model)
) WITHOUT ROWID;
INSERT INTO usage_clustered SELECT hour, subject, tenant, plan, credential, provider, model,
    requests, input_tokens, output_tokens, cached_input_tokens, cost_micro_usd FROM usage;
DROP TABLE usage;
ALTER TABLE usage_clustered RENAME TO usage;

ALTER TABLE issued_tokens ADD COLUMN grants TEXT;
CREATE INDEX issued_tokens_issued ON issued_tokens (issued_at);
CREATE INDEX usage_by_credential ON usage (credential, hour);

CREATE TABLE ui_sessions (
    id_sha256         TEXT PRIMARY KEY,
    credential_sealed TEXT NOT NULL,
    subject           TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL
);
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
