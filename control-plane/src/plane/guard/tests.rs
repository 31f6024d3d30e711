use tokenward_filter::config::{FailedAuthConfig, GuardConfig};
use tokenward_filter::sync::{BlockEvent, SourceKind, SyncReport};

use super::*;
use crate::store::SqliteStore;

const T0: u64 = 1_800_000_000;

fn plane() -> ControlPlane<SqliteStore> {
    super::super::fixtures::initialised(T0)
}

fn report(seq: u64, blocks: Vec<BlockEvent>) -> SyncReport {
    SyncReport {
        blocks,
        ..SyncReport::new("envoy-a", "1", seq)
    }
}

fn block(kind: SourceKind, value: &str, at: u64) -> BlockEvent {
    BlockEvent {
        kind,
        value: value.into(),
        failures: 20,
        blocked_at: at,
        until: at + 300,
    }
}

#[test]
fn a_reported_block_becomes_one_alert_and_one_audit_entry() {
    let plane = plane();
    let blocks = vec![
        block(SourceKind::Address, "192.0.2.66", T0),
        block(SourceKind::Credential, "a1b2c3d4e5f6", T0),
    ];
    assert_eq!(
        plane
            .record_blocks(&report(1, blocks.clone()), T0 + 1)
            .unwrap(),
        2
    );
    // The same report again, or another Envoy naming the same block: nothing new.
    assert_eq!(
        plane
            .record_blocks(&report(1, blocks.clone()), T0 + 2)
            .unwrap(),
        0
    );
    // The same source blocked again later is a new alert.
    let later = vec![block(SourceKind::Address, "192.0.2.66", T0 + 600)];
    assert_eq!(plane.record_blocks(&report(2, later), T0 + 601).unwrap(), 1);

    let alerts = plane.alert_events(10).unwrap();
    assert_eq!(alerts.len(), 3);
    let first = alerts
        .iter()
        .find(|a| a.key == "guard:address:192.0.2.66" && a.window_start == T0)
        .expect("the address block is an alert");
    let body: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(body["type"], "tokenward.auth_block");
    assert_eq!(body["kind"], "address");
    assert_eq!(body["value"], "192.0.2.66");
    assert_eq!(body["node"], "envoy-a");
    assert_eq!(
        (body["blocked_at"].as_u64(), body["until"].as_u64()),
        (Some(T0), Some(T0 + 300))
    );
    assert_eq!(first.next_attempt_at, T0 + 1, "due for the webhook at once");

    let audited: Vec<_> = plane
        .store()
        .audit_log(100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "guard.blocked")
        .map(|e| e.target)
        .collect();
    assert_eq!(audited.len(), 3);
    assert!(audited.contains(&"credential a1b2c3d4e5f6".to_string()));
}

#[test]
fn guard_settings_are_checked_rendered_and_audited() {
    let plane = plane();
    assert_eq!(
        plane.render(T0).unwrap().guard,
        None,
        "the filter's defaults"
    );
    assert_eq!(plane.guard_settings().unwrap(), FailedAuthConfig::default());
    let bad = FailedAuthConfig {
        window_seconds: 0,
        ..FailedAuthConfig::default()
    };
    assert!(plane.set_guard(bad, T0).is_err());
    let bad = FailedAuthConfig {
        exempt: vec!["10.0.0.0/99".into()],
        ..FailedAuthConfig::default()
    };
    assert!(plane.set_guard(bad, T0).is_err());
    let set = FailedAuthConfig {
        threshold: 50,
        window_seconds: 120,
        block_seconds: 900,
        exempt: vec!["10.0.0.0/8".into()],
        ..FailedAuthConfig::default()
    };
    plane.set_guard(set.clone(), T0).unwrap();
    assert_eq!(
        plane.render(T0).unwrap().guard,
        Some(GuardConfig {
            failed_auth: set.clone()
        })
    );
    assert_eq!(plane.guard_settings().unwrap(), set);
    assert!(plane
        .store()
        .audit_log(10)
        .unwrap()
        .iter()
        .any(|e| e.action == "guard.set"));
}
