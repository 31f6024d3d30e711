use tokenward_filter::config::{LimitScope, Metric, SpikeAction, SpikeConfig};
use tokenward_filter::error::ErrorCode;
use tokenward_filter::sync::{SyncReport, UsageEntry};

use super::*;
use crate::store::SqliteStore;

// An hour boundary.
const T0: u64 = 1_800_000_000;
const HOUR: u64 = 3600;

/// Plan `team` watched for spikes of total tokens, and an API key of alice under it.
fn watched(action: SpikeAction, min_baseline: u64) -> (ControlPlane<SqliteStore>, CreatedApiKey) {
    let plane = super::super::fixtures::with_team_plan(
        T0,
        "rpm",
        Metric::Requests,
        LimitScope::Subject,
        1_000_000,
    );
    let mut plan = plane.store().plans().unwrap().remove(0).1;
    plan.spike = Some(SpikeConfig {
        multiple: 10,
        metric: Metric::TotalTokens,
        min_baseline,
        action,
    });
    plane.put_plan("team", plan, T0).unwrap();
    let key = plane
        .create_api_key(
            &ApiKeyRequest {
                subject: "alice".into(),
                scopes: vec!["chat".into()],
                plan: Some("team".into()),
                ..ApiKeyRequest::default()
            },
            T0,
        )
        .unwrap();
    (plane, key)
}

/// An Envoy reports `tokens` used through `credential` at `at`.
struct Reporter {
    seq: u64,
}

impl Reporter {
    fn report(
        &mut self,
        plane: &ControlPlane<SqliteStore>,
        credential: &str,
        tokens: u64,
        at: u64,
    ) {
        self.seq += 1;
        let report = SyncReport {
            entries: vec![UsageEntry {
                subject: "alice".into(),
                tenant: None,
                plan: Some("team".into()),
                credential: Some(credential.into()),
                provider: "openai".into(),
                model: Some("gpt-4o".into()),
                requests: 1,
                input_tokens: tokens - tokens / 10,
                output_tokens: tokens / 10,
                cached_input_tokens: 0,
                cost_micro_usd: 0,
            }],
            ..SyncReport::new("envoy-a", "1", self.seq)
        };
        assert!(plane.record_usage(&report, at).unwrap());
    }

    /// 1000 tokens in the middle of each of the `hours` hours from T0.
    fn steady(&mut self, plane: &ControlPlane<SqliteStore>, credential: &str, hours: u64) {
        for h in 0..hours {
            self.report(plane, credential, 1000, T0 + h * HOUR + 1800);
        }
    }
}

/// What the filter says of `credential` with the configuration rendered at `now`.
fn filter_verdict(
    plane: &ControlPlane<SqliteStore>,
    credential: &str,
    now: u64,
) -> Result<String, ErrorCode> {
    let json = serde_json::to_vec(&plane.render(now).unwrap()).unwrap();
    let policy = Policy::from_json(&json, &|name| Some(format!("{name}-value"))).unwrap();
    policy
        .authenticate(credential, now)
        .map(|identity| identity.subject().to_string())
        .map_err(|refusal| refusal.code)
}

fn audited(plane: &ControlPlane<SqliteStore>, action: &str) -> Vec<(String, String)> {
    plane
        .store()
        .audit_log(100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| (e.target, e.detail))
        .collect()
}

#[test]
fn steady_usage_raises_nothing_and_a_tenfold_jump_fires_once() {
    let (plane, key) = watched(SpikeAction::Alert, 100);
    let mut envoy = Reporter { seq: 0 };
    // 30 hours at 1000 tokens an hour: the baseline is 1000.
    envoy.steady(&plane, &key.id, 30);
    let hour = T0 + 30 * HOUR;
    envoy.report(&plane, &key.id, 300, hour + 360);
    assert!(plane.check_spikes(hour + 600).unwrap().is_empty(), "steady");
    // 20000 more by minute 12: 20300 tokens in 720 s is 101500 an hour, past 10 × 1000.
    envoy.report(&plane, &key.id, 20_000, hour + 700);
    let fired = plane.check_spikes(hour + 720).unwrap();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (
            fired[0].rate,
            fired[0].baseline,
            fired[0].hour,
            fired[0].suspended
        ),
        (101_500, 1000, hour, false)
    );
    // Once per credential and hour, however often the job looks.
    assert!(plane.check_spikes(hour + 730).unwrap().is_empty());
    assert!(plane.check_spikes(hour + 1800).unwrap().is_empty());
    let events = plane.alert_events(10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key, format!("spike:{}", key.id));
    assert_eq!(events[0].window_start, hour);
    let body: serde_json::Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(body["type"], "tokenward.spend_spike");
    // The id a receiver deduplicates on is the delivery's x-tokenward-alert-id.
    assert_eq!(body["id"], format!("spike:{}@{hour}/10", key.id));
    assert_eq!(body["subject"], "alice");
    assert_eq!(body["credential"], key.id.as_str());
    assert_eq!(body["metric"], "total_tokens");
    assert_eq!(body["rate"], 101_500);
    assert_eq!(body["baseline"], 1000);
    assert_eq!(body["multiple"], 10);
    assert_eq!(body["action"], "alert");
    assert_eq!(body["suspended"], false);
    // `tokenward alert list` says what crossed, in the spike's terms.
    let listed = crate::view::alerts(&[], None, &events).text;
    assert!(
        listed.contains(&format!(
            "spike:{} at 10× the baseline in the hour from",
            key.id
        )),
        "{listed}"
    );
    let audit = audited(&plane, "alert.spike");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, format!("credential {} of alice", key.id));
    assert!(audit[0].1.contains("101500 total_tokens/h"), "{audit:?}");
    // An alert only: alice still gets through.
    assert_eq!(
        filter_verdict(&plane, &key.key, hour + 730),
        Ok("alice".into())
    );
    // The next hour still reads the spiking one as the previous hour: the same key and hour,
    // nothing new.
    assert!(plane.check_spikes(hour + HOUR + 10).unwrap().is_empty());
}

#[test]
fn the_first_minutes_of_an_hour_are_not_judged_on_their_own() {
    let (plane, key) = watched(SpikeAction::Alert, 100);
    let mut envoy = Reporter { seq: 0 };
    envoy.steady(&plane, &key.id, 30);
    let hour = T0 + 30 * HOUR;
    // 5000 tokens in the first two minutes would be 150000 an hour.
    envoy.report(&plane, &key.id, 5000, hour + 100);
    assert!(plane.check_spikes(hour + 120).unwrap().is_empty());
    // Five minutes in, the same 5000 is 60000 an hour: a spike.
    assert_eq!(plane.check_spikes(hour + 300).unwrap().len(), 1);
}

#[test]
fn a_new_credential_is_judged_against_the_plans_least_baseline() {
    let (plane, key) = watched(SpikeAction::Alert, 1000);
    let mut envoy = Reporter { seq: 0 };
    // No past at all: 9000 an hour is under 10 × 1000.
    envoy.report(&plane, &key.id, 1500, T0 + 500);
    assert!(plane.check_spikes(T0 + 600).unwrap().is_empty());
    // 11000 an hour is past it.
    envoy.report(&plane, &key.id, 700, T0 + 590);
    let fired = plane.check_spikes(T0 + 720).unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0].rate, fired[0].baseline), (11_000, 1000));
}

#[test]
fn a_quiet_credential_stays_under_the_least_baseline() {
    let (plane, key) = watched(SpikeAction::Suspend, 1000);
    let mut envoy = Reporter { seq: 0 };
    // 10 tokens an hour for a day: its own baseline is 10, the plan's least 1000.
    for h in 0..24 {
        envoy.report(&plane, &key.id, 10, T0 + h * HOUR + 1800);
    }
    // 100 times its own rate is still far under 10 × 1000.
    let hour = T0 + 24 * HOUR;
    envoy.report(&plane, &key.id, 1000, hour + 1000);
    assert!(plane.check_spikes(hour + 1200).unwrap().is_empty());
    assert!(plane.alert_events(10).unwrap().is_empty());
    assert!(plane.store().revoked_subjects().unwrap().is_empty());
}

#[test]
fn a_suspending_plan_revokes_the_subject_everywhere_until_an_operator_lifts_it() {
    let (plane, key) = watched(SpikeAction::Suspend, 100);
    let mut envoy = Reporter { seq: 0 };
    envoy.steady(&plane, &key.id, 30);
    let hour = T0 + 30 * HOUR;
    envoy.report(&plane, &key.id, 50_000, hour + 600);
    let fired = plane.check_spikes(hour + 600).unwrap();
    assert_eq!(fired.len(), 1);
    assert!(fired[0].suspended);
    // Pushed with the configuration: every Envoy refuses alice's key.
    let config = plane.render(hour + 601).unwrap();
    assert_eq!(config.revocations.subjects, ["alice"]);
    assert_eq!(
        filter_verdict(&plane, &key.key, hour + 601),
        Err(ErrorCode::TokenRevoked)
    );
    let suspended = audited(&plane, "guard.suspended");
    assert_eq!(suspended.len(), 1);
    assert_eq!(suspended[0].0, "alice");
    assert!(
        suspended[0].1.contains(&key.id) && suspended[0].1.contains("unrevoke --subject alice"),
        "{suspended:?}"
    );
    let body: serde_json::Value =
        serde_json::from_str(&plane.alert_events(1).unwrap()[0].body).unwrap();
    assert_eq!(
        (body["action"].as_str(), body["suspended"].as_bool()),
        (Some("suspend"), Some(true))
    );
    // The operator lifts it: the same key works again, and the spike already fired for this
    // hour does not suspend it a second time.
    plane.unrevoke_subject("alice", hour + 900).unwrap();
    assert_eq!(
        filter_verdict(&plane, &key.key, hour + 901),
        Ok("alice".into())
    );
    assert!(plane.check_spikes(hour + 910).unwrap().is_empty());
    assert!(plane.store().revoked_subjects().unwrap().is_empty());
    // The lift did not make the key revoked on its own either.
    assert!(plane.api_keys(Some("alice"), None).unwrap()[0]
        .revoked_at
        .is_none());
}

#[test]
fn the_holder_of_the_last_admin_key_is_alerted_on_but_never_suspended() {
    let (plane, _) = watched(SpikeAction::Suspend, 100);
    // `init` made subject admin's key, the only one with admin:write; it is used through the
    // gateway too (under plan team, say).
    let admin = plane.api_keys(Some("admin"), None).unwrap().remove(0);
    let report = SyncReport {
        entries: vec![UsageEntry {
            subject: "admin".into(),
            tenant: None,
            plan: Some("team".into()),
            credential: Some(admin.id.clone()),
            provider: "openai".into(),
            model: None,
            requests: 1,
            input_tokens: 100_000,
            output_tokens: 0,
            cached_input_tokens: 0,
            cost_micro_usd: 0,
        }],
        ..SyncReport::new("envoy-a", "1", 1)
    };
    plane.record_usage(&report, T0 + 600).unwrap();
    let fired = plane.check_spikes(T0 + 600).unwrap();
    assert_eq!(fired.len(), 1);
    assert!(!fired[0].suspended);
    assert!(plane.store().revoked_subjects().unwrap().is_empty());
    let refused = audited(&plane, "guard.not_suspended");
    assert!(
        refused.len() == 1 && refused[0].1.contains("last admin API key"),
        "{refused:?}"
    );
}

#[test]
fn a_spike_setting_that_would_fire_on_noise_is_refused() {
    let (plane, _) = watched(SpikeAction::Alert, 100);
    let mut plan = plane.store().plans().unwrap().remove(0).1;
    for (multiple, min_baseline) in [(1, 100), (10, 0)] {
        plan.spike = Some(SpikeConfig {
            multiple,
            metric: Metric::Requests,
            min_baseline,
            action: SpikeAction::Alert,
        });
        assert!(matches!(
            plane.put_plan("team", plan.clone(), T0),
            Err(PlaneError::Invalid(_))
        ));
    }
}

#[test]
fn the_baseline_is_the_mean_since_first_seen_within_a_week_and_never_under_the_least() {
    let hour = |h: u64, tokens: u64| CredentialHour {
        hour: T0 + h * HOUR,
        input_tokens: tokens,
        ..CredentialHour::default()
    };
    let until = T0 + 10 * HOUR;
    // Seen from hour 6: 4 hours, one of them idle.
    let seen = [hour(6, 400), hour(7, 400), hour(9, 400)];
    assert_eq!(baseline(&seen, Metric::TotalTokens, until, 1), 300);
    assert_eq!(baseline(&seen, Metric::TotalTokens, until, 500), 500);
    assert_eq!(baseline(&[], Metric::TotalTokens, until, 7), 7);
    // Older than a week counts as a week.
    let long_ago = [CredentialHour {
        hour: until - 400 * HOUR,
        requests: 168 * 5,
        ..CredentialHour::default()
    }];
    assert_eq!(baseline(&long_ago, Metric::Requests, until, 1), 5);
}

#[test]
fn a_kept_baseline_is_read_again_when_the_hour_turns() {
    let (plane, key) = watched(SpikeAction::Alert, 100);
    let mut envoy = Reporter { seq: 0 };
    let mut cache = BaselineCache::default();
    envoy.report(&plane, &key.id, 1000, T0 + 1800);
    envoy.report(&plane, &key.id, 1000, T0 + HOUR + 1800);
    // Hour 2: 9000 an hour against a baseline of 1000 (hour 0 alone): no spike, but past
    // 10 × 100, so the baseline is read and kept.
    envoy.report(&plane, &key.id, 1500, T0 + 2 * HOUR + 500);
    assert!(plane
        .check_spikes_with(T0 + 2 * HOUR + 600, &mut cache)
        .unwrap()
        .is_empty());
    // Hour 3: hour 1 has joined the baseline (still 1000, over two hours). Kept from the hour
    // before it would be 500, and 7200 an hour would pass for a spike.
    envoy.report(&plane, &key.id, 1200, T0 + 3 * HOUR + 500);
    assert!(plane
        .check_spikes_with(T0 + 3 * HOUR + 600, &mut cache)
        .unwrap()
        .is_empty());
    // And a real one is still seen through the kept baseline.
    envoy.report(&plane, &key.id, 1000, T0 + 3 * HOUR + 601);
    let fired = plane
        .check_spikes_with(T0 + 3 * HOUR + 610, &mut cache)
        .unwrap();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].baseline, 1000);
}
