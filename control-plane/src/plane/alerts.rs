//! Budget alerts (docs/quotas.md, "Budget alerts"): thresholds per plan limit, in percent,
//! checked against the fleet's counters as reports come in. A threshold crossed fires once per
//! counter and window (the store's key says so, whichever replica sees it first), into the
//! audit log and to the webhook: a JSON body signed with HMAC-SHA256 under a secret the
//! control plane made (kept sealed under the master key), delivered by one replica at a time
//! and retried with backoff until it is taken or `ALERT_ATTEMPTS` are spent.

use serde::{Deserialize, Serialize};
use tokenward_filter::sync::key_parts;

use super::*;
use crate::store::{AlertEvent, ALERT_ATTEMPTS};

const SETTING_ALERT_RULES: &str = "alert_rules";
const SETTING_ALERT_WEBHOOK: &str = "alert_webhook";
const WEBHOOK_CONTEXT: &str = "alert-webhook";
/// The longest wait between two deliveries of one alert.
const MAX_BACKOFF_SECONDS: u64 = 300;

/// The thresholds of one plan limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRule {
    pub plan: String,
    pub limit: String,
    /// Percent of the limit, ascending: 80, 100.
    pub thresholds: Vec<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredWebhook {
    url: String,
    /// The HMAC secret, sealed, hex.
    secret_sealed: String,
}

/// Where alerts go, with the secret that signs them.
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The signature header of a delivery: `v1=` and the hex HMAC-SHA256 of
/// `<timestamp>.<body>` under the secret.
pub fn signature(secret: &str, timestamp: u64, body: &str) -> String {
    let mut mac = hmac_sha256::HMAC::new(secret.as_bytes());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

impl<S: Store + ?Sized> ControlPlane<S> {
    pub fn alert_rules(&self) -> Result<Vec<AlertRule>, PlaneError> {
        Ok(match self.store.setting(SETTING_ALERT_RULES)? {
            Some(text) => serde_json::from_str(&text).map_err(StoreError::from)?,
            None => Vec::new(),
        })
    }

    /// Adds or replaces the thresholds of a limit of a plan the catalog has.
    pub fn set_alert_rule(&self, rule: AlertRule, now: u64) -> Result<(), PlaneError> {
        let mut thresholds = rule.thresholds.clone();
        thresholds.sort_unstable();
        thresholds.dedup();
        if thresholds.is_empty() || thresholds.iter().any(|t| !(1..=1000).contains(t)) {
            return Err(invalid("thresholds are percents of the limit, 1 to 1000"));
        }
        self.serialized(|| {
            let plans = self.store.plans()?;
            let known = plans.iter().any(|(name, plan)| {
                *name == rule.plan && plan.limits.iter().any(|l| l.name == rule.limit)
            });
            if !known {
                return Err(PlaneError::NotFound(format!(
                    "limit {:?} of plan {:?}",
                    rule.limit, rule.plan
                )));
            }
            let mut rules = self.alert_rules()?;
            rules.retain(|r| !(r.plan == rule.plan && r.limit == rule.limit));
            rules.push(AlertRule {
                thresholds: thresholds.clone(),
                ..rule.clone()
            });
            rules.sort_by(|a, b| (&a.plan, &a.limit).cmp(&(&b.plan, &b.limit)));
            self.store.set_setting(
                SETTING_ALERT_RULES,
                &serde_json::to_string(&rules).map_err(StoreError::from)?,
            )?;
            let at: Vec<String> = thresholds.iter().map(|t| format!("{t}%")).collect();
            self.audit(
                now,
                "alert.set",
                &format!("{}/{}", rule.plan, rule.limit),
                &at.join(" "),
            )
        })
    }

    /// Removes a limit's thresholds; whether it had any.
    pub fn remove_alert_rule(&self, plan: &str, limit: &str, now: u64) -> Result<bool, PlaneError> {
        self.serialized(|| {
            let mut rules = self.alert_rules()?;
            let before = rules.len();
            rules.retain(|r| !(r.plan == plan && r.limit == limit));
            if rules.len() == before {
                return Ok(false);
            }
            self.store.set_setting(
                SETTING_ALERT_RULES,
                &serde_json::to_string(&rules).map_err(StoreError::from)?,
            )?;
            self.audit(now, "alert.remove", &format!("{plan}/{limit}"), "")?;
            Ok(true)
        })
    }

    /// Sets the webhook alerts go to, with a new signing secret: returned once, kept sealed.
    pub fn set_alert_webhook(&self, url: &str, now: u64) -> Result<String, PlaneError> {
        crate::outbound::Target::parse(url).map_err(|e| invalid(e.to_string()))?;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| invalid(format!("no randomness: {e}")))?;
        let secret = crypto::hex(&random);
        let sealed = self.master.seal(WEBHOOK_CONTEXT, secret.as_bytes())?;
        let stored = StoredWebhook {
            url: url.to_string(),
            secret_sealed: crypto::hex(&sealed),
        };
        self.serialized(|| {
            self.store.set_setting(
                SETTING_ALERT_WEBHOOK,
                &serde_json::to_string(&stored).map_err(StoreError::from)?,
            )?;
            self.audit(now, "alert.webhook", url, "new signing secret")
        })?;
        Ok(secret)
    }

    /// The webhook, its secret opened; `None` when none is set.
    pub fn alert_webhook(&self) -> Result<Option<Webhook>, PlaneError> {
        let Some(text) = self.store.setting(SETTING_ALERT_WEBHOOK)? else {
            return Ok(None);
        };
        let stored: StoredWebhook = serde_json::from_str(&text).map_err(StoreError::from)?;
        let sealed = crypto::unhex(&stored.secret_sealed)
            .ok_or_else(|| invalid("the webhook secret is unreadable"))?;
        let secret = self.master.open(WEBHOOK_CONTEXT, &sealed)?;
        Ok(Some(Webhook {
            url: stored.url,
            secret: String::from_utf8(secret)
                .map_err(|_| invalid("the webhook secret is unreadable"))?,
        }))
    }

    /// Fires the thresholds of `key`'s limit that `used` of `limit` has crossed in the window
    /// starting at `window_start`: each once per window, into the audit log and the queue of
    /// deliveries. Runs inside the report's transaction.
    pub(super) fn fire_alerts(
        &self,
        rules: &[AlertRule],
        key: &str,
        window: (u64, u64),
        used: u64,
        limit: u64,
        now: u64,
    ) -> Result<(), PlaneError> {
        let Some(parts) = key_parts(key) else {
            return Ok(());
        };
        let Some(rule) = rules
            .iter()
            .find(|r| r.plan == parts.plan && r.limit == parts.limit)
        else {
            return Ok(());
        };
        for &threshold in &rule.thresholds {
            if u128::from(used) * 100 < u128::from(threshold) * u128::from(limit) {
                continue;
            }
            let body = serde_json::json!({
                "type": "tokenward.budget_alert",
                "id": format!("{key}@{}/{threshold}", window.0),
                "plan": parts.plan,
                "limit": parts.limit,
                "metric": parts.metric,
                "per": if parts.scope == "t" { "tenant" } else { "subject" },
                "who": parts.id,
                "threshold_percent": threshold,
                "used": used,
                "limit_value": limit,
                "window_start": window.0,
                "window_end": window.1,
                "fired_at": now,
            });
            let event = AlertEvent {
                key: key.to_string(),
                window_start: window.0,
                threshold,
                body: body.to_string(),
                fired_at: now,
                next_attempt_at: now,
                ..AlertEvent::default()
            };
            if self.store.record_alert(&event)? {
                self.audit(
                    now,
                    "alert.fired",
                    &format!(
                        "{}/{} {} {}",
                        parts.plan, parts.limit, parts.scope, parts.id
                    ),
                    &format!("{threshold}% ({used} of {limit})"),
                )?;
            }
        }
        Ok(())
    }

    /// The alerts due for delivery at `now`.
    pub fn due_alerts(&self, now: u64) -> Result<Vec<AlertEvent>, PlaneError> {
        Ok(self.store.due_alerts(now, 100)?)
    }

    /// Writes the outcome of a delivery: taken, or tried again after a backoff (1 s, 2 s,
    /// 4 s … at most 5 minutes), or given up after `ALERT_ATTEMPTS`.
    pub fn alert_delivered(
        &self,
        mut event: AlertEvent,
        outcome: Result<(), String>,
        now: u64,
    ) -> Result<(), PlaneError> {
        event.attempts += 1;
        match outcome {
            Ok(()) => {
                event.delivered_at = Some(now);
                event.last_error.clear();
            }
            Err(error) => {
                let backoff = 1u64
                    .checked_shl(u32::try_from(event.attempts - 1).unwrap_or(u32::MAX))
                    .unwrap_or(u64::MAX)
                    .min(MAX_BACKOFF_SECONDS);
                event.next_attempt_at = now.saturating_add(backoff);
                if event.attempts >= ALERT_ATTEMPTS {
                    tracing::warn!(key = %event.key, %error, "an alert was given up");
                }
                event.last_error = error;
            }
        }
        Ok(self.store.alert_attempted(&event)?)
    }

    pub fn alert_events(&self, limit: usize) -> Result<Vec<AlertEvent>, PlaneError> {
        Ok(self.store.alert_events(limit)?)
    }
}

#[cfg(test)]
mod tests;
