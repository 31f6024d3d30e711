//! `make bench` (fourth part): the sync channel, one run. Pull mode (an Envoy started with
//! only a bootstrap, no ADS, as Istio or Envoy Gateway give it): a revocation committed →
//! 401 at the Envoy, p50 and p99 over many trials; the control plane stopped for 60 s under
//! traffic (wrong accepts and refusals, and how soon after its return a change is enforced);
//! a configuration of 10 000 revocations: what applying it costs the worker that pulls and
//! verifies it, and each worker that copies it from shared data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenward_control_plane::store::Isolation;
use tokenward_e2e::control_plane::unix_now;
use tokenward_e2e::envoy::Envoy;
use tokenward_e2e::fleet::{
    chat, mint, percentile, proxy_credential, revocation_trial, revoke_jti, until, Fleet,
};

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn revocations(
    envoy: &Envoy,
    fleet: &Fleet,
    admin: std::net::SocketAddr,
    trials: u64,
    tag: &str,
) -> Vec<Duration> {
    let mut took: Vec<Duration> = (0..trials)
        .map(|i| revocation_trial(envoy, admin, admin, &fleet.admin_key, &format!("{tag}{i}")))
        .collect();
    took.sort();
    took
}

/// The figures of the log lines `pulled configuration <version> <how> in <ms> ms` after
/// `from` (a position in the log).
fn applied(log: &str, from: usize, how: &str) -> Vec<f64> {
    log[from.min(log.len())..]
        .lines()
        .filter(|l| l.contains("pulled configuration") && l.contains(how))
        .filter_map(|l| {
            let (_, after) = l.rsplit_once(" in ")?;
            after.trim_end_matches(" ms").trim().parse().ok()
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let trials = env_number("BENCH_REVOCATIONS", 60);
    let outage = Duration::from_secs(env_number("BENCH_OUTAGE_SECONDS", 60));
    let fleet = Fleet::create();
    let operator = fleet.operator();
    let credential = proxy_credential(&operator);
    let cp = fleet.replica_process("cp");
    let admin = cp.admin;
    let envoy = fleet.pull_envoy("mesh-a", admin, &credential, 2);
    println!(
        "== the sync channel: an Envoy with only a bootstrap (pull mode, no ADS), 2 workers =="
    );

    let took = revocations(&envoy, &fleet, admin, trials, "r");
    println!(
        "revocation committed -> 401 at the Envoy: p50 {}, p99 {}, max {} over {trials} trials (target p99 <= 1 s)",
        ms(percentile(&took, 0.5)),
        ms(percentile(&took, 0.99)),
        ms(*took.last().unwrap())
    );

    // The control plane away for `outage` under traffic.
    let (valid, valid_jti) = mint(admin, &fleet.admin_key, "steady");
    let (revoked, revoked_jti) = mint(admin, &fleet.admin_key, "gone");
    until(&envoy, &valid, Duration::from_secs(10), |r| r.status == 200);
    revoke_jti(admin, &fleet.admin_key, &revoked_jti);
    until(&envoy, &revoked, Duration::from_secs(10), |r| {
        r.status == 401
    });
    let envoy = Arc::new(envoy);
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, wrong_accepts, wrong_refusals) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let traffic = {
        let (envoy, stop, sent, accepts, refusals) = (
            Arc::clone(&envoy),
            Arc::clone(&stop),
            Arc::clone(&sent),
            Arc::clone(&wrong_accepts),
            Arc::clone(&wrong_refusals),
        );
        let (valid, revoked) = (valid.clone(), revoked.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if chat(&envoy, &valid).status != 200 {
                    refusals.fetch_add(1, Ordering::SeqCst);
                }
                if chat(&envoy, &revoked).status != 401 {
                    accepts.fetch_add(1, Ordering::SeqCst);
                }
                sent.fetch_add(2, Ordering::SeqCst);
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    cp.kill()?;
    std::thread::sleep(outage);
    let staleness = envoy.stat("wasmcustom.tokenward.sync.seconds_since_contact");
    let errors = envoy.stat("wasmcustom.tokenward.sync.call_errors");
    let sent_while_away = sent.load(Ordering::SeqCst);
    let cp = fleet.replica_process_on("cp-again", admin);
    let back = Instant::now();
    revoke_jti(admin, &fleet.admin_key, &valid_jti);
    // The valid token is revoked now: the traffic thread's refusals from here on are right.
    stop.store(true, Ordering::SeqCst);
    traffic.join().unwrap();
    let (accepts, refusals) = (
        wrong_accepts.load(Ordering::SeqCst),
        wrong_refusals.load(Ordering::SeqCst),
    );
    until(&envoy, &valid, Duration::from_secs(30), |r| r.status == 401);
    let since_return = back.elapsed();
    println!(
        "control plane stopped {} s under traffic: {sent_while_away} requests, {accepts} wrong accepts, {refusals} wrong refusals; the Envoy said so (seconds_since_contact {staleness}, call_errors {errors})",
        outage.as_secs()
    );
    println!(
        "after its return: a change committed at once was enforced {} after the control plane listened again (the filter polls again 250 ms after a failure; the report interval is 1 s)",
        ms(since_return)
    );

    // 10 000 revocations in the configuration.
    let store = operator.store();
    let transaction = store.begin(Isolation::Atomic)?;
    let now = unix_now();
    for i in 0..10_000 {
        store.revoke_jti(&format!("bench-jti-{i:05}"), now + 3600, now)?;
    }
    let log_before = envoy.log().len();
    transaction.commit()?;
    let bytes = serde_json::to_vec(&operator.render(now)?)?.len();
    let start = Instant::now();
    let (mut leader, mut followers) = (Vec::new(), Vec::new());
    while start.elapsed() < Duration::from_secs(30) && (leader.is_empty() || followers.len() < 2) {
        std::thread::sleep(Duration::from_millis(100));
        let log = envoy.log();
        leader = applied(&log, log_before, "verified, compiled and shared");
        followers = applied(&log, log_before, "copied from shared data and compiled");
    }
    println!(
        "a configuration of 10 000 revocations ({bytes} bytes): the pulling worker verified, compiled and shared it in {:?} ms; each other worker copied it once and compiled it in {:?} ms",
        leader, followers
    );
    let took = revocations(&envoy, &fleet, admin, trials.min(20), "big");
    println!(
        "revocation committed -> 401 with 10 000 revocations in force: p50 {}, p99 {} over {} trials",
        ms(percentile(&took, 0.5)),
        ms(percentile(&took, 0.99)),
        took.len()
    );
    drop(cp);
    Ok(())
}
