//! Fleet-wide quotas in real Envoys: three pull-mode Envoys of two workers each share one
//! requests-per-minute limit through the control plane's allowances — load spread 70/20/10
//! is admitted up to the limit and no further — and a fail-closed plan refuses with 503
//! while the control plane is gone and serves again once it is back. The figures over five
//! windows, the token limit and the fallback policy with the control plane killed come from
//! `make bench` (fleet_bench).

use std::time::Duration;

use tokenward_e2e::control_plane::unix_now;
use tokenward_e2e::fleet::{
    admin_call, chat, chat_body, drive, mint, proxy_credential, until, Fleet,
};
use tokenward_filter::config::{LimitConfig, LimitScope, Metric, Unreachable};
use tokenward_filter::window::Window;

fn team_plan(fleet: &Fleet, per_minute: u64, unreachable: Unreachable) {
    let operator = fleet.operator();
    let mut plan = tokenward_filter::testing::plan(
        vec![LimitConfig {
            name: "rpm".into(),
            metric: Metric::Requests,
            window: Window::Minute,
            limit: per_minute,
            per: LimitScope::Subject,
        }],
        16,
    );
    plan.unreachable = unreachable;
    operator.put_plan("team", plan, unix_now()).unwrap();
    operator.set_default_plan(Some("team"), unix_now()).unwrap();
}

#[test]
fn three_envoys_sharing_a_limit_admit_up_to_it_and_no_further() {
    let fleet = Fleet::create();
    team_plan(&fleet, 240, Unreachable::Fallback);
    let credential = proxy_credential(&fleet.operator());
    let cp = fleet.replica("cp");
    let envoys = [
        fleet.pull_envoy("envoy-a", cp.admin, &credential, 2),
        fleet.pull_envoy("envoy-b", cp.admin, &credential, 2),
        fleet.pull_envoy("envoy-c", cp.admin, &credential, 2),
    ];
    let (token, _) = mint(cp.admin, &fleet.admin_key, "alice");
    for envoy in &envoys {
        until(envoy, &token, Duration::from_secs(15), |r| r.status == 200);
    }
    let urls: Vec<String> = envoys
        .iter()
        .map(|e| e.url("/v1/chat/completions"))
        .collect();
    // 360 asked a minute for a limit of 240, spread 70/20/10.
    let (minutes, _) = drive(&urls, &token, &[252, 72, 36], &chat_body(20, 16), 1);
    let minute = minutes[0];
    assert_eq!(minute.other, 0, "{minute:?}");
    // Never past the limit (each Envoy's first share is rounded up: at most 2 over), and at
    // least 95 % of it while demand exceeds it.
    assert!(minute.admitted <= 242, "{minute:?}");
    assert!(minute.admitted >= 228, "{minute:?}");
}

#[test]
fn a_fail_closed_plan_refuses_while_the_control_plane_is_gone_and_serves_once_it_is_back() {
    let fleet = Fleet::create();
    team_plan(&fleet, 1000, Unreachable::FailClosed);
    let credential = proxy_credential(&fleet.operator());
    let cp = fleet.replica_process("cp");
    let admin = cp.admin;
    let envoy = fleet.pull_envoy("envoy-a", admin, &credential, 2);
    let (token, _) = mint(admin, &fleet.admin_key, "alice");
    until(&envoy, &token, Duration::from_secs(15), |r| r.status == 200);
    // The quota as the operator sees it, once the Envoy has reported the counter (within a
    // report interval).
    let quota = || {
        let (status, quota) = admin_call(
            admin,
            &fleet.admin_key,
            "GET",
            "/admin/v1/quota?subject=alice",
            None,
        );
        assert_eq!(status, 200, "{quota}");
        quota
    };
    let start = std::time::Instant::now();
    while quota()[0]["plan"] != "team" && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let quota = quota();
    assert_eq!(quota[0]["plan"], "team");
    assert!(quota[0]["used"].as_u64() >= Some(1), "{quota}");
    assert_eq!(quota[0]["limit_value"], 1000);
    cp.kill().unwrap();
    // Three report intervals without an answer: the plan's requests are refused, 503.
    let took = until(&envoy, &token, Duration::from_secs(15), |r| r.status == 503);
    let refused = chat(&envoy, &token);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.error_code().as_deref(), Some("quota_unavailable"));
    assert!(took >= Duration::from_secs(2), "refused after {took:?}");
    let _back = fleet.replica_process_on("cp-again", admin);
    until(&envoy, &token, Duration::from_secs(15), |r| r.status == 200);
}
