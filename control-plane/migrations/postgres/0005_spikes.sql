-- Schema 5 (SQLite: schema 8): spend spikes (docs/quotas.md, "Spend spikes"). The spike job
-- reads one credential's hours of the last week whenever its current rate could be a spike;
-- usage is keyed by hour first, so without this index that read would scan every credential's
-- week.

CREATE INDEX usage_by_credential ON usage (credential, hour);
