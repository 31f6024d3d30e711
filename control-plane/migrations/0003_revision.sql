-- Schema 3: a revision that every committed change to what the configuration is rendered
-- from moves forward, whichever connection or process made it. Readers compare one row
-- instead of rendering everything (the admin API's compiled policy, the xDS loop).
-- Minted tokens and the audit log are not part of the configuration and do not move it.

CREATE TABLE revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO revision (id, n) VALUES (1, 0);

CREATE TRIGGER settings_insert_revision AFTER INSERT ON settings
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER settings_update_revision AFTER UPDATE ON settings
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER settings_delete_revision AFTER DELETE ON settings
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER signing_keys_insert_revision AFTER INSERT ON signing_keys
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER signing_keys_update_revision AFTER UPDATE ON signing_keys
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER signing_keys_delete_revision AFTER DELETE ON signing_keys
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER api_keys_insert_revision AFTER INSERT ON api_keys
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER api_keys_update_revision AFTER UPDATE ON api_keys
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER api_keys_delete_revision AFTER DELETE ON api_keys
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER revoked_jtis_insert_revision AFTER INSERT ON revoked_jtis
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER revoked_jtis_update_revision AFTER UPDATE ON revoked_jtis
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER revoked_jtis_delete_revision AFTER DELETE ON revoked_jtis
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER revoked_subjects_insert_revision AFTER INSERT ON revoked_subjects
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER revoked_subjects_update_revision AFTER UPDATE ON revoked_subjects
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER revoked_subjects_delete_revision AFTER DELETE ON revoked_subjects
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER revoked_keys_insert_revision AFTER INSERT ON revoked_keys
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER revoked_keys_update_revision AFTER UPDATE ON revoked_keys
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER revoked_keys_delete_revision AFTER DELETE ON revoked_keys
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER providers_insert_revision AFTER INSERT ON providers
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER providers_update_revision AFTER UPDATE ON providers
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER providers_delete_revision AFTER DELETE ON providers
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER routes_insert_revision AFTER INSERT ON routes
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER routes_update_revision AFTER UPDATE ON routes
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER routes_delete_revision AFTER DELETE ON routes
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER plans_insert_revision AFTER INSERT ON plans
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER plans_update_revision AFTER UPDATE ON plans
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER plans_delete_revision AFTER DELETE ON plans
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER prices_insert_revision AFTER INSERT ON prices
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER prices_update_revision AFTER UPDATE ON prices
BEGIN UPDATE revision SET n = n + 1; END;
CREATE TRIGGER prices_delete_revision AFTER DELETE ON prices
BEGIN UPDATE revision SET n = n + 1; END;
