-- Schema 4 (SQLite: schema 7): budget alerts (docs/quotas.md, "Budget alerts"). One row per counter, window and
-- threshold that was crossed: inserted once (the key), whichever replica saw it first, then
-- delivered to the webhook with retries.

CREATE TABLE alert_events (
    key             TEXT NOT NULL,
    window_start    BIGINT NOT NULL,
    threshold       BIGINT NOT NULL,
    body            TEXT NOT NULL,
    fired_at        BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT NOT NULL,
    PRIMARY KEY (key, window_start, threshold)
);

CREATE INDEX alert_events_due ON alert_events (delivered_at, next_attempt_at);
