//! Spend spikes (docs/quotas.md, "Spend spikes"): a credential whose hourly usage rate jumps
//! past its plan's multiple of the credential's own baseline raises an alert (audit log, the
//! alert queue and so the webhook) and, when the plan says `suspend`, has its subject revoked
//! until an operator lifts it. Judged from the usage ledger only, so a spike shows at most a
//! report interval plus one run of the job after it happened. The job that runs it every few
//! seconds, once across replicas, is in `jobs`.

use std::collections::BTreeMap;

use serde::Serialize;
use tokenward_filter::config::{Metric, SpikeAction, SpikeConfig};

use super::*;
use crate::store::{hour_of, AlertEvent, CredentialHour};

/// The baseline is the mean hourly rate over at most this many hours.
pub const BASELINE_HOURS: u64 = 7 * 24;
/// The current hour is judged only once this much of it has passed: a handful of requests in
/// its first minute, scaled to an hour, would look like a spike of anything.
pub const MIN_ELAPSED_SECONDS: u64 = 300;
/// The key of a credential's spike alerts (`spike:<credential>`), one per hour.
pub const SPIKE_KEY_PREFIX: &str = "spike:";

/// A spike found and fired (each once per credential and hour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spike {
    pub credential: String,
    pub subject: String,
    pub tenant: Option<String>,
    pub plan: String,
    /// The start of the hour whose rate crossed.
    pub hour: u64,
    pub metric: Metric,
    /// Per hour, in the metric's unit.
    pub rate: u64,
    pub baseline: u64,
    pub multiple: u64,
    pub action: SpikeAction,
    /// Whether the subject was revoked by this spike (false for `alert`, for a subject revoked
    /// already, and for the holder of the last admin API key).
    pub suspended: bool,
}

/// Refuses a spike setting that would fire on noise: a multiple of at least 2 and a baseline
/// of at least one unit per hour.
pub fn check_spike_config(spike: &SpikeConfig) -> Result<(), PlaneError> {
    if !(2..=1_000_000).contains(&spike.multiple) {
        return Err(invalid("a spike's multiple is 2 to 1000000"));
    }
    if spike.min_baseline == 0 {
        return Err(invalid(
            "a spike's min_baseline is at least 1 (per hour, in the metric's unit)",
        ));
    }
    Ok(())
}

/// How much of `metric` one credential's hour holds.
fn amount(metric: Metric, hour: &CredentialHour) -> u64 {
    match metric {
        Metric::Requests => hour.requests,
        Metric::InputTokens => hour.input_tokens,
        Metric::OutputTokens => hour.output_tokens,
        Metric::TotalTokens => hour.input_tokens.saturating_add(hour.output_tokens),
        Metric::CostMicroUsd => hour.cost_micro_usd,
    }
}

/// The metric's name as plans spell it.
fn metric_name(metric: Metric) -> String {
    serde_json::to_value(metric)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The mean hourly amount of `hours` (one credential's, all before `until`), over the hours
/// since it was first seen among them, at most `BASELINE_HOURS`; never below `min_baseline`.
/// A credential first seen in the hour judged has no past: `min_baseline` is its baseline.
pub fn baseline(hours: &[CredentialHour], metric: Metric, until: u64, min_baseline: u64) -> u64 {
    let Some(first) = hours.iter().map(|h| h.hour).min() else {
        return min_baseline;
    };
    let span = until.saturating_sub(first) / 3600;
    let span = span.clamp(1, BASELINE_HOURS);
    let total: u64 = hours
        .iter()
        .map(|h| amount(metric, h))
        .fold(0, u64::saturating_add);
    (total / span).max(min_baseline)
}

/// `amount` used in `elapsed` seconds, per hour.
fn per_hour(amount: u64, elapsed: u64) -> u64 {
    let rate = u128::from(amount) * 3600 / u128::from(elapsed.max(1));
    u64::try_from(rate).unwrap_or(u64::MAX)
}

/// The weeks of usage the spike job has read, summed per credential, for one previous hour.
/// Usage is counted in the hour its report arrives, so hours before the previous one never
/// change: a busy credential costs one read of its week per hour, not one per run.
#[derive(Debug, Default)]
pub struct BaselineCache {
    previous: u64,
    /// One `CredentialHour` per credential: `hour` the first seen, the counts summed; `None`
    /// for a credential with no usage before.
    weeks: std::collections::HashMap<String, Option<CredentialHour>>,
}

impl BaselineCache {
    fn week(&mut self, previous: u64, credential: &str) -> Option<&Option<CredentialHour>> {
        if self.previous != previous {
            self.previous = previous;
            self.weeks.clear();
        }
        self.weeks.get(credential)
    }
}

/// A credential's hours summed into one: `hour` the first of them.
fn summed(hours: &[CredentialHour]) -> Option<CredentialHour> {
    let first = hours.iter().map(|h| h.hour).min()?;
    Some(hours.iter().fold(
        CredentialHour {
            hour: first,
            ..CredentialHour::default()
        },
        |sum, h| CredentialHour {
            requests: sum.requests.saturating_add(h.requests),
            input_tokens: sum.input_tokens.saturating_add(h.input_tokens),
            output_tokens: sum.output_tokens.saturating_add(h.output_tokens),
            cost_micro_usd: sum.cost_micro_usd.saturating_add(h.cost_micro_usd),
            ..sum
        },
    ))
}

impl<S: Store + ?Sized> ControlPlane<S> {
    /// `check_spikes_with` without a cache: every baseline is read again.
    pub fn check_spikes(&self, now: u64) -> Result<Vec<Spike>, PlaneError> {
        self.check_spikes_with(now, &mut BaselineCache::default())
    }

    /// Looks for spend spikes at `now` and fires each new one (`Spike`): the rate of the
    /// current hour so far (once `MIN_ELAPSED_SECONDS` have passed), scaled to an hour, and
    /// that of the previous hour (its last reports may have arrived after it ended), each
    /// against the credential's baseline over the `BASELINE_HOURS` before the previous hour,
    /// so the hour judged never dilutes its own baseline.
    pub fn check_spikes_with(
        &self,
        now: u64,
        cache: &mut BaselineCache,
    ) -> Result<Vec<Spike>, PlaneError> {
        let watched: BTreeMap<String, SpikeConfig> = self
            .store
            .plans()?
            .into_iter()
            .filter_map(|(name, plan)| Some((name, plan.spike?)))
            .collect();
        if watched.is_empty() {
            return Ok(Vec::new());
        }
        let current = hour_of(now);
        let previous = current.saturating_sub(3600);
        let elapsed = now - current;
        // Two hours of the ledger, grouped by credential (and its subject, tenant and plan).
        let mut recent: BTreeMap<(String, String, Option<String>, String), Vec<CredentialHour>> =
            BTreeMap::new();
        for hour in self
            .store
            .credential_usage(previous, current.saturating_add(3600), None)?
        {
            let Some(plan) = hour.plan.clone() else {
                continue;
            };
            if !watched.contains_key(&plan) {
                continue;
            }
            let key = (
                hour.credential.clone(),
                hour.subject.clone(),
                hour.tenant.clone(),
                plan,
            );
            recent.entry(key).or_default().push(hour);
        }
        let mut fired = Vec::new();
        for ((credential, subject, tenant, plan), hours) in recent {
            let Some(spike) = watched.get(&plan) else {
                continue;
            };
            let in_hour = |start: u64| {
                hours
                    .iter()
                    .filter(|h| h.hour == start)
                    .map(|h| amount(spike.metric, h))
                    .fold(0, u64::saturating_add)
            };
            let mut rates = vec![(previous, in_hour(previous))];
            if elapsed >= MIN_ELAPSED_SECONDS {
                rates.push((current, per_hour(in_hour(current), elapsed)));
            }
            // The baseline is never below min_baseline: a rate under multiple × min_baseline
            // cannot be a spike, and most credentials stop here without another read.
            let floor = spike.multiple.saturating_mul(spike.min_baseline);
            if rates.iter().all(|&(_, rate)| rate <= floor) {
                continue;
            }
            let week = match cache.week(previous, &credential) {
                Some(week) => week.clone(),
                None => {
                    let week = summed(&self.store.credential_usage(
                        previous.saturating_sub(BASELINE_HOURS * 3600),
                        previous,
                        Some(&credential),
                    )?);
                    cache.weeks.insert(credential.clone(), week.clone());
                    week
                }
            };
            let baseline = baseline(week.as_slice(), spike.metric, previous, spike.min_baseline);
            for (hour, rate) in rates {
                if rate <= spike.multiple.saturating_mul(baseline) {
                    continue;
                }
                let found = Spike {
                    credential: credential.clone(),
                    subject: subject.clone(),
                    tenant: tenant.clone(),
                    plan: plan.clone(),
                    hour,
                    metric: spike.metric,
                    rate,
                    baseline,
                    multiple: spike.multiple,
                    action: spike.action,
                    suspended: false,
                };
                if let Some(done) = self.fire_spike(found, now)? {
                    fired.push(done);
                }
            }
        }
        Ok(fired)
    }

    /// Records a spike once per credential and hour (whichever replica's job saw it first),
    /// audits it, and suspends its subject when the plan says so; `None` when it fired before.
    fn fire_spike(&self, mut spike: Spike, now: u64) -> Result<Option<Spike>, PlaneError> {
        self.serialized(|| {
            let key = format!("{SPIKE_KEY_PREFIX}{}", spike.credential);
            let metric = metric_name(spike.metric);
            let why = format!(
                "{} {metric}/h, over {}× the baseline of {} {metric}/h (plan {})",
                spike.rate, spike.multiple, spike.baseline, spike.plan
            );
            // Decided before the alert is recorded, so its body can say what happened.
            let suspension = match spike.action {
                SpikeAction::Alert => Suspension::NotAsked,
                SpikeAction::Suspend => self.suspension(&spike.subject, now)?,
            };
            spike.suspended = suspension == Suspension::Now;
            let body = serde_json::json!({
                "type": "tokenward.spend_spike",
                // The form of the delivery's x-tokenward-alert-id, as budget alerts have it.
                "id": format!("{key}@{}/{}", spike.hour, spike.multiple),
                "subject": spike.subject,
                "tenant": spike.tenant,
                "plan": spike.plan,
                "credential": spike.credential,
                "metric": metric,
                "rate": spike.rate,
                "baseline": spike.baseline,
                "multiple": spike.multiple,
                "action": spike.action.as_str(),
                "suspended": spike.suspended,
                "hour": spike.hour,
                "fired_at": now,
            });
            let event = AlertEvent {
                key,
                window_start: spike.hour,
                threshold: spike.multiple,
                body: body.to_string(),
                fired_at: now,
                next_attempt_at: now,
                ..AlertEvent::default()
            };
            if !self.store.record_alert(&event)? {
                return Ok(None);
            }
            let subject = &spike.subject;
            self.audit(
                now,
                "alert.spike",
                &format!("credential {} of {subject}", spike.credential),
                &why,
            )?;
            match suspension {
                Suspension::Now => {
                    // Only the subject: its API keys stay as they are, so a lift gives back
                    // exactly what the suspension took.
                    self.store.revoke_subject(subject, now)?;
                    self.audit(
                        now,
                        "guard.suspended",
                        subject,
                        &format!(
                            "spend spike of credential {}: {why}; lift: tokenward token unrevoke --subject {subject}",
                            spike.credential
                        ),
                    )?;
                }
                Suspension::LastAdmin(reason) => {
                    self.audit(
                        now,
                        "guard.not_suspended",
                        subject,
                        &format!("spend spike of credential {}: {why}; {reason}", spike.credential),
                    )?;
                }
                Suspension::NotAsked | Suspension::Already => {}
            }
            Ok(Some(spike))
        })
    }

    /// Whether a spike of `subject` suspends it now. Never the holder of the last admin API
    /// key: nobody could then reach the admin API to lift it.
    fn suspension(&self, subject: &str, now: u64) -> Result<Suspension, PlaneError> {
        if self.store.revoked_subjects()?.iter().any(|s| s == subject) {
            return Ok(Suspension::Already);
        }
        match self.keep_an_admin(&Revocation::Subject(subject.to_string()), now) {
            Ok(()) => Ok(Suspension::Now),
            Err(PlaneError::InUse(reason)) => Ok(Suspension::LastAdmin(reason)),
            Err(other) => Err(other),
        }
    }
}

/// What a spike does to its subject.
#[derive(Debug, PartialEq, Eq)]
enum Suspension {
    /// The plan's action is `alert`.
    NotAsked,
    /// Revoked by this spike.
    Now,
    /// Revoked already (by an operator, or another credential's spike).
    Already,
    /// It holds the last admin API key: left alone, and the audit log says why.
    LastAdmin(String),
}

#[cfg(test)]
mod tests;
