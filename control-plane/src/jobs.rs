//! The jobs that must run once per period across every replica, each under a lease in the
//! store (one holder at a time; a replica that dies loses it when it expires): pruning
//! revocations and minted tokens past their expiry, and a scheduled rotation of the signing
//! key when the operator asks for one.

use std::sync::Arc;
use std::time::Duration;

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

fn leads(state: &ServerState, job: &str, now: u64) -> bool {
    state
        .plane
        .store()
        .try_lease(job, &state.replica, now, LEASE_SECONDS)
        .unwrap_or_else(|error| {
            tracing::warn!(%error, job, "could not take a job's lease");
            false
        })
}
