use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::config::{Metric, PlanConfig};
use crate::error::ErrorCode;
use crate::identity::{Grants, Identity};
use crate::quota::counter::fake::FakeStore;
use crate::quota::{admit, Demand, Plan, Quotas};
use crate::testing::limit;

// 2024-02-29T13:45:30Z: the minute began at ...:00.
const NOW: u64 = 1_709_214_330;
const MINUTE: u64 = NOW - NOW % 60;
const KEY: &str = "tw:q:team:rpm:requests:minute:s:alice";

fn team(unreachable: Unreachable, per_minute: u64) -> Arc<Plan> {
    let mut plan: PlanConfig = crate::testing::plan(
        vec![limit("rpm", Metric::Requests, Window::Minute, per_minute)],
        0,
    );
    plan.unreachable = unreachable;
    let plans = BTreeMap::from([("team".to_string(), plan)]);
    let quotas = Quotas::compile_strict(&plans, None, &[]).unwrap();
    let identity = alice();
    Arc::clone(quotas.plan_for(&identity).unwrap().unwrap())
}

fn alice() -> Identity {
    Identity::api_key(
        "k".into(),
        "alice",
        Arc::new(Grants {
            plan: Some("team".into()),
            ..Grants::default()
        }),
        None,
    )
}

fn answer(fleet_size: u64, grants: Vec<(&str, u64, u64, u32)>) -> FleetAnswer {
    FleetAnswer {
        fleet_size,
        grants: grants
            .into_iter()
            .map(|(key, window_start, ceiling, share_ppm)| FleetGrant {
                key: key.into(),
                window_start,
                ceiling,
                share_ppm,
            })
            .collect(),
    }
}

/// Admits `n` requests of alice; how many got through.
fn admitted(plan: &Arc<Plan>, store: &FakeStore, fleet: &RefCell<Allowances>, n: u64) -> u64 {
    (0..n)
        .filter(|_| admit(plan, &alice(), &Demand::default(), store, Some(fleet), NOW).is_ok())
        .count() as u64
}

#[test]
fn the_key_names_plan_limit_and_window() {
    let parts = key_parts("tw:q:team:rpm:requests:minute:t:acme:eu").unwrap();
    assert_eq!(
        (parts.plan, parts.limit, parts.metric, parts.window, parts.scope, parts.id),
        ("team", "rpm", "requests", Window::Minute, "t", "acme:eu")
    );
    assert!(key_parts("tw:q:team:rpm:requests:fortnight:s:x").is_none());
    assert!(key_parts("other").is_none());
}

#[test]
fn without_a_grant_an_envoy_counts_to_its_even_share_and_the_control_plane_hears_of_it() {
    let store = FakeStore::default();
    let plan = team(Unreachable::Fallback, 10);
    let fleet = RefCell::new(Allowances::new(3_000));
    publish(&store, answer(3, vec![]), NOW * 1000).unwrap();
    fleet.borrow_mut().sync(&store);
    // 10 / 3, rounded up.
    assert_eq!(admitted(&plan, &store, &fleet, 10), 4);
    let counters = fleet.borrow_mut().counters(&store, NOW).unwrap();
    assert_eq!(
        counters,
        vec![CounterState {
            key: KEY.into(),
            window_start: MINUTE,
            used: 4,
            denied: 6,
            ceiling: 4,
        }]
    );
}

#[test]
fn a_grant_is_the_ceiling_of_its_window_and_its_share_starts_the_next() {
    let store = FakeStore::default();
    let plan = team(Unreachable::Fallback, 100);
    let fleet = RefCell::new(Allowances::new(3_000));
    publish(&store, answer(3, vec![(KEY, MINUTE, 7, 250_000)]), NOW * 1000).unwrap();
    fleet.borrow_mut().sync(&store);
    assert_eq!(admitted(&plan, &store, &fleet, 10), 7);
    let refused = admit(&plan, &alice(), &Demand::default(), &store, Some(&fleet), NOW)
        .unwrap_err()
        .refusal;
    // Only this proxy's share is used up: the client is told to retry in a second, not at the
    // end of the minute.
    assert_eq!(refused.code, ErrorCode::RateLimitExceeded);
    assert!(refused.message.contains("this proxy's share is used up (7 of 7)"));
    let retry = refused.extra_headers.iter().find(|(n, _)| n == "retry-after");
    assert_eq!(retry.map(|(_, v)| v.as_str()), Some("1"));
    let remaining = refused
        .extra_headers
        .iter()
        .find(|(n, _)| n == "x-ratelimit-remaining-requests");
    assert_eq!(remaining.map(|(_, v)| v.as_str()), Some("0"));
    // The next minute, before any grant for it: a quarter of the limit.
    let later = NOW + 60;
    let next = (0..40)
        .filter(|_| admit(&plan, &alice(), &Demand::default(), &store, Some(&fleet), later).is_ok())
        .count();
    assert_eq!(next, 25);
}

#[test]
fn the_limit_still_bounds_a_larger_grant() {
    let store = FakeStore::default();
    let plan = team(Unreachable::Fallback, 5);
    let fleet = RefCell::new(Allowances::new(3_000));
    publish(&store, answer(1, vec![(KEY, MINUTE, 50, 1_000_000)]), NOW * 1000).unwrap();
    fleet.borrow_mut().sync(&store);
    assert_eq!(admitted(&plan, &store, &fleet, 10), 5);
    let refused = admit(&plan, &alice(), &Demand::default(), &store, Some(&fleet), NOW)
        .unwrap_err()
        .refusal;
    assert!(refused.message.contains("is used up: 5 of 5"));
}

#[test]
fn a_fail_closed_plan_refuses_until_the_control_plane_answers_and_after_it_goes_quiet() {
    let store = FakeStore::default();
    let plan = team(Unreachable::FailClosed, 100);
    let fleet = RefCell::new(Allowances::new(3_000));
    let refused = admit(&plan, &alice(), &Demand::default(), &store, Some(&fleet), NOW)
        .unwrap_err()
        .refusal;
    assert_eq!(refused.code, ErrorCode::QuotaUnavailable);
    assert_eq!(refused.code.status(), 503);
    publish(&store, answer(1, vec![]), NOW * 1000 - 1_000).unwrap();
    fleet.borrow_mut().sync(&store);
    assert!(admit(&plan, &alice(), &Demand::default(), &store, Some(&fleet), NOW).is_ok());
    // Four seconds after the last answer, past the 3 s the channel allows.
    let quiet = admit(&plan, &alice(), &Demand::default(), &store, Some(&fleet), NOW + 3)
        .unwrap_err()
        .refusal;
    assert_eq!(quiet.code, ErrorCode::QuotaUnavailable);
    // A fallback plan keeps counting to its last allowance meanwhile.
    let fallback = team(Unreachable::Fallback, 100);
    assert!(admit(&fallback, &alice(), &Demand::default(), &store, Some(&fleet), NOW + 3).is_ok());
}

#[test]
fn every_worker_takes_the_answer_once_and_notes_of_all_workers_reach_the_report() {
    let store = FakeStore::default();
    let plan = team(Unreachable::Fallback, 9);
    let a = RefCell::new(Allowances::new(3_000));
    let b = RefCell::new(Allowances::new(3_000));
    publish(&store, answer(3, vec![]), NOW * 1000).unwrap();
    a.borrow_mut().sync(&store);
    b.borrow_mut().sync(&store);
    // Both workers count into the Envoy's one counter, to its share of 3.
    assert_eq!(admitted(&plan, &store, &a, 2), 2);
    assert_eq!(admitted(&plan, &store, &b, 2), 1);
    a.borrow_mut().sync(&store);
    b.borrow_mut().sync(&store);
    let counters = a.borrow_mut().counters(&store, NOW).unwrap();
    assert_eq!(counters.len(), 1);
    assert_eq!((counters[0].used, counters[0].denied, counters[0].ceiling), (3, 1, 3));
    // Granted more: both count to it.
    publish(&store, answer(3, vec![(KEY, MINUTE, 5, 500_000)]), NOW * 1000).unwrap();
    a.borrow_mut().sync(&store);
    b.borrow_mut().sync(&store);
    assert_eq!(admitted(&plan, &store, &b, 5), 2);
    // A new minute: the last minute's notes are gone from the report, and a granted counter
    // is reported again only once it is used in the window in force.
    assert!(a.borrow_mut().counters(&store, NOW + 60).unwrap().is_empty());
    assert!(
        admit(&plan, &alice(), &Demand::default(), &store, Some(&a), NOW + 60).is_ok(),
        "its share of the new minute"
    );
    let counters = a.borrow_mut().counters(&store, NOW + 60).unwrap();
    assert_eq!(counters.len(), 1);
    assert_eq!(
        (counters[0].window_start, counters[0].used, counters[0].denied),
        (MINUTE + 60, 1, 0)
    );
}

/// The shared-data records are written by hand (`json::write`) and read by their readers.
#[test]
fn shared_records_read_back_as_written() {
    let shared = SharedAnswer {
        version: 9,
        contact_ms: u64::MAX,
        answer: answer(2, vec![("tw:q:p:l:requests:minute:s:\"x\\", 60, 5, 500_000)]),
    };
    let bytes = crate::json::write::to_vec(&shared);
    let back = read::from_json(&bytes, SharedAnswer::read).unwrap();
    assert_eq!((back.version, back.contact_ms), (9, u64::MAX));
    assert_eq!(back.answer, shared.answer);
    let noted: Noted = [
        ("a\n".to_string(), Note { window_start: 1, denied: 2, ceiling: 3 }),
        ("b".to_string(), Note::default()),
    ]
    .into();
    let bytes = crate::json::write::to_vec(&noted);
    assert_eq!(read::from_json(&bytes, read_noted).unwrap(), noted);
}
