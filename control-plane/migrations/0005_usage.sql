-- Schema 5: usage the Envoys report over the sync channel. Each report is taken once, by
-- (node, boot, seq), however often it arrives; its entries add up per hour, subject, tenant,
-- plan, credential, provider and model. Not part of the configuration: the revision does not
-- move with it. Empty strings stand for "none" (they are part of the key).

CREATE TABLE usage_reports (
    node        TEXT NOT NULL,
    boot        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (node, boot)
);

CREATE TABLE usage (
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
);
