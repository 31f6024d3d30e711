//! The control plane's operations over a store and the master key: initialise, rotate
//! signing keys, mint tokens and API keys, revoke, manage providers, routes, plans and prices,
//! and render the filter's configuration. Every change is validated by compiling the
//! configuration it would render with the filter's own parser before it is stored, and is
//! written to the audit log.
//!
//! This file holds the types and the handle; the operations are split by concern:
//! `credentials` (verify callers, mint JWTs and API keys), `keys` (signing keys), `revocation`,
//! `catalog` (providers, routes, plans, prices), `settings`, `render` (the configuration and
//! the check of a change), `compiled` (the policy kept between admin calls).

use jwt_simple::prelude::*;
use tokenward_filter::claims::TokenwardClaims;
use tokenward_filter::config::{
    ApiKeyEntry, CacheConfig, Config, CredentialSource, Jwk, JwkSet, PlanConfig, PriceConfig,
    ProviderConfig, Revocations, RevokedJti, RouteConfig, SyncConfig,
};
use tokenward_filter::identity::Identity;
use tokenward_filter::policy::{InvalidConfig, Policy};

use std::sync::Arc;

use crate::crypto::{self, CryptoError, MasterKey};
use crate::model::{self, Alg, ApiKeyRecord, IssuedToken, KeyState, SigningKeyRecord};
use crate::store::{ApiKeySelector, CatalogEntry, Isolation, Store, StoreError, StoredProvider};

/// Why a caller of the control plane's API is not let in.
#[derive(Debug)]
pub enum AuthError {
    Refused(tokenward_filter::error::Refusal),
    Plane(PlaneError),
}

/// RFC 6749 §5.2 errors of the token endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest(String),
    InvalidClient,
    InvalidScope(String),
    UnsupportedGrantType,
    Server(String),
}

/// Tokens from the token endpoint live at most this long (and never past the API key).
pub const TOKEN_ENDPOINT_TTL: u64 = 900;

/// Scopes of the control plane's own API.
pub const SCOPE_ADMIN_READ: &str = "admin:read";
pub const SCOPE_ADMIN_WRITE: &str = "admin:write";

/// Defaults an operator can change with settings.
pub const DEFAULT_MAX_TOKEN_TTL: u64 = 3600;
pub const DEFAULT_CLOCK_SKEW: u64 = 30;
/// How long a new key is published before it signs: long enough for every proxy to have it.
pub const DEFAULT_KEY_OVERLAP: u64 = 600;
/// The longest overlap a rotation (or the setting) may ask for.
pub const MAX_KEY_OVERLAP: u64 = 7 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("not initialised: run `tokenward init` first")]
    NotInitialised,
    #[error("already initialised")]
    AlreadyInitialised,
    #[error("no signing key is active; rotate one in (`tokenward key rotate --now`)")]
    NoActiveKey,
    #[error("{0}")]
    Invalid(String),
    #[error("the configuration this change would produce is refused by the filter: {0}")]
    Rejected(#[from] InvalidConfig),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A removal that would leave something naming what is gone.
    #[error("{0}")]
    InUse(String),
}

fn invalid(message: impl Into<String>) -> PlaneError {
    PlaneError::Invalid(message.into())
}

/// What `init` sets up.
#[derive(Debug, Clone)]
pub struct InitSettings {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub alg: Alg,
}

/// What a token is minted with.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub models: Option<Vec<String>>,
    pub plan: Option<String>,
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MintedToken {
    pub token: String,
    pub jti: String,
    pub kid: String,
    pub expires_at: u64,
}

/// What an API key is created with.
#[derive(Debug, Clone, Default)]
pub struct ApiKeyRequest {
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub models: Vec<String>,
    pub plan: Option<String>,
    pub expires_at: Option<u64>,
}

/// The key is shown once, here; the store keeps its hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedApiKey {
    pub id: String,
    pub key: String,
    pub record: ApiKeyRecord,
}

/// What to revoke.
#[derive(Debug, Clone)]
pub enum Revocation {
    /// A JWT by id (its expiry is looked up among minted tokens, or given).
    Jti {
        jti: String,
        expires_at: Option<u64>,
    },
    /// Every credential of a subject, JWTs and API keys, now and later.
    Subject(String),
    /// One API key.
    ApiKey(String),
    /// Every credential of a tenant that exists now: its API keys and unexpired JWTs.
    Tenant(String),
    /// A signing key: unpublished at once, and every token it signed refused.
    Key(String),
}

/// Where a provider's credential comes from.
#[derive(Debug, Clone)]
pub enum ProviderSecret {
    /// An environment variable of Envoy's Wasm VM; nothing secret is stored.
    Env(String),
    /// The credential itself, sealed under the master key.
    Sealed(String),
}

/// What a removal took with it when forced: the routes of a removed provider, the API keys
/// (revoked) of a removed plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub routes: Vec<String>,
    pub revoked_api_keys: Vec<String>,
}

/// A provider as listed: what is stored, whether it can carry traffic, and the Envoys that
/// report they cannot load it.
#[derive(Debug, Clone)]
pub struct ProviderListing {
    pub stored: StoredProvider,
    pub availability: model::Availability,
    pub unavailable_in: Vec<String>,
}

/// What is revoked: jtis with the time each is kept until, subjects, signing key ids.
#[derive(Debug, Clone, Default)]
pub struct RevocationListing {
    pub jtis: Vec<(String, u64)>,
    pub subjects: Vec<String>,
    pub key_ids: Vec<String>,
}

/// The kinds of catalog entry, for the operations that treat them alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Provider,
    Route,
    Plan,
    Price,
}

impl EntryKind {
    pub fn label(self) -> &'static str {
        match self {
            EntryKind::Provider => "provider",
            EntryKind::Route => "route",
            EntryKind::Plan => "plan",
            EntryKind::Price => "price",
        }
    }
}

/// How a caller forces a removal, for the message that refuses one.
const FORCE_HINT: &str = "`--force` on the command line, `?force=true` in the admin API";

fn quoted(kind: &str, names: &[String]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let plural = if names.len() == 1 { "" } else { "s" };
    format!("{kind}{plural} {}", names.join(", "))
}

/// Whether `route` sends anything to `provider`.
fn route_uses(route: &RouteConfig, provider: &str) -> bool {
    route.provider.as_deref() == Some(provider)
        || route.model_providers.iter().any(|m| m.provider == provider)
}

/// The control plane's operations over a store. Cheap to clone and safe to share: the store,
/// the master key and the compiled policy are shared; the actor is this handle's own.
pub struct ControlPlane<S: Store + ?Sized> {
    store: Arc<S>,
    master: Arc<MasterKey>,
    /// Who the audit log names for changes made through this handle.
    actor: String,
    compiled: Arc<compiled::CompiledPolicy>,
    /// Sums of the ledger's ended hours, per query (the dashboard's long periods).
    closed_hours: Arc<closed_hours::ClosedHours>,
}

impl<S: Store + ?Sized> Clone for ControlPlane<S> {
    fn clone(&self) -> Self {
        ControlPlane {
            store: Arc::clone(&self.store),
            master: Arc::clone(&self.master),
            actor: self.actor.clone(),
            compiled: Arc::clone(&self.compiled),
            closed_hours: Arc::clone(&self.closed_hours),
        }
    }
}

impl<S: Store + 'static> ControlPlane<S> {
    /// The same handle over the store as a trait object: what the servers share, so they
    /// name no store type.
    pub fn into_dyn(self) -> ControlPlane<dyn Store> {
        ControlPlane {
            store: self.store,
            master: self.master,
            actor: self.actor,
            compiled: self.compiled,
            closed_hours: self.closed_hours,
        }
    }
}

const SETTING_ISSUER: &str = "issuer";
const SETTING_AUDIENCES: &str = "audiences";
const SETTING_MAX_TTL: &str = "max_token_ttl_seconds";
const SETTING_SKEW: &str = "clock_skew_seconds";
const SETTING_OVERLAP: &str = "key_overlap_seconds";
const SETTING_DEFAULT_PLAN: &str = "default_plan";
const SETTING_USAGE_RETENTION: &str = "usage_retention_days";
/// How long the usage ledger keeps an hour, unless `usage_retention_days` says otherwise.
const DEFAULT_USAGE_RETENTION_DAYS: u64 = 90;

impl<S: Store + ?Sized> ControlPlane<S> {
    pub fn new(store: impl Into<Arc<S>>, master: MasterKey, actor: &str) -> Self {
        ControlPlane {
            store: store.into(),
            master: Arc::new(master),
            actor: actor.to_string(),
            compiled: Arc::default(),
            closed_hours: Arc::default(),
        }
    }

    /// The same control plane, with `actor` named in the audit log for what this handle
    /// changes (the admin API's caller, per request).
    pub fn acting_as(&self, actor: &str) -> Self {
        ControlPlane {
            actor: actor.to_string(),
            ..self.clone()
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store itself, shared (`ControlPlane::new` takes it back for another master key).
    pub fn shared_store(&self) -> Arc<S> {
        Arc::clone(&self.store)
    }

    /// Runs `change` as one transaction serialized against every other change, from any
    /// replica: what it checks is what it writes over, and it lands whole or not at all.
    fn serialized<T>(
        &self,
        change: impl FnOnce() -> Result<T, PlaneError>,
    ) -> Result<T, PlaneError> {
        let transaction = self.store.begin(Isolation::Serialized)?;
        let value = change()?;
        transaction.commit()?;
        Ok(value)
    }

    /// Runs `record` as one transaction, not queued behind changes (a minted token and its
    /// audit entry: nothing decides by them).
    fn atomically<T>(
        &self,
        record: impl FnOnce() -> Result<T, PlaneError>,
    ) -> Result<T, PlaneError> {
        let transaction = self.store.begin(Isolation::Atomic)?;
        let value = record()?;
        transaction.commit()?;
        Ok(value)
    }

    fn audit(&self, now: u64, action: &str, target: &str, detail: &str) -> Result<(), PlaneError> {
        Ok(self.store.audit(now, &self.actor, action, target, detail)?)
    }
}

fn provider_context(name: &str) -> String {
    format!("provider-credential:{name}")
}

mod catalog;
mod closed_hours;
pub use sync::{SignedConfig, UsageGroup, UsageLedger, UsageQuery, UsageTotal, RESIGN_AFTER};
pub mod alerts;
mod compiled;
mod credentials;
pub mod dashboard;
pub use credentials::TokenGrants;
pub mod fleet;
mod guard;
mod keys;
mod render;
mod revocation;
mod settings;
pub mod spikes;
mod sync;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod races;
#[cfg(test)]
mod tests;
