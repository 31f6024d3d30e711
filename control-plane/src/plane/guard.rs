//! The failed-authentication guard's side in the control plane (docs/guard.md): its settings,
//! rendered into every filter's configuration, and the blocks the filters report, each turned
//! once into an alert (to the webhook, retried like budget alerts) and an audit entry.
//! Counting and blocking are the filter's.

use tokenward_filter::config::{FailedAuthConfig, GuardConfig};
use tokenward_filter::sync::{BlockEvent, SyncReport};

use super::*;
use crate::store::AlertEvent;

/// The stored guard settings; absent, the filter's defaults apply.
const SETTING_GUARD: &str = "guard";

/// Blocks taken from one report at most (a filter sends at most 64).
const MAX_BLOCKS_PER_REPORT: usize = 256;

impl<S: Store + ?Sized> ControlPlane<S> {
    /// The guard section every configuration carries; `None` (the filter's defaults) until
    /// an operator sets one.
    pub fn guard(&self) -> Result<Option<GuardConfig>, PlaneError> {
        match self.store.setting(SETTING_GUARD)? {
            Some(text) if !text.is_empty() => {
                Ok(Some(serde_json::from_str(&text).map_err(StoreError::from)?))
            }
            _ => Ok(None),
        }
    }

    /// The guard's settings in force: the stored ones, else the filter's defaults.
    pub fn guard_settings(&self) -> Result<FailedAuthConfig, PlaneError> {
        Ok(self.guard()?.unwrap_or_default().failed_auth)
    }

    /// Sets the guard's settings, checked as the filter compiles them (bounds, CIDRs).
    pub fn set_guard(&self, settings: FailedAuthConfig, now: u64) -> Result<(), PlaneError> {
        let guard = GuardConfig {
            failed_auth: settings,
        };
        self.serialized(|| {
            self.check_with(now, |config| config.guard = Some(guard.clone()))?;
            self.store.set_setting(
                SETTING_GUARD,
                &serde_json::to_string(&guard).map_err(StoreError::from)?,
            )?;
            let s = &guard.failed_auth;
            let detail = if s.enabled && s.threshold > 0 {
                format!(
                    "threshold {} per {} s, block {} s, {} exempt networks",
                    s.threshold,
                    s.window_seconds,
                    s.block_seconds,
                    s.exempt.len()
                )
            } else {
                "off".to_string()
            };
            self.audit(now, "guard.set", "failed_auth", &detail)
        })
    }

    /// Records the blocks a report names: each once per (kind, value, start), whichever
    /// replica and however often the report arrives, as an alert for the webhook and an
    /// audit entry. Returns how many were new.
    pub fn record_blocks(&self, report: &SyncReport, now: u64) -> Result<usize, PlaneError> {
        let mut new = 0;
        for block in report.blocks.iter().take(MAX_BLOCKS_PER_REPORT) {
            if self.record_block(&report.node, block, now)? {
                new += 1;
            }
        }
        Ok(new)
    }

    fn record_block(&self, node: &str, block: &BlockEvent, now: u64) -> Result<bool, PlaneError> {
        let kind = block.kind.label();
        // A value is an address or a short fingerprint; anything else is not from a filter.
        if block.value.is_empty() || block.value.len() > 64 {
            return Err(invalid("a block names an address or a fingerprint"));
        }
        let key = format!("guard:{kind}:{}", block.value);
        let body = serde_json::json!({
            "type": "tokenward.auth_block",
            "id": format!("{key}@{}", block.blocked_at),
            "kind": kind,
            "value": block.value,
            "node": node,
            "failures": block.failures,
            "blocked_at": block.blocked_at,
            "until": block.until,
            "fired_at": now,
        });
        let event = AlertEvent {
            key,
            window_start: block.blocked_at,
            threshold: 0,
            body: body.to_string(),
            fired_at: now,
            next_attempt_at: now,
            ..AlertEvent::default()
        };
        self.atomically(|| {
            if !self.store.record_alert(&event)? {
                return Ok(false);
            }
            self.audit(
                now,
                "guard.blocked",
                &format!("{kind} {}", block.value),
                &format!(
                    "node {node}: {} failed authentications; blocked from {} until {}",
                    block.failures, block.blocked_at, block.until
                ),
            )?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests;
