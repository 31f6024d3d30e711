use tokenward_filter::config::{LimitScope, Metric};
use tokenward_filter::sync::{CounterState, SyncReport};

use super::*;
use crate::store::SqliteStore;

// A minute boundary.
const T0: u64 = 1_800_000_000;
const KEY: &str = "tw:q:team:usd:cost_micro_usd:minute:t:acme";

fn plane() -> ControlPlane<SqliteStore> {
    super::super::fixtures::with_team_plan(
        T0,
        "usd",
        Metric::CostMicroUsd,
        LimitScope::Tenant,
        1000,
    )
}

/// A report of envoy `node` whose counter holds `used`.
fn report(plane: &ControlPlane<SqliteStore>, node: &str, seq: u64, used: u64, now: u64) {
    let report = SyncReport {
        counters: vec![CounterState {
            key: KEY.into(),
            window_start: now - now % 60,
            used,
            denied: 0,
            ceiling: 1000,
        }],
        ..SyncReport::new(node, "1", seq)
    };
    plane.record_usage(&report, now).unwrap();
    plane.fleet_answer(&report, now * 1000).unwrap();
}

fn rule(thresholds: Vec<u64>) -> AlertRule {
    AlertRule {
        plan: "team".into(),
        limit: "usd".into(),
        thresholds,
    }
}

#[test]
fn thresholds_name_a_limit_the_catalog_has_and_are_percents() {
    let plane = plane();
    assert!(matches!(
        plane.set_alert_rule(
            AlertRule {
                limit: "rpm".into(),
                ..rule(vec![80])
            },
            T0
        ),
        Err(PlaneError::NotFound(_))
    ));
    assert!(plane.set_alert_rule(rule(vec![]), T0).is_err());
    assert!(plane.set_alert_rule(rule(vec![0]), T0).is_err());
    plane.set_alert_rule(rule(vec![100, 80, 80]), T0).unwrap();
    assert_eq!(plane.alert_rules().unwrap(), vec![rule(vec![80, 100])]);
    assert!(plane.remove_alert_rule("team", "usd", T0).unwrap());
    assert!(!plane.remove_alert_rule("team", "usd", T0).unwrap());
}

#[test]
fn a_threshold_fires_once_per_counter_and_window_summed_over_the_fleet() {
    let plane = plane();
    plane.set_alert_rule(rule(vec![80, 100]), T0).unwrap();
    // Two Envoys: 500 + 290 = 790, under 80 %.
    report(&plane, "a", 1, 500, T0 + 1);
    report(&plane, "b", 1, 290, T0 + 1);
    assert!(plane.alert_events(10).unwrap().is_empty());
    // 500 + 310: 81 %, fired once however often it is seen again.
    report(&plane, "b", 2, 310, T0 + 2);
    report(&plane, "a", 2, 505, T0 + 3);
    report(&plane, "b", 3, 320, T0 + 4);
    let events = plane.alert_events(10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].threshold, events[0].window_start), (80, T0));
    let body: serde_json::Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(body["per"], "tenant");
    assert_eq!(body["who"], "acme");
    assert_eq!(body["used"], 810);
    assert_eq!(body["limit_value"], 1000);
    assert_eq!(body["window_end"], T0 + 60);
    // 100 % fires on its own; the next minute starts again.
    report(&plane, "a", 3, 700, T0 + 5);
    report(&plane, "a", 4, 900, T0 + 61);
    let events = plane.alert_events(10).unwrap();
    let fired: Vec<(u64, u64)> = events
        .iter()
        .map(|e| (e.window_start, e.threshold))
        .collect();
    assert_eq!(fired.len(), 3, "{fired:?}");
    assert!(fired.contains(&(T0, 100)) && fired.contains(&(T0 + 60, 80)));
    // Each one is in the audit log.
    let audit = plane.store().audit_log(50).unwrap();
    assert_eq!(
        audit.iter().filter(|a| a.action == "alert.fired").count(),
        3
    );
}

#[test]
fn a_failed_delivery_backs_off_and_is_given_up_after_the_last_attempt() {
    let plane = plane();
    plane.set_alert_rule(rule(vec![50]), T0).unwrap();
    report(&plane, "a", 1, 600, T0 + 1);
    let mut now = T0 + 1;
    let mut waits = Vec::new();
    for _ in 0..ALERT_ATTEMPTS {
        let due = plane.due_alerts(now).unwrap();
        assert_eq!(due.len(), 1);
        plane
            .alert_delivered(due[0].clone(), Err("the webhook answered 503".into()), now)
            .unwrap();
        let next = plane.alert_events(1).unwrap()[0].next_attempt_at;
        waits.push(next - now);
        assert!(plane.due_alerts(now).unwrap().is_empty());
        now = next;
    }
    assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 64, 128]);
    // Given up: never due again, its error kept.
    assert!(plane.due_alerts(now + 3600).unwrap().is_empty());
    assert_eq!(
        plane.alert_events(1).unwrap()[0].last_error,
        "the webhook answered 503"
    );
}

#[test]
fn the_webhook_secret_is_kept_sealed_and_signs_timestamp_and_body() {
    let plane = plane();
    assert!(plane.set_alert_webhook("ftp://x", T0).is_err());
    let secret = plane
        .set_alert_webhook("https://hooks.example.com/tw", T0)
        .unwrap();
    assert_eq!(secret.len(), 64);
    let stored = plane.store().setting("alert_webhook").unwrap().unwrap();
    assert!(!stored.contains(&secret), "the secret is sealed");
    let webhook = plane.alert_webhook().unwrap().unwrap();
    assert_eq!(
        (webhook.url.as_str(), webhook.secret.as_str()),
        ("https://hooks.example.com/tw", secret.as_str())
    );
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert_eq!(
        signature("Jefe", 0, "what do ya want for nothing?").len(),
        3 + 64
    );
    let mut mac = hmac_sha256::HMAC::new(b"Jefe");
    mac.update(b"what do ya want for nothing?");
    let expected: String = mac.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        expected,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let mut mac = hmac_sha256::HMAC::new(secret.as_bytes());
    mac.update(b"1800000000.{\"a\":1}");
    let hex: String = mac.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(signature(&secret, T0, "{\"a\":1}"), format!("v1={hex}"));
}
