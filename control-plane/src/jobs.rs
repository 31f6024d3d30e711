//! The jobs that must run once per period across every replica, each under a lease in the
//! store (one holder at a time; a replica that dies loses it when it expires): pruning
//! revocations and minted tokens past their expiry, a scheduled rotation of the signing key
//! when the operator asks for one, delivering budget alerts to the webhook, and looking for
//! spend spikes.

use std::sync::Arc;
use std::time::Duration;

use crate::plane::spikes::BaselineCache;
use crate::state::ServerState;

/// How often each replica tries to run the jobs; the lease outlives two tries, so the
/// holder keeps it while it lives.
const PERIOD: Duration = Duration::from_secs(30);
const LEASE_SECONDS: u64 = 75;

/// What the jobs do; `None` leaves a job off.
#[derive(Debug, Clone, Default)]
pub struct JobSettings {
    /// Rotate the signing key when the newest is this old (`serve --rotate-keys-every`).
    pub rotate_every: Option<Duration>,
    /// Export usage as OTLP metrics (`serve --otlp-endpoint`).
    pub otlp: Option<crate::otlp::OtlpSettings>,
}

/// Runs the jobs every `PERIOD` until the task is dropped.
pub async fn run(state: Arc<ServerState>, settings: JobSettings) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        let work = Arc::clone(&state);
        let settings = settings.clone();
        let _ = tokio::task::spawn_blocking(move || run_once(&work, &settings)).await;
    }
}

/// One round: each job whose lease this replica holds (or takes) runs.
pub fn run_once(state: &ServerState, settings: &JobSettings) {
    let now = (state.clock)();
    let plane = state.plane.acting_as(&format!("job@{}", state.replica));
    if leads(state, "prune", now) {
        match plane.prune(now) {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned revocations and tokens past their expiry"),
            Err(error) => tracing::warn!(%error, "pruning failed; the next round tries again"),
        }
    }
    if let Some(every) = settings.rotate_every {
        if leads(state, "rotate-signing-key", now) {
            match plane.rotate_if_older(every.as_secs(), now) {
                Ok(Some(key)) => {
                    tracing::info!(kid = %key.kid, activate_at = key.activate_at, "rotated the signing key on schedule")
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "the scheduled key rotation failed; the next round tries again")
                }
            }
        }
    }
}

/// How often budget alerts are delivered (and retried), under a lease of `ALERT_LEASE_SECONDS`:
/// a replica that dies hands delivery over within it.
const ALERT_PERIOD: Duration = Duration::from_secs(2);
const ALERT_LEASE_SECONDS: u64 = 10;
/// A webhook that has not answered in this long is tried again later.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Delivers budget alerts every `ALERT_PERIOD` until the task is dropped.
pub async fn deliver_alerts(state: Arc<ServerState>) {
    let mut tick = tokio::time::interval(ALERT_PERIOD);
    loop {
        tick.tick().await;
        deliver_alerts_once(&state).await;
    }
}

/// One round: when this replica holds the delivery lease, every alert due is POSTed to the
/// webhook (signed), and its outcome written; how many were taken.
pub async fn deliver_alerts_once(state: &Arc<ServerState>) -> usize {
    let work = Arc::clone(state);
    let due = tokio::task::spawn_blocking(move || {
        let now = (work.clock)();
        if !leads_for(&work, "deliver-alerts", now, ALERT_LEASE_SECONDS) {
            return None;
        }
        let webhook = match work.plane.alert_webhook() {
            Ok(Some(webhook)) => webhook,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(%error, "the alert webhook could not be read");
                return None;
            }
        };
        let due = work
            .plane
            .due_alerts(now)
            .inspect_err(|error| tracing::warn!(%error, "due alerts could not be read"))
            .ok()?;
        (!due.is_empty()).then_some((webhook, due))
    })
    .await
    .ok()
    .flatten();
    let Some((webhook, due)) = due else {
        return 0;
    };
    let mut taken = 0;
    for event in due {
        let now = (state.clock)();
        let id = format!("{}@{}/{}", event.key, event.window_start, event.threshold);
        let headers = vec![
            ("x-tokenward-timestamp".to_string(), now.to_string()),
            (
                "x-tokenward-signature".to_string(),
                crate::plane::alerts::signature(&webhook.secret, now, &event.body),
            ),
            ("x-tokenward-alert-id".to_string(), id),
        ];
        let outcome = match crate::outbound::post(
            &webhook.url,
            "application/json",
            &headers,
            event.body.clone().into_bytes(),
            WEBHOOK_TIMEOUT,
        )
        .await
        {
            Ok(status) if (200..300).contains(&status) => Ok(()),
            Ok(status) => Err(format!("the webhook answered {status}")),
            Err(error) => Err(error.to_string()),
        };
        taken += usize::from(outcome.is_ok());
        let work = Arc::clone(state);
        let written = tokio::task::spawn_blocking(move || {
            work.plane.alert_delivered(event, outcome, (work.clock)())
        })
        .await;
        if let Ok(Err(error)) = written {
            tracing::warn!(%error, "an alert's delivery could not be written");
        }
    }
    taken
}

/// How often spend spikes are looked for, under a lease of `SPIKE_LEASE_SECONDS`: often enough
/// that a runaway credential is stopped within seconds of its report, cheap because each run
/// reads two hours of the ledger (and a week of one credential only when it may be a spike).
const SPIKE_PERIOD: Duration = Duration::from_secs(10);
const SPIKE_LEASE_SECONDS: u64 = 30;

/// Looks for spend spikes every `SPIKE_PERIOD` until the task is dropped.
pub async fn watch_spikes(state: Arc<ServerState>) {
    let mut tick = tokio::time::interval(SPIKE_PERIOD);
    let mut cache = BaselineCache::default();
    loop {
        tick.tick().await;
        let work = Arc::clone(&state);
        let mut kept = std::mem::take(&mut cache);
        if let Ok(kept) = tokio::task::spawn_blocking(move || {
            check_spikes_once(&work, &mut kept);
            kept
        })
        .await
        {
            cache = kept;
        }
    }
}

/// One round: when this replica holds the spike lease, the spikes found are fired (each once
/// per credential and hour); how many.
pub fn check_spikes_once(state: &ServerState, cache: &mut BaselineCache) -> usize {
    let now = (state.clock)();
    if !leads_for(state, "spend-spikes", now, SPIKE_LEASE_SECONDS) {
        return 0;
    }
    let plane = state.plane.acting_as(&format!("job@{}", state.replica));
    match plane.check_spikes_with(now, cache) {
        Ok(spikes) => {
            for spike in &spikes {
                tracing::warn!(
                    credential = %spike.credential,
                    subject = %spike.subject,
                    plan = %spike.plan,
                    rate = spike.rate,
                    baseline = spike.baseline,
                    multiple = spike.multiple,
                    suspended = spike.suspended,
                    "spend spike"
                );
            }
            spikes.len()
        }
        Err(error) => {
            tracing::warn!(%error, "looking for spend spikes failed; the next round tries again");
            0
        }
    }
}

fn leads(state: &ServerState, job: &str, now: u64) -> bool {
    leads_for(state, job, now, LEASE_SECONDS)
}

fn leads_for(state: &ServerState, job: &str, now: u64, lease_seconds: u64) -> bool {
    state
        .plane
        .store()
        .try_lease(job, &state.replica, now, lease_seconds)
        .unwrap_or_else(|error| {
            tracing::warn!(%error, job, "could not take a job's lease");
            false
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::model::Alg;
    use crate::plane::{ControlPlane, InitSettings, Revocation};
    use crate::state::ServerState;
    use crate::store::{SqliteStore, Store};

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn two_replicas_run_a_job_once_and_the_other_takes_over_when_the_holder_is_gone() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let plane =
            ControlPlane::<dyn Store>::new(Arc::clone(&store), MasterKey::generate().unwrap(), "t");
        plane
            .init(
                &InitSettings {
                    issuer: "https://cp.test".into(),
                    audiences: vec!["gw".into()],
                    alg: Alg::EdDSA,
                },
                NOW,
            )
            .unwrap();
        plane
            .revoke(
                &Revocation::Jti {
                    jti: "gone".into(),
                    expires_at: Some(NOW + 10),
                },
                NOW,
            )
            .unwrap();
        let clock = Arc::new(std::sync::atomic::AtomicU64::new(NOW + 100));
        let replica = |name: &str| {
            let clock = Arc::clone(&clock);
            ServerState::over(
                plane.clone(),
                Box::new(move || clock.load(std::sync::atomic::Ordering::SeqCst)),
            )
            .with_replica(name)
        };
        let (a, b) = (replica("a"), replica("b"));
        let settings = JobSettings {
            rotate_every: Some(Duration::from_secs(3600)),
            otlp: None,
        };
        run_once(&a, &settings);
        run_once(&b, &settings);
        assert!(store.revoked_jtis(0).unwrap().is_empty(), "pruned");
        assert_eq!(store.signing_keys().unwrap().len(), 1, "not due yet");
        // An hour on, both try: a's lease has expired, b takes it and rotates, once.
        clock.store(NOW + 3700, std::sync::atomic::Ordering::SeqCst);
        run_once(&b, &settings);
        run_once(&a, &settings);
        assert_eq!(store.signing_keys().unwrap().len(), 2, "rotated once");
        let rotations = store
            .audit_log(100)
            .unwrap()
            .iter()
            .filter(|e| e.action == "key.rotate")
            .count();
        assert_eq!(
            rotations,
            2,
            "the first key and one rotation: {:?}",
            store.audit_log(100).unwrap()
        );
        // b holds it now (a's had expired); while it does a cannot take it, and once b is
        // gone and its lease has run out, a takes over.
        assert!(!store
            .try_lease("rotate-signing-key", "a", NOW + 3701, 60)
            .unwrap());
        assert!(store
            .try_lease("rotate-signing-key", "a", NOW + 3700 + LEASE_SECONDS, 60)
            .unwrap());
    }

    #[test]
    fn spend_spikes_are_looked_for_by_one_replica_which_the_audit_log_names() {
        use tokenward_filter::config::{LimitScope, Metric, SpikeAction, SpikeConfig};
        use tokenward_filter::sync::{SyncReport, UsageEntry};
        let plane = crate::plane::fixtures::with_team_plan(
            NOW,
            "rpm",
            Metric::Requests,
            LimitScope::Subject,
            1000,
        );
        let mut plan = plane.store().plans().unwrap().remove(0).1;
        plan.spike = Some(SpikeConfig {
            multiple: 10,
            metric: Metric::Requests,
            min_baseline: 5,
            action: SpikeAction::Suspend,
        });
        plane.put_plan("team", plan, NOW).unwrap();
        // 100 requests in the first ten minutes of an hour: 600 an hour, past 10 × 5.
        let report = SyncReport {
            entries: vec![UsageEntry {
                subject: "bob".into(),
                tenant: None,
                plan: Some("team".into()),
                credential: Some("k1".into()),
                provider: "openai".into(),
                model: None,
                requests: 100,
                input_tokens: 0,
                output_tokens: 0,
                cached_input_tokens: 0,
                cost_micro_usd: 0,
            }],
            ..SyncReport::new("envoy-a", "1", 1)
        };
        plane.record_usage(&report, NOW + 590).unwrap();
        let plane = plane.into_dyn();
        let replica = |name: &str| {
            ServerState::over(plane.clone(), Box::new(|| NOW + 600)).with_replica(name)
        };
        let (a, b) = (replica("a"), replica("b"));
        let mut cache = BaselineCache::default();
        assert_eq!(check_spikes_once(&a, &mut cache), 1);
        assert_eq!(check_spikes_once(&b, &mut cache), 0, "a holds the lease");
        assert_eq!(check_spikes_once(&a, &mut cache), 0, "fired once");
        assert_eq!(plane.store().revoked_subjects().unwrap(), ["bob"]);
        let suspended: Vec<String> = plane
            .store()
            .audit_log(100)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "guard.suspended")
            .map(|e| e.actor)
            .collect();
        assert_eq!(suspended, ["job@a"]);
    }
}

#[cfg(test)]
mod delivery_tests;
