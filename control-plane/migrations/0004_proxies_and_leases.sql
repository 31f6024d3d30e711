-- Schema 4: what each replica knows of the Envoys it serves (so `proxy-status` from any
-- replica shows the fleet), and leases for the jobs that run once per period. Neither is
-- part of the configuration: the revision does not move with them.

CREATE TABLE proxies (
    node      TEXT PRIMARY KEY,
    replica   TEXT NOT NULL,
    last_seen INTEGER NOT NULL,
    status    TEXT NOT NULL
);

CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL
);

CREATE INDEX revoked_jtis_expiry ON revoked_jtis (expires_at);
CREATE INDEX issued_tokens_expiry ON issued_tokens (expires_at);
