//! The installation's settings: issuer, audiences, token lifetime maximum, clock skew, key
//! overlap, each bounded and audited.

use super::*;

impl<S: Store + ?Sized> ControlPlane<S> {
    pub(super) fn number_setting(&self, name: &str, default: u64) -> Result<u64, PlaneError> {
        match self.store.setting(name)? {
            Some(value) => value
                .parse()
                .map_err(|_| invalid(format!("setting {name} is not a number: {value:?}"))),
            None => Ok(default),
        }
    }

    /// How many days of usage the ledger keeps.
    pub fn usage_retention_days(&self) -> Result<u64, PlaneError> {
        self.number_setting(SETTING_USAGE_RETENTION, DEFAULT_USAGE_RETENTION_DAYS)
    }

    pub fn max_token_ttl(&self) -> Result<u64, PlaneError> {
        self.number_setting(SETTING_MAX_TTL, DEFAULT_MAX_TOKEN_TTL)
    }

    pub(super) fn issuer(&self) -> Result<String, PlaneError> {
        self.store
            .setting(SETTING_ISSUER)?
            .ok_or(PlaneError::NotInitialised)
    }

    pub(super) fn audiences(&self) -> Result<Vec<String>, PlaneError> {
        let text = self
            .store
            .setting(SETTING_AUDIENCES)?
            .ok_or(PlaneError::NotInitialised)?;
        Ok(serde_json::from_str(&text).map_err(StoreError::from)?)
    }

    /// Changes one of the numeric settings, within its bounds, checked like every change.
    pub fn set_setting(&self, name: &str, value: u64, now: u64) -> Result<(), PlaneError> {
        self.serialized(|| {
            let (low, high) = match name {
                SETTING_MAX_TTL => (60, 7 * 24 * 3600),
                SETTING_SKEW => (0, 600),
                SETTING_OVERLAP => (0, MAX_KEY_OVERLAP),
                SETTING_USAGE_RETENTION => (1, 3650),
                _ => {
                    return Err(invalid(format!(
                        "unknown setting {name:?}: use {SETTING_MAX_TTL}, {SETTING_SKEW}, {SETTING_OVERLAP} or {SETTING_USAGE_RETENTION}"
                    )))
                }
            };
            if !(low..=high).contains(&value) {
                return Err(invalid(format!("{name} must be between {low} and {high}")));
            }
            self.check_with(now, |config| match name {
                SETTING_MAX_TTL => config.max_token_lifetime_seconds = value,
                SETTING_SKEW => config.clock_skew_seconds = value,
                _ => {}
            })?;
            self.store.set_setting(name, &value.to_string())?;
            // Retired keys stay published as long as the tokens they signed may now live.
            let keep = self.max_token_ttl()? + self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?;
            self.store.extend_publication(keep)?;
            self.audit(now, "setting.set", name, &value.to_string())?;
            Ok(())
        })
    }

    /// The numeric settings in force.
    pub fn settings(&self) -> Result<Vec<(&'static str, u64)>, PlaneError> {
        Ok(vec![
            (SETTING_MAX_TTL, self.max_token_ttl()?),
            (
                SETTING_SKEW,
                self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?,
            ),
            (
                SETTING_OVERLAP,
                self.number_setting(SETTING_OVERLAP, DEFAULT_KEY_OVERLAP)?,
            ),
            (SETTING_USAGE_RETENTION, self.usage_retention_days()?),
        ])
    }
}

/// The stored sync channel the pushed configuration names (usage reports from pushed and
/// static mode).
const SETTING_SYNC: &str = "sync_channel";

impl<S: Store + ?Sized> ControlPlane<S> {
    /// The sync channel every pushed configuration names, if one is set.
    pub fn sync_channel(&self) -> Result<Option<SyncConfig>, PlaneError> {
        match self.store.setting(SETTING_SYNC)? {
            Some(text) if !text.is_empty() => {
                Ok(Some(serde_json::from_str(&text).map_err(StoreError::from)?))
            }
            _ => Ok(None),
        }
    }

    /// Sets (or, with `None`, removes) the sync channel the pushed configuration names.
    pub fn set_sync_channel(
        &self,
        channel: Option<&SyncConfig>,
        now: u64,
    ) -> Result<(), PlaneError> {
        self.serialized(|| {
            if let Some(channel) = channel {
                if matches!(channel.credential, CredentialSource::Inline(_)) {
                    // The pushed configuration reaches every Envoy and the ADS stream: the
                    // credential stays in the Envoys' environment.
                    return Err(invalid(
                        "name the proxy credential by environment variable (credential_env)",
                    ));
                }
                tokenward_filter::sync::SyncSettings::compile(channel, &|name| {
                    Some(format!("{name}-set-in-envoy"))
                })?;
            }
            let text = match channel {
                Some(channel) => serde_json::to_string(channel).map_err(StoreError::from)?,
                None => String::new(),
            };
            self.store.set_setting(SETTING_SYNC, &text)?;
            let detail = channel.map_or("off".to_string(), |c| format!("cluster {}", c.cluster));
            self.audit(now, "sync.set", "sync", &detail)?;
            Ok(())
        })
    }
}
