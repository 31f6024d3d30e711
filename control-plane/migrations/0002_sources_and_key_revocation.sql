-- Schema 2: tokens remember the API key they were exchanged for (revoking the key revokes
-- them), and signing keys can be revoked (every token they signed is refused at once).

ALTER TABLE issued_tokens ADD COLUMN api_key_id TEXT;
CREATE INDEX issued_tokens_api_key ON issued_tokens (api_key_id);

CREATE TABLE revoked_keys (
    kid        TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL
);
