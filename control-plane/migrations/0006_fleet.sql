-- Schema 6: fleet-wide quotas (docs/quotas.md). One row per counter key, window and Envoy
-- process (node, boot): what its counter held at its last report, what its allowance refused,
-- the ceiling it said it counts to, and the allowance this control plane granted it last.
-- Absolute values, guarded by the report's number, so a resent report changes nothing.
-- Rows of ended windows are pruned once the next window has ended too (the share of the
-- last window starts the next one).

CREATE TABLE fleet_counters (
    key          TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    node         TEXT NOT NULL,
    boot         TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    used         INTEGER NOT NULL,
    denied       INTEGER NOT NULL,
    held         INTEGER NOT NULL,
    granted      INTEGER NOT NULL,
    share_ppm    INTEGER NOT NULL,
    reported_at  INTEGER NOT NULL,
    PRIMARY KEY (key, window_start, node, boot)
);

CREATE INDEX fleet_counters_by_report ON fleet_counters (reported_at);
CREATE INDEX fleet_counters_by_end ON fleet_counters (window_end);
