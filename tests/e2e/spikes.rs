//! Spend spikes with real traffic: an Envoy fed over ADS reports a credential's usage over the
//! sync channel, the control plane's job sees the credential's rate jump past its plan's
//! multiple and suspends its subject, the revocation reaches the Envoy and the next request is
//! refused; lifted through the admin API, the credential works again.

use std::time::Duration;

use tokenward_control_plane::plane::ApiKeyRequest;
use tokenward_e2e::control_plane::unix_now;
use tokenward_e2e::fleet::{admin_call, chat, until, Fleet};
use tokenward_filter::config::{Metric, PlanConfig, SpikeAction, SpikeConfig};

#[test]
fn a_spike_suspends_the_subject_on_the_envoy_and_a_lift_lets_it_back() {
    // The current hour is judged once 5 minutes of it have passed (a handful of requests in
    // its first minute is no spike): started earlier, wait for that rather than fail.
    let into_hour = unix_now() % 3600;
    if into_hour < 310 {
        std::thread::sleep(Duration::from_secs(310 - into_hour));
    }
    let fleet = Fleet::create();
    let operator = fleet.operator();
    // More than 2 × 5 requests an hour is a spike for a credential with no past.
    let plan = PlanConfig {
        limits: vec![],
        shadow: false,
        clamp_max_tokens: false,
        default_output_tokens: 16,
        unreachable: Default::default(),
        rate_limit_headers: Default::default(),
        spike: Some(SpikeConfig {
            multiple: 2,
            metric: Metric::Requests,
            min_baseline: 5,
            action: SpikeAction::Suspend,
        }),
    };
    operator.put_plan("watched", plan, unix_now()).unwrap();
    let key = operator
        .create_api_key(
            &ApiKeyRequest {
                subject: "eve".into(),
                scopes: vec!["chat".into()],
                models: vec!["*".into()],
                plan: Some("watched".into()),
                ..ApiKeyRequest::default()
            },
            unix_now(),
        )
        .unwrap();
    let (replica, envoy) = fleet.reporting_envoy("spiking-a");
    until(&envoy, &key.key, Duration::from_secs(15), |r| {
        r.status == 200
    });
    for _ in 0..30 {
        assert_eq!(chat(&envoy, &key.key).status, 200);
    }
    // Reported within half a second, judged within 10 s, pushed at once.
    until(&envoy, &key.key, Duration::from_secs(40), |r| {
        r.status == 401 && r.error_code().as_deref() == Some("token_revoked")
    });
    let audit = operator.store().audit_log(100).unwrap();
    let suspended: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "guard.suspended")
        .collect();
    assert_eq!(suspended.len(), 1, "{audit:?}");
    assert_eq!(
        (suspended[0].actor.as_str(), suspended[0].target.as_str()),
        ("job@cp", "eve")
    );
    let alerts = operator.alert_events(10).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].key, format!("spike:{}", key.record.id));
    // The operator lifts it: the same API key works again, and the hour that fired does not
    // suspend it a second time.
    let (status, body) = admin_call(
        replica.admin,
        &fleet.admin_key,
        "DELETE",
        "/admin/v1/revocations/subjects/eve",
        None,
    );
    assert_eq!(status, 200, "{body}");
    until(&envoy, &key.key, Duration::from_secs(10), |r| {
        r.status == 200
    });
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(chat(&envoy, &key.key).status, 200);
    assert!(operator.store().revoked_subjects().unwrap().is_empty());
}
