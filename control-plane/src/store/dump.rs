//! Everything a store keeps, as rows: what `tokenward migrate-store` carries from one store
//! to another. Secrets stay sealed under the master key on the way (the same key opens them
//! on the other side). What only a running server holds (proxy status, leases) is not part
//! of it.

use tokenward_filter::config::{PlanConfig, PriceConfig, RouteConfig};

use super::{Store, StoreError, StoredProvider};
use crate::model::{ApiKeyRecord, AuditEntry, IssuedToken, SigningKeyRecord};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dump {
    pub settings: Vec<(String, String)>,
    pub signing_keys: Vec<SigningKeyRecord>,
    /// Revoked signing keys, with when.
    pub revoked_keys: Vec<(String, u64)>,
    /// Minted tokens, with the API key each was exchanged for.
    pub tokens: Vec<(IssuedToken, Option<String>)>,
    pub api_keys: Vec<ApiKeyRecord>,
    /// Revoked token ids: (jti, expires_at, revoked_at).
    pub revoked_jtis: Vec<(String, u64, u64)>,
    /// Revoked subjects, with when.
    pub revoked_subjects: Vec<(String, u64)>,
    pub providers: Vec<StoredProvider>,
    /// In the order they match.
    pub routes: Vec<RouteConfig>,
    pub plans: Vec<(String, PlanConfig)>,
    /// In the order they match.
    pub prices: Vec<PriceConfig>,
    /// Oldest first, with their ids.
    pub audit: Vec<AuditEntry>,
}

impl Dump {
    /// Rows per table, for the operator's summary.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("settings", self.settings.len()),
            ("signing keys", self.signing_keys.len()),
            ("revoked signing keys", self.revoked_keys.len()),
            ("minted tokens", self.tokens.len()),
            ("API keys", self.api_keys.len()),
            ("revoked token ids", self.revoked_jtis.len()),
            ("revoked subjects", self.revoked_subjects.len()),
            ("providers", self.providers.len()),
            ("routes", self.routes.len()),
            ("plans", self.plans.len()),
            ("prices", self.prices.len()),
            ("audit entries", self.audit.len()),
        ]
    }
}

/// What a store reads only as raw rows (the trait hides these columns): revocation times,
/// the API key each token was exchanged for, the settings.
pub(super) struct RawRows {
    pub settings: Vec<(String, String)>,
    pub revoked_keys: Vec<(String, u64)>,
    pub tokens: Vec<(IssuedToken, Option<String>)>,
    pub revoked_jtis: Vec<(String, u64, u64)>,
    pub revoked_subjects: Vec<(String, u64)>,
}

impl Dump {
    /// The dump of `store`: its raw rows, and the rest through the trait (inside the
    /// caller's transaction, so every table is of one moment).
    pub(super) fn of(store: &dyn Store, raw: RawRows) -> Result<Dump, StoreError> {
        let mut audit = store.audit_log(usize::MAX >> 1)?;
        audit.reverse();
        Ok(Dump {
            settings: raw.settings,
            signing_keys: store.signing_keys()?,
            revoked_keys: raw.revoked_keys,
            tokens: raw.tokens,
            api_keys: store.api_keys()?,
            revoked_jtis: raw.revoked_jtis,
            revoked_subjects: raw.revoked_subjects,
            providers: store.providers()?,
            routes: store.routes()?,
            plans: store.plans()?,
            prices: store.prices()?,
            audit,
        })
    }

    /// Writes what the trait can write into `store` (inside the caller's transaction, after
    /// the store wrote the raw rows): settings, keys, tokens, API keys and the catalog, in
    /// their order.
    pub(super) fn write_through(&self, store: &dyn Store) -> Result<(), StoreError> {
        for (name, value) in &self.settings {
            store.set_setting(name, value)?;
        }
        for key in &self.signing_keys {
            store.insert_signing_key(key)?;
        }
        for (token, api_key) in &self.tokens {
            store.record_token(token, api_key.as_deref())?;
        }
        for key in &self.api_keys {
            store.insert_api_key(key)?;
        }
        for provider in &self.providers {
            store.put_provider(provider)?;
        }
        for route in &self.routes {
            store.put_route(route)?;
        }
        for (name, plan) in &self.plans {
            store.put_plan(name, plan)?;
        }
        for price in &self.prices {
            store.put_price(price)?;
        }
        Ok(())
    }
}
