//! The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core
//! (tests/browser/dashboard.mjs) against `tokenward serve`, an Envoy fed over ADS that reports
//! its usage on the sync channel, and the mock provider. An operator signs in, creates a key,
//! sees its usage after traffic through Envoy, revokes it from the page, and the next request
//! is refused with 401; a burst of forged tokens is blocked and shows on the Alerts page.
//! Screenshots of every page land in target/screenshots/.

use std::path::PathBuf;
use std::process::Command;

use tokenward_e2e::control_plane::unix_now;
use tokenward_e2e::fleet::Fleet;
use tokenward_filter::config::{LimitConfig, LimitScope, Metric, PriceConfig};
use tokenward_filter::window::Window;

/// Chromium and playwright-core, or a failure that says how to get them.
fn browser() -> (PathBuf, PathBuf) {
    let chromium = std::env::var_os("TW_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "Chromium is missing ({}): run `make deps` (it installs Debian's chromium), or set TW_CHROMIUM",
        chromium.display()
    );
    let dir = tokenward_e2e::repo_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is missing: run `make deps` (npm ci in tests/browser)"
    );
    (chromium, dir)
}

#[test]
fn an_operator_creates_a_key_sees_its_usage_and_revokes_it_from_the_dashboard() {
    let (chromium, dir) = browser();
    let node = crate::sdks::node_runtime();
    let fleet = Fleet::create();
    let operator = fleet.operator();
    // A plan with limits (its budget bars) and prices (the cost column), as an operator has.
    let limit = |name: &str, metric, window, limit| LimitConfig {
        name: name.into(),
        metric,
        window,
        limit,
        per: LimitScope::Subject,
    };
    operator
        .put_plan(
            "team",
            tokenward_filter::testing::plan(
                vec![
                    limit("requests-per-minute", Metric::Requests, Window::Minute, 60),
                    limit("tokens-per-day", Metric::TotalTokens, Window::Day, 2_000),
                ],
                16,
            ),
            unix_now(),
        )
        .unwrap();
    operator
        .put_price(
            PriceConfig {
                model: "gpt-4o*".into(),
                input: 2_500_000,
                output: 10_000_000,
                cached_input: None,
            },
            unix_now(),
        )
        .unwrap();
    earlier_usage(&operator);
    let (replica, envoy) = fleet.reporting_envoy("dashboard-envoy");
    let shots = tokenward_e2e::repo_root().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let output = Command::new(&node)
        .arg(dir.join("dashboard.mjs"))
        .current_dir(&dir)
        .env("TW_UI", format!("http://{}", replica.admin))
        .env("TW_GATEWAY", envoy.url("").trim_end_matches('/'))
        .env("TW_ADMIN_KEY", &fleet.admin_key)
        .env("TW_SCREENSHOTS", &shots)
        .env("TW_CHROMIUM", &chromium)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{stderr}"
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("dashboard run: {seen}");

    assert!(!seen["signed_in"].as_str().unwrap().is_empty(), "{seen}");
    assert_eq!(
        seen["key_prefix"], "tw_",
        "the new key is shown once: {seen}"
    );
    assert_eq!(seen["first_status"], 200, "{seen}");
    assert_eq!(seen["statuses"], serde_json::json!([200, 200]), "{seen}");
    assert_eq!(
        seen["usage_requests"], 3,
        "the page shows the reported usage: {seen}"
    );
    assert_eq!(seen["usage_model"], "gpt-4o-mini", "{seen}");
    assert_eq!(seen["listed"], "active", "{seen}");
    let fleet_row = seen["fleet"].as_str().unwrap();
    assert!(
        fleet_row.starts_with("dashboard-envoy ADS cp") && fleet_row.ends_with("in sync"),
        "the Envoy, what it runs, in sync: {fleet_row}"
    );
    assert_eq!(seen["refused_status"], 401, "revoked from the page: {seen}");
    assert_eq!(seen["status_after"], "revoked", "{seen}");
    assert_eq!(seen["burst_status"], 429, "forged tokens blocked: {seen}");
    let alert = seen["alert"].as_str().unwrap();
    assert!(
        alert.contains("address 127.0.0.1 blocked after 20 failed authentications")
            && alert.contains("node dashboard-envoy"),
        "the block on the Alerts page: {alert}"
    );
    // The 1 s figure is the bench's; this bounds a hang.
    assert!(
        seen["revoke_to_401_ms"].as_u64().unwrap() < 10_000,
        "{seen}"
    );

    // The provider got the provider's credential, never the key the page made.
    let received = fleet.openai.received();
    assert!(received.len() >= 3, "{}", received.len());
    let key_id = seen["key_id"].as_str().unwrap();
    let key = operator.api_keys(Some("browser-team"), None).unwrap();
    assert_eq!(key[0].id, key_id);
    for request in &received {
        let auth = request.header("authorization").unwrap_or_default();
        assert!(
            auth.starts_with("Bearer ") && !auth.contains("tw_"),
            "{auth}"
        );
    }
    for page in [
        "login",
        "keys",
        "key-created",
        "usage",
        "fleet",
        "signing-keys",
        "audit",
        "alerts",
    ] {
        let file = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
            "{page}"
        );
    }
}

/// A day of other teams' traffic, as an Envoy of the fleet reported it: the usage page's
/// chart then shows a day, not one bar.
fn earlier_usage(operator: &tokenward_control_plane::state::Plane) {
    let now = unix_now();
    let mut entries = Vec::new();
    for hour in 1..24u64 {
        for (subject, model, scale) in [
            ("search-team", "gpt-4o-mini", 3),
            ("support-bot", "gpt-4o", 2),
        ] {
            let requests = scale * (5 + (hour * 7) % 11);
            entries.push(serde_json::json!({
                "subject": subject, "tenant": "acme", "credential": format!("key-{subject}"),
                "provider": "openai", "model": model, "requests": requests,
                "input_tokens": requests * 40, "output_tokens": requests * 12,
                "cached_input_tokens": 0, "cost_micro_usd": requests * 220,
            }));
        }
        let report = serde_json::json!({
            "node": "envoy-earlier", "boot": "b", "seq": hour, "entries": entries.split_off(0),
        });
        operator
            .record_usage(
                &serde_json::from_value(report).unwrap(),
                now - (24 - hour) * 3600,
            )
            .unwrap();
    }
}
