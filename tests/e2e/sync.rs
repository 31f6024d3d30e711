//! The sync channel in a real Envoy: an Envoy started with only a bootstrap (as Istio or Envoy
//! Gateway give it, no ADS) pulls its configuration from `tokenward serve`, enforces it and
//! its revocations, keeps enforcing the last one while the control plane is away, and reports
//! usage that adds up exactly to what the provider reported, across a control-plane restart.
//! The figures (p50/p99, the 60-second outage) come from `make bench`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenward_e2e::control_plane::unix_now;
use tokenward_e2e::fleet::{
    admin_call, chat, mint, proxy_credential, revoke_jti, until, until_every_worker, Fleet,
};

const REVOKED: Option<&str> = Some("token_revoked");

#[test]
fn an_envoy_with_only_a_bootstrap_enforces_the_pulled_configuration_and_revocations_through_any_replica(
) {
    let fleet = Fleet::create();
    let credential = proxy_credential(&fleet.operator());
    // Two replicas over one database: the Envoy pulls from the second, the operator works
    // through the first.
    let (cp, other) = (fleet.replica_process("cp"), fleet.replica_process("cp-2"));
    let envoy = fleet.pull_envoy("mesh-a", other.admin, &credential, 2);
    let (token, jti) = mint(cp.admin, &fleet.admin_key, "alice");
    // The first configuration arrives through the channel; until then every request is 503.
    until(&envoy, &token, Duration::from_secs(15), |r| r.status == 200);
    let received = fleet.openai.received();
    let last = received.last().unwrap();
    assert!(last
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer ") && !a.contains(&token)));
    assert!(
        !last.contains(&token),
        "the client's token never reaches the provider"
    );
    // A revocation committed through the admin API reaches the Envoy without touching it.
    revoke_jti(cp.admin, &fleet.admin_key, &jti);
    let took = until(&envoy, &token, Duration::from_secs(10), |r| {
        r.error_code().as_deref() == REVOKED
    });
    assert!(took < Duration::from_secs(5), "revocation took {took:?}");
    // The proxy credential opens no route: the filters never get it.
    assert_eq!(chat(&envoy, &credential).status, 401);
    // The fleet shows the pull-mode Envoy and the configuration it runs.
    let start = Instant::now();
    loop {
        let (_, fleet_view) =
            admin_call(cp.admin, &fleet.admin_key, "GET", "/admin/v1/proxies", None);
        if fleet_view["mesh-a"]["acked"]["sync"].is_string() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not in the fleet: {fleet_view}\n{}",
            envoy.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(envoy.stat("wasmcustom.tokenward.sync.configs_applied") >= 1);
}

#[test]
fn the_last_configuration_holds_while_the_control_plane_is_away_and_changes_resume_after() {
    let fleet = Fleet::create();
    fleet.tolerate_auth_failures();
    let credential = proxy_credential(&fleet.operator());
    let cp = fleet.replica_process("cp");
    let admin = cp.admin;
    let envoy = fleet.pull_envoy("mesh-a", admin, &credential, 2);
    let (valid, valid_jti) = mint(admin, &fleet.admin_key, "alice");
    let (revoked, revoked_jti) = mint(admin, &fleet.admin_key, "bob");
    until(&envoy, &valid, Duration::from_secs(15), |r| r.status == 200);
    revoke_jti(admin, &fleet.admin_key, &revoked_jti);
    until_every_worker(&envoy, &revoked, Duration::from_secs(10), |r| {
        r.error_code().as_deref() == REVOKED
    });
    cp.kill().unwrap();
    // Away: the last configuration is enforced, to the letter.
    let (mut wrong_accepts, mut wrong_refusals) = (0, 0);
    let away = Instant::now();
    while away.elapsed() < Duration::from_secs(5) {
        if chat(&envoy, &valid).status != 200 {
            wrong_refusals += 1;
        }
        if chat(&envoy, &revoked).status != 401 {
            wrong_accepts += 1;
        }
    }
    assert_eq!((wrong_accepts, wrong_refusals), (0, 0));
    assert!(
        envoy.stat("wasmcustom.tokenward.sync.call_errors") > 0,
        "the stat says it is cut off"
    );
    // Back (on the same address): a change reaches the Envoy within the retry interval.
    let _cp = fleet.replica_process_on("cp-again", admin);
    revoke_jti(admin, &fleet.admin_key, &valid_jti);
    let took = until(&envoy, &valid, Duration::from_secs(15), |r| {
        r.error_code().as_deref() == REVOKED
    });
    assert!(took < Duration::from_secs(5), "resumed after {took:?}");
}

#[test]
fn usage_from_two_envoys_of_four_workers_adds_up_exactly_across_a_control_plane_restart() {
    let fleet = Fleet::create();
    let operator = fleet.operator();
    let credential = proxy_credential(&operator);
    let cp = fleet.replica_process("cp");
    let admin = cp.admin;
    let envoys = Arc::new([
        fleet.pull_envoy("envoy-a", admin, &credential, 4),
        fleet.pull_envoy("envoy-b", admin, &credential, 4),
    ]);
    // Warm-up under another subject: the usage counted below is the load's alone.
    let (warmup, _) = mint(admin, &fleet.admin_key, "warmup");
    for envoy in envoys.iter() {
        until(envoy, &warmup, Duration::from_secs(15), |r| r.status == 200);
    }
    let (token, _) = mint(admin, &fleet.admin_key, "alice");
    fleet.openai.clear();
    let since = unix_now();
    // Eight clients, spread over both Envoys; the control plane is killed and restarted in
    // the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (envoys, token, stop) = (Arc::clone(&envoys), token.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut ok = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let reply = chat(&envoys[i % 2], &token);
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    cp.kill().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let _cp = fleet.replica_process_on("cp-again", admin);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let forwarded: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(forwarded > 100, "only {forwarded} requests");
    // What the provider reported, summed.
    let received = fleet.openai.received();
    assert_eq!(received.len() as u64, forwarded);
    let (input, output) = received
        .iter()
        .map(|r| r.reported_usage.unwrap())
        .fold((0, 0), |(i, o), (ri, ro)| (i + ri, o + ro));
    let reported = || {
        let rows = operator.usage(since).unwrap();
        let alice = rows.iter().filter(|r| r.entry.subject == "alice");
        alice.fold((0, 0, 0), |(n, i, o), r| {
            (
                n + r.entry.requests,
                i + r.entry.input_tokens,
                o + r.entry.output_tokens,
            )
        })
    };
    let expected = (forwarded, input, output);
    let start = Instant::now();
    while reported() != expected && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(reported(), expected, "0 lost");
    // Resent reports (the restart cut some answers off) are not counted again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(reported(), expected, "0 counted twice");
    let rows = operator.usage(since).unwrap();
    assert!(rows
        .iter()
        .filter(|r| r.entry.subject == "alice")
        .all(|r| r.entry.provider == "openai" && r.entry.model.as_deref() == Some("gpt-4o-mini")));
}

#[test]
fn an_envoy_fed_over_ads_reports_its_usage_on_the_channel_the_pushed_configuration_names() {
    let fleet = Fleet::create();
    let operator = fleet.operator();
    let (replica, envoy) = fleet.reporting_envoy("pushed-a");
    let (token, _) = mint(replica.admin, &fleet.admin_key, "dave");
    until(&envoy, &token, Duration::from_secs(15), |r| r.status == 200);
    for _ in 0..20 {
        assert_eq!(chat(&envoy, &token).status, 200);
    }
    let input: u64 = fleet
        .openai
        .received()
        .iter()
        .map(|r| r.reported_usage.unwrap().0)
        .sum();
    let reported = || {
        operator
            .usage(0)
            .unwrap()
            .iter()
            .filter(|r| r.entry.subject == "dave")
            .fold((0, 0), |(n, i), r| {
                (n + r.entry.requests, i + r.entry.input_tokens)
            })
    };
    let start = Instant::now();
    while reported() != (21, input) && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(reported(), (21, input));
}

#[test]
fn usage_an_envoy_had_not_reported_yet_goes_out_while_it_drains_before_it_stops() {
    let fleet = Fleet::create();
    let operator = fleet.operator();
    let credential = proxy_credential(&operator);
    let cp = fleet.replica_process("cp");
    let mut envoy = fleet.pull_envoy("leaving", cp.admin, &credential, 2);
    let (token, _) = mint(cp.admin, &fleet.admin_key, "erin");
    until_every_worker(&envoy, &token, Duration::from_secs(15), |r| r.status == 200);
    let warmup = fleet.openai.received().len() as u64;
    for _ in 0..10 {
        assert_eq!(chat(&envoy, &token).status, 200);
    }
    // As Kubernetes and Istio stop a proxy: drain the listeners, wait, then SIGTERM. The
    // channel keeps reporting while Envoy drains: one report interval is enough.
    let drain = Instant::now();
    tokenward_e2e::envoy::http_post(envoy.admin_port, "/drain_listeners?graceful").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    envoy.terminate().unwrap();
    let reported: u64 = operator
        .usage(0)
        .unwrap()
        .iter()
        .filter(|r| r.entry.subject == "erin")
        .map(|r| r.entry.requests)
        .sum();
    assert_eq!(reported, warmup + 10, "drained for {:?}", drain.elapsed());
}
