//! Alerts (budget thresholds, spend spikes) delivered over real HTTP to a webhook on loopback.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokenward_filter::config::{LimitScope, Metric};
use tokenward_filter::sync::{CounterState, SyncReport};

use super::*;
use crate::plane::alerts::AlertRule;
use crate::testing::Recorder;

const T0: u64 = 1_800_000_000;

fn state(clock: Arc<AtomicU64>) -> Arc<ServerState> {
    let plane = crate::plane::fixtures::with_team_plan(
        T0,
        "rpm",
        Metric::Requests,
        LimitScope::Subject,
        10,
    );
    plane
        .set_alert_rule(
            AlertRule {
                plan: "team".into(),
                limit: "rpm".into(),
                thresholds: vec![80],
            },
            T0,
        )
        .unwrap();
    Arc::new(ServerState::new(
        plane,
        Box::new(move || clock.load(Ordering::SeqCst)),
    ))
}

#[tokio::test]
async fn an_alert_is_posted_signed_and_retried_until_the_webhook_takes_it() {
    let clock = Arc::new(AtomicU64::new(T0 + 1));
    let state = state(Arc::clone(&clock));
    // The webhook fails once, then takes it.
    let hook = Recorder::start("/hooks/tokenward", vec![503]).await;
    let secret = state.plane.set_alert_webhook(&hook.url, T0).unwrap();
    let report = SyncReport {
        counters: vec![CounterState {
            key: "tw:q:team:rpm:requests:minute:s:alice".into(),
            window_start: T0,
            used: 9,
            denied: 0,
            ceiling: 10,
        }],
        ..SyncReport::new("envoy-a", "1", 1)
    };
    let plane = state.plane.clone();
    tokio::task::spawn_blocking(move || plane.fleet_answer(&report, (T0 + 1) * 1000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        deliver_alerts_once(&state).await,
        0,
        "the webhook answered 503"
    );
    // Not before its backoff (1 s) is over.
    assert_eq!(deliver_alerts_once(&state).await, 0);
    assert_eq!(hook.received().len(), 1);
    clock.store(T0 + 2, Ordering::SeqCst);
    assert_eq!(deliver_alerts_once(&state).await, 1);
    clock.store(T0 + 30, Ordering::SeqCst);
    assert_eq!(deliver_alerts_once(&state).await, 0, "delivered once");
    let received = hook.received();
    assert_eq!(received.len(), 2);
    let (headers, body) = &received[1];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "application/json");
    let timestamp: u64 = header("x-tokenward-timestamp").parse().unwrap();
    assert_eq!(timestamp, T0 + 2);
    assert_eq!(
        header("x-tokenward-signature"),
        crate::plane::alerts::signature(&secret, timestamp, body)
    );
    let alert: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(alert["type"], "tokenward.budget_alert");
    assert_eq!(
        (alert["plan"].as_str(), alert["limit"].as_str()),
        (Some("team"), Some("rpm"))
    );
    assert_eq!(
        (alert["who"].as_str(), alert["threshold_percent"].as_u64()),
        (Some("alice"), Some(80))
    );
    let events = state.plane.alert_events(5).unwrap();
    assert_eq!(events[0].delivered_at, Some(T0 + 2));
    assert_eq!(events[0].attempts, 2);
}

#[tokio::test]
async fn a_spend_spike_goes_to_the_same_webhook_signed_under_its_id() {
    use tokenward_filter::config::{SpikeAction, SpikeConfig};
    use tokenward_filter::sync::UsageEntry;
    let clock = Arc::new(AtomicU64::new(T0 + 600));
    let state = state(Arc::clone(&clock));
    let hook = Recorder::start("/hooks/tokenward", vec![]).await;
    let secret = state.plane.set_alert_webhook(&hook.url, T0).unwrap();
    let plane = state.plane.clone();
    let mut plan = plane.store().plans().unwrap().remove(0).1;
    plan.spike = Some(SpikeConfig {
        multiple: 10,
        metric: Metric::Requests,
        min_baseline: 5,
        action: SpikeAction::Alert,
    });
    // 100 requests in the first ten minutes of the hour: 600 an hour, past 10 × 5.
    let report = SyncReport {
        entries: vec![UsageEntry {
            subject: "alice".into(),
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
    let work = Arc::clone(&state);
    let fired = tokio::task::spawn_blocking(move || {
        plane.put_plan("team", plan, T0).unwrap();
        plane.record_usage(&report, T0 + 590).unwrap();
        check_spikes_once(&work, &mut BaselineCache::default())
    })
    .await
    .unwrap();
    assert_eq!(fired, 1);
    assert_eq!(deliver_alerts_once(&state).await, 1);
    let received = hook.received();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let timestamp: u64 = header("x-tokenward-timestamp").parse().unwrap();
    assert_eq!(
        header("x-tokenward-signature"),
        crate::plane::alerts::signature(&secret, timestamp, body)
    );
    let alert: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(alert["type"], "tokenward.spend_spike");
    assert_eq!(
        (alert["credential"].as_str(), alert["rate"].as_u64()),
        (Some("k1"), Some(600))
    );
    assert_eq!(
        alert["id"].as_str(),
        Some(header("x-tokenward-alert-id").as_str())
    );
}
