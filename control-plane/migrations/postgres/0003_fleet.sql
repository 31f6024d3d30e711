-- Schema 3 (SQLite: schema 6): fleet-wide quotas (docs/quotas.md). One row per counter key, window and Envoy
-- process (node, boot): what its counter held at its last report, what its allowance refused,
-- the ceiling it said it counts to, and the allowance this control plane granted it last.
-- Absolute values, guarded by the report's number, so a resent report changes nothing.
-- Rows of ended windows are pruned once the next window has ended too (the share of the
-- last window starts the next one).

CREATE TABLE fleet_counters (
    key          TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end   BIGINT NOT NULL,
    node         TEXT NOT NULL,
    boot         TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    used         BIGINT NOT NULL,
    denied       BIGINT NOT NULL,
    held         BIGINT NOT NULL,
    granted      BIGINT NOT NULL,
    share_ppm    BIGINT NOT NULL,
    reported_at  BIGINT NOT NULL,
    PRIMARY KEY (key, window_start, node, boot)
);

CREATE INDEX fleet_counters_by_report ON fleet_counters (reported_at);
CREATE INDEX fleet_counters_by_end ON fleet_counters (window_end);
