//! What the sync channel needs of the control plane: the configuration a pull-mode filter
//! fetches, signed by every published signing key (so a filter that knows any of them, from
//! its bootstrap's trust anchor or its last configuration, verifies it across rotations);
//! proxy credentials; and the usage reports the filters send.

use tokenward_filter::sync::{ConfigSignature, SyncReport, SCOPE_SYNC, SIGNATURE_AUDIENCE};

use super::*;
use crate::store::UsageRow;

/// A configuration signed for pull-mode filters.
#[derive(Debug, Clone)]
pub struct SignedConfig {
    pub version: String,
    /// The store revision it was rendered at.
    pub revision: u64,
    /// The document as sent (its SHA-256 is what is signed).
    pub body: Vec<u8>,
    /// Comma-separated compact JWS, one per published key.
    pub signature: String,
    pub signed_at: u64,
}

/// How long a signature holds: a recorded answer cannot be replayed to a filter for longer.
pub const SIGNATURE_LIFETIME: u64 = 3600;
/// A configuration served longer than this unchanged is signed again.
pub const RESIGN_AFTER: u64 = 600;

impl<S: Store + ?Sized> ControlPlane<S> {
    /// Signs a rendered configuration for the sync channel.
    pub fn sign_config(
        &self,
        config: &Config,
        revision: u64,
        now: u64,
    ) -> Result<SignedConfig, PlaneError> {
        let body = serde_json::to_vec(config).map_err(|e| PlaneError::Signing(e.to_string()))?;
        let digest: String = hmac_sha256::Hash::hash(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let keys = self.store.signing_keys()?;
        let revoked = self.store.revoked_key_ids()?;
        let mut signatures = Vec::new();
        for key in model::published_keys(&keys, now)
            .into_iter()
            .filter(|k| !revoked.contains(&k.kid))
        {
            let claims = Claims::with_custom_claims(
                ConfigSignature {
                    sha256: digest.clone(),
                    revision,
                },
                Duration::from_secs(SIGNATURE_LIFETIME),
            )
            .with_audience(SIGNATURE_AUDIENCE);
            let token = self.sign(key, claims, now, SIGNATURE_LIFETIME)?;
            signatures.push(token);
        }
        if signatures.is_empty() {
            return Err(PlaneError::NoActiveKey);
        }
        Ok(SignedConfig {
            version: config.version.clone().unwrap_or_default(),
            revision,
            body,
            signature: signatures.join(","),
            signed_at: now,
        })
    }

    /// A proxy credential: an API key scoped to the sync channel only. It is never pushed to
    /// the filters (it opens no route), only the control plane accepts it.
    pub fn create_proxy_credential(
        &self,
        name: &str,
        now: u64,
    ) -> Result<CreatedApiKey, PlaneError> {
        if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "a proxy credential's name must be 1-128 visible ASCII characters",
            ));
        }
        self.create_api_key(
            &ApiKeyRequest {
                subject: format!("proxy:{name}"),
                tenant: None,
                scopes: vec![SCOPE_SYNC.to_string()],
                models: Vec::new(),
                plan: None,
                expires_at: None,
            },
            now,
        )
    }

    /// Takes a usage report (once, however often it is sent).
    pub fn record_usage(&self, report: &SyncReport, now: u64) -> Result<bool, PlaneError> {
        if report.node.is_empty() || report.boot.is_empty() || report.node.len() > 512 {
            return Err(invalid("a report names its node and boot"));
        }
        Ok(self.store.record_usage(report, now)?)
    }

    pub fn usage(&self, since: u64) -> Result<Vec<UsageRow>, PlaneError> {
        Ok(self.store.usage(since)?)
    }
}
