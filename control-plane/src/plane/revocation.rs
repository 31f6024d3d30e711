//! Revocation: of one JWT, a subject, a tenant, an API key or a signing key, and how long a
//! revocation must outlive what it revokes.

use super::*;

impl<S: Store + ?Sized> ControlPlane<S> {
    /// Revokes; returns how many credentials the revocation reached where that is known.
    pub fn revoke(&self, what: &Revocation, now: u64) -> Result<usize, PlaneError> {
        self.serialized(|| {
            let named = match what {
                Revocation::Jti { jti, expires_at } => {
                    if expires_at.is_some_and(|t| t > model::MAX_UNIX_TIME) {
                        return Err(invalid("the expiry must be before the year 10000"));
                    }
                    jti
                }
                Revocation::Subject(name)
                | Revocation::ApiKey(name)
                | Revocation::Tenant(name)
                | Revocation::Key(name) => name,
            };
            if named.is_empty() {
                return Err(invalid("name what to revoke: it must not be empty"));
            }
            self.keep_an_admin(what, now)?;
            let count = match what {
                Revocation::Jti { jti, expires_at } => {
                    // Never earlier than the token's own expiry, when it was minted here.
                    let expires_at = match (expires_at, self.store.token(jti)?) {
                        (Some(t), Some(token)) => (*t).max(token.expires_at),
                        (Some(t), None) => *t,
                        (None, Some(token)) => token.expires_at,
                        // Not minted here and no expiry given: keep it as long as any token lives.
                        (None, None) => {
                            now + self.max_token_ttl()?
                                + self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?
                        }
                    };
                    let minted_here = self.store.token(jti)?.is_some();
                    self.store.revoke_jti(jti, expires_at, now)?;
                    self.audit(now, "revoke.jti", jti, &format!("until {expires_at}"))?;
                    // Recorded either way (a token from elsewhere may carry it); counted only
                    // when it is a token this control plane knows.
                    usize::from(minted_here)
                }
                Revocation::Subject(subject) => {
                    self.store.revoke_subject(subject, now)?;
                    let keys = self
                        .store
                        .revoke_api_keys(ApiKeySelector::Subject(subject), now)?;
                    self.audit(now, "revoke.subject", subject, &format!("{keys} API keys"))?;
                    1 + keys
                }
                Revocation::ApiKey(id) => {
                    let n = self.store.revoke_api_keys(ApiKeySelector::Id(id), now)?;
                    if n == 0 && !self.store.api_keys()?.iter().any(|k| &k.id == id) {
                        return Err(PlaneError::NotFound(format!("API key {id:?}")));
                    }
                    // And the tokens the key was exchanged for.
                    let tokens = self.store.tokens_of_api_key(id, self.live_after(now)?)?;
                    for token in &tokens {
                        self.store.revoke_jti(&token.jti, token.expires_at, now)?;
                    }
                    self.audit(
                        now,
                        "revoke.apikey",
                        id,
                        &format!("{} exchanged tokens", tokens.len()),
                    )?;
                    n + tokens.len()
                }
                Revocation::Key(kid) => {
                    if !self.store.revoke_signing_key(kid, now)? {
                        return Err(PlaneError::NotFound(format!("signing key {kid:?}")));
                    }
                    self.audit(
                        now,
                        "revoke.key",
                        kid,
                        "unpublished; every token it signed refused",
                    )?;
                    1
                }
                Revocation::Tenant(tenant) => {
                    let keys = self
                        .store
                        .revoke_api_keys(ApiKeySelector::Tenant(tenant), now)?;
                    let tokens = self.store.tokens_of_tenant(tenant, self.live_after(now)?)?;
                    for token in &tokens {
                        self.store.revoke_jti(&token.jti, token.expires_at, now)?;
                    }
                    self.audit(
                        now,
                        "revoke.tenant",
                        tenant,
                        &format!("{keys} API keys, {} tokens", tokens.len()),
                    )?;
                    keys + tokens.len()
                }
            };
            Ok(count)
        })
    }

    /// What is revoked now: jtis with the time they are kept until, subjects, signing keys.
    pub fn revocations(&self, now: u64) -> Result<RevocationListing, PlaneError> {
        Ok(RevocationListing {
            jtis: self.store.revoked_jtis(self.live_after(now)?)?,
            subjects: self.store.revoked_subjects()?,
            key_ids: self.store.revoked_key_ids()?,
        })
    }

    /// Minted tokens still accepted at `now`, of `subject` and `tenant` where given.
    pub fn live_tokens(
        &self,
        now: u64,
        subject: Option<&str>,
        tenant: Option<&str>,
    ) -> Result<Vec<IssuedToken>, PlaneError> {
        let mut tokens = self.store.tokens(self.live_after(now)?)?;
        tokens.retain(|t| {
            subject.is_none_or(|s| t.subject == s)
                && tenant.is_none_or(|x| t.tenant.as_deref() == Some(x))
        });
        Ok(tokens)
    }

    /// API keys, of `subject` and `tenant` where given.
    pub fn api_keys(
        &self,
        subject: Option<&str>,
        tenant: Option<&str>,
    ) -> Result<Vec<ApiKeyRecord>, PlaneError> {
        let mut keys = self.store.api_keys()?;
        keys.retain(|k| {
            subject.is_none_or(|s| k.subject == s)
                && tenant.is_none_or(|x| k.tenant.as_deref() == Some(x))
        });
        Ok(keys)
    }

    /// Refuses a revocation that would leave no API key able to change anything (one with
    /// `admin:write`, in force, its subject not revoked): nobody could then reach the admin
    /// API to undo it. A revoker that means it creates another admin key first.
    pub(super) fn keep_an_admin(&self, what: &Revocation, now: u64) -> Result<(), PlaneError> {
        let revoked_subjects = self.store.revoked_subjects()?;
        let keys = self.store.api_keys()?;
        let admins: Vec<&ApiKeyRecord> = keys
            .iter()
            .filter(|k| k.in_force(now) && k.scopes.iter().any(|s| s == SCOPE_ADMIN_WRITE))
            .filter(|k| !revoked_subjects.contains(&k.subject))
            .collect();
        let survives = |key: &&&ApiKeyRecord| match what {
            Revocation::ApiKey(id) => &key.id != id,
            Revocation::Subject(subject) => &key.subject != subject,
            Revocation::Tenant(tenant) => key.tenant.as_ref() != Some(tenant),
            Revocation::Jti { .. } | Revocation::Key(_) => true,
        };
        if !admins.is_empty() && !admins.iter().any(|k| survives(&k)) {
            return Err(PlaneError::InUse(
                "this would revoke the last admin API key (admin:write): create another one first (`tokenward apikey create --scope admin:read --scope admin:write …`)".into(),
            ));
        }
        Ok(())
    }

    /// Lifts the revocation of a subject: credentials minted for it from now on work again,
    /// and so do its JWTs that were refused only for the subject. API keys revoked with the
    /// subject stay revoked (each was revoked on its own); so do jtis revoked by id.
    pub fn unrevoke_subject(&self, subject: &str, now: u64) -> Result<(), PlaneError> {
        self.serialized(|| {
            if !self.store.unrevoke_subject(subject)? {
                return Err(PlaneError::NotFound(format!(
                    "a revocation of subject {subject:?}"
                )));
            }
            self.audit(now, "unrevoke.subject", subject, "")?;
            Ok(())
        })
    }

    /// Deletes revocations and records of minted tokens the filter can no longer accept at
    /// `now` (expired beyond the clock skew). Returns how many rows went.
    pub fn prune(&self, now: u64) -> Result<usize, PlaneError> {
        let before = self.live_after(now)?;
        let expired = self.store.prune(before)?;
        // The usage ledger keeps `usage_retention_days` of whole hours.
        let kept_from = now.saturating_sub(self.usage_retention_days()?.saturating_mul(86_400));
        let old_usage = self.store.prune_usage(crate::store::hour_of(kept_from))?;
        // Fleet counters of windows that ended before the last one (whose shares start the
        // window in force).
        let old_counters = self.store.prune_fleet(now)?;
        // Budget alerts are kept 30 days after they fired (delivered or given up).
        let old_alerts = self.store.prune_alerts(now.saturating_sub(30 * 86_400))?;
        // Dashboard sessions past their end.
        let old_sessions = self.store.prune_ui_sessions(now)?;
        Ok(expired + old_usage + old_counters + old_alerts + old_sessions)
    }

    /// The earliest expiry a token the filter still accepts at `now` can have (exp + skew).
    pub(super) fn live_after(&self, now: u64) -> Result<u64, PlaneError> {
        Ok(now.saturating_sub(self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?))
    }
}
