//! Rendering the store into the filter's configuration, versioned by its content, and
//! checking a change against it as the filter would.

use super::*;

impl<S: Store + ?Sized> ControlPlane<S> {
    /// Renders the current state and applies `change`, then compiles it as the filter would
    /// (environment variables assumed present: they are Envoy's, not ours to check).
    pub(super) fn check_with(
        &self,
        now: u64,
        change: impl FnOnce(&mut Config),
    ) -> Result<(), PlaneError> {
        let mut config = self.render(now)?;
        change(&mut config);
        // Clusters are pushed by name (CDS): two providers on one cluster would send one's
        // credential to the other's host.
        let mut clusters = std::collections::HashSet::new();
        if let Some(shared) = config
            .providers
            .iter()
            .find(|p| !clusters.insert(p.cluster.as_str()))
        {
            return Err(invalid(format!(
                "cluster {:?} belongs to another provider",
                shared.cluster
            )));
        }
        Policy::compile(&config, &|name| Some(format!("{name}-set-in-envoy")))?;
        Ok(())
    }

    /// The policy callers are verified against, and until when `now`'s schedule keeps it so:
    /// the next time a signing key is announced, retires or leaves the published set.
    pub(super) fn render_for_authentication(
        &self,
        now: u64,
    ) -> Result<compiled::Compiled, PlaneError> {
        // Unversioned: hashing the whole document would cost more than a lookup saves.
        let config = self.render_unversioned(now)?;
        // Provider credentials are not needed to verify callers.
        let policy = Policy::compile(&config, &|_| Some("unused".to_string()))?;
        let changes_at = self
            .store
            .signing_keys()?
            .iter()
            .flat_map(|k| [Some(k.activate_at), k.retired_at, k.publish_until])
            .flatten()
            .filter(|&t| t > now)
            .min();
        Ok(compiled::Compiled { policy, changes_at })
    }

    /// The filter's whole configuration at `now`, versioned by its content: the same state
    /// renders the same version, on any machine and after any restart.
    pub fn render(&self, now: u64) -> Result<Config, PlaneError> {
        let mut config = self.render_unversioned(now)?;
        // Proxy credentials open the sync channel, not routes: the filters never see them.
        config.api_keys.retain(|key| {
            !key.scopes
                .iter()
                .any(|s| s == tokenward_filter::sync::SCOPE_SYNC)
        });
        config.sync = self.sync_channel()?;
        config.version = Some(content_version(&config)?);
        Ok(config)
    }

    /// The configuration at `now` without its version.
    fn render_unversioned(&self, now: u64) -> Result<Config, PlaneError> {
        let keys = self.store.signing_keys()?;
        let published: Vec<Jwk> = model::published_keys(&keys, now)
            .into_iter()
            .map(|k| k.public_jwk.clone())
            .collect();
        let mut providers = Vec::new();
        for stored in self.store.providers()? {
            let mut config = stored.config;
            if let Some(sealed) = &stored.credential_sealed {
                let secret = self.master.open(&provider_context(&config.name), sealed)?;
                config.credential = CredentialSource::Inline(
                    String::from_utf8(secret)
                        .map_err(|_| invalid("a sealed credential is not UTF-8"))?,
                );
            }
            providers.push(config);
        }
        let default_plan = self
            .store
            .setting(SETTING_DEFAULT_PLAN)?
            .filter(|p| !p.is_empty());
        let config = Config {
            version: None,
            issuer: self.issuer()?,
            audiences: self.audiences()?,
            clock_skew_seconds: self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?,
            max_token_lifetime_seconds: self.max_token_ttl()?,
            keys: JwkSet { keys: published },
            api_keys: self
                .store
                .api_keys()?
                .iter()
                .filter(|k| k.in_force(now))
                .map(api_key_entry)
                .collect(),
            revocations: Revocations {
                jtis: self
                    .store
                    .revoked_jtis(self.live_after(now)?)?
                    .into_iter()
                    .map(|(jti, expires_at)| RevokedJti { jti, expires_at })
                    .collect(),
                subjects: self.store.revoked_subjects()?,
                key_ids: self.store.revoked_key_ids()?,
            },
            providers,
            routes: self.store.routes()?,
            cache: CacheConfig::default(),
            plans: self.store.plans()?.into_iter().collect(),
            default_plan,
            prices: self.store.prices()?,
            sync: None,
            guard: self.guard()?,
        };
        Ok(config)
    }
}

pub(super) fn api_key_entry(record: &ApiKeyRecord) -> ApiKeyEntry {
    ApiKeyEntry {
        id: record.id.clone(),
        sha256: record.sha256.clone(),
        subject: record.subject.clone(),
        tenant: record.tenant.clone(),
        scopes: record.scopes.clone(),
        models: record.models.clone(),
        plan: record.plan.clone(),
        expires_at: record.expires_at,
    }
}

/// The first 16 hex characters of the SHA-256 of the config serialized without a version.
pub(super) fn content_version(config: &Config) -> Result<String, PlaneError> {
    let json = serde_json::to_vec(config).map_err(StoreError::from)?;
    let hash = hmac_sha256::Hash::hash(&json);
    Ok(hash[..8].iter().map(|b| format!("{b:02x}")).collect())
}
