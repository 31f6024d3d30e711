//! Everything a store keeps, as rows: what `tokenward migrate-store` carries from one store
//! to another. Secrets stay sealed under the master key on the way (the same key opens them
//! on the other side). What only a running server holds (proxy status, leases) is not part
//! of it.

use tokenward_filter::config::{PlanConfig, PriceConfig, RouteConfig};

use super::StoredProvider;
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
