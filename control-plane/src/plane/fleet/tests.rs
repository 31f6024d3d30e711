use std::cell::RefCell;
use std::collections::HashMap;

use tokenward_filter::config::{LimitScope, Metric, Unreachable};
use tokenward_filter::quota::counter::{self, Admission, Ask, QuotaError, SharedStore, Slot};
use tokenward_filter::quota::fleet::{Allowances, Ceiling};
use tokenward_filter::window::Window;

use super::*;
use crate::store::SqliteStore;

// A minute boundary (30 000 000 minutes).
const T0: u64 = 1_800_000_000;
const KEY: &str = "tw:q:team:rpm:requests:minute:s:alice";
/// Where the filter stores `KEY`'s count: the group of plan team's limits of alice.
const GROUP: &str = "tw:qg:team:s:alice";

fn holder(used: u64, denied: u64, promised: u64, live: bool) -> Holder {
    Holder {
        used,
        denied,
        promised,
        share_ppm: 0,
        live,
    }
}

#[test]
fn a_lone_envoy_is_allotted_everything_left() {
    let allotment = allot(1000, &[holder(400, 0, 500, true)], 0);
    assert_eq!(allotment.ceiling, 1000);
    assert_eq!(allotment.share_ppm, 1_000_000);
}

#[test]
fn what_others_may_still_count_to_is_set_aside() {
    // This Envoy asks for far more (100 counted, 900 refused) than another that used 300 and
    // may go to 600: of the 600 left, 300 are set aside for the other.
    let holders = [holder(100, 900, 100, true), holder(300, 0, 600, true)];
    assert_eq!(allot(1000, &holders, 0).ceiling, 100 + 300);
    // Once the other reports a smaller ceiling, this one gets its demand's share of the 600.
    let holders = [holder(100, 900, 100, true), holder(300, 0, 320, true)];
    assert_eq!(
        allot(1000, &holders, 0).ceiling,
        100 + (600u64 * 1000).div_ceil(1300)
    );
}

#[test]
fn shares_follow_demand_and_a_silent_envoy_keeps_a_sliver() {
    let holders = [
        holder(70, 0, 70, true),
        holder(20, 0, 20, true),
        holder(0, 0, 0, true),
    ];
    let busy = allot(1000, &holders, 0);
    let quiet = allot(1000, &holders, 2);
    assert_eq!(busy.ceiling, 70 + (910u64 * 70).div_ceil(91));
    assert!(quiet.ceiling >= 1 && quiet.ceiling < 20, "{quiet:?}");
    // Refused demand weighs as much as counted demand.
    let starved = [holder(10, 60, 10, true), holder(70, 0, 70, true)];
    assert_eq!(allot(1000, &starved, 0).share_ppm, 500_000);
    // A holder that stopped reporting weighs nothing, but what it may count to is set aside.
    let gone = [holder(10, 0, 10, true), holder(100, 0, 400, false)];
    let allotment = allot(1000, &gone, 0);
    assert_eq!(allotment.share_ppm, 1_000_000);
    assert_eq!(allotment.ceiling, 10 + (890 - 300));
}

#[test]
fn the_ceilings_never_add_up_past_the_limit() {
    let mut holders = vec![
        holder(0, 0, 334, true),
        holder(0, 0, 334, true),
        holder(0, 0, 334, true),
    ];
    for round in 0..30 {
        let me = round % 3;
        let allotment = allot(1000, &holders, me);
        holders[me].promised = allotment.ceiling;
        holders[me].share_ppm = allotment.share_ppm;
        // Each uses what it was allotted.
        holders[me].used = allotment.ceiling;
        let promised: u64 = holders.iter().map(|h| h.promised.max(h.used)).sum();
        assert!(promised <= 1002, "round {round}: {promised}");
        let shares: u64 = holders.iter().map(|h| h.share_ppm).sum();
        assert!(shares <= 1_000_000, "round {round}: {shares}");
    }
}

/// Shared data of one simulated Envoy.
#[derive(Default)]
struct Memory(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl SharedStore for Memory {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, QuotaError> {
        Ok(self.0.borrow().get(key).cloned())
    }

    fn compare_and_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<bool, QuotaError> {
        let mut map = self.0.borrow_mut();
        let current = map.get(key).map(|(_, c)| *c);
        if current != cas {
            return Ok(false);
        }
        let next = current.unwrap_or(0) + 1;
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(true)
    }
}

/// An Envoy as the filter runs it: its counter in shared data, its allowances, its reports.
struct Envoy {
    node: String,
    memory: Memory,
    allowances: Allowances,
    seq: u64,
    admitted: HashMap<u64, u64>,
}

impl Envoy {
    fn new(node: &str) -> Envoy {
        Envoy {
            node: node.into(),
            memory: Memory::default(),
            allowances: Allowances::new(3_000),
            seq: 0,
            admitted: HashMap::new(),
        }
    }

    /// `n` requests at `now`: each admitted up to this Envoy's ceiling.
    fn serve(&mut self, n: u64, now: u64, limit: u64, unreachable: Unreachable) {
        let window = Window::Minute;
        for _ in 0..n {
            let start = window.start(now);
            let ceiling = match self
                .allowances
                .ceiling(KEY, limit, start, now * 1000, unreachable)
            {
                Ceiling::Count(ceiling) => ceiling,
                Ceiling::Unreachable => continue,
            };
            let ask = Ask {
                slot: Slot::new("rpm", "requests", window, "minute"),
                amount: 1,
                ceiling,
            };
            match counter::admit(&self.memory, GROUP, &[ask], now, true).unwrap() {
                Admission::Admitted(_) => *self.admitted.entry(start).or_default() += 1,
                Admission::Refused { counts, .. } => {
                    let used = counts[0].used;
                    if ceiling < limit && used < limit {
                        self.allowances.denied(KEY, start, 1);
                    }
                }
            }
        }
    }

    /// The driving worker's report, answered by `plane` (or lost when it is down).
    fn report(&mut self, plane: Option<&ControlPlane<SqliteStore>>, now: u64) {
        let Some(plane) = plane else {
            return;
        };
        self.allowances.sync(&self.memory);
        let counters = self.allowances.counters(&self.memory, now).unwrap();
        self.seq += 1;
        let report = SyncReport {
            counters,
            ..SyncReport::new(&self.node.clone(), "1", self.seq)
        };
        plane.record_usage(&report, now).unwrap();
        let answer = plane.fleet_answer(&report, now * 1000).unwrap();
        tokenward_filter::quota::fleet::publish(&self.memory, answer, now * 1000).unwrap();
        self.allowances.sync(&self.memory);
    }
}

fn plane_with_limit(limit: u64) -> ControlPlane<SqliteStore> {
    super::super::fixtures::with_team_plan(T0, "rpm", Metric::Requests, LimitScope::Subject, limit)
}

/// Runs `windows` minutes: each second every Envoy serves its part of `per_second` requests
/// (spread by `weights`), then reports. `down` says which seconds the control plane is
/// away. Returns the requests admitted per minute, over all Envoys.
fn run(
    weights: &[u64],
    per_second: u64,
    windows: u64,
    limit: u64,
    down: &dyn Fn(u64) -> bool,
) -> Vec<u64> {
    let plane = plane_with_limit(limit);
    let mut envoys: Vec<Envoy> = (0..weights.len())
        .map(|i| Envoy::new(&format!("envoy-{i}")))
        .collect();
    let total: u64 = weights.iter().sum();
    for second in 0..windows * 60 {
        let now = T0 + second;
        for (envoy, weight) in envoys.iter_mut().zip(weights) {
            envoy.serve(
                per_second * weight / total,
                now,
                limit,
                Unreachable::Fallback,
            );
        }
        let up = !down(second);
        for envoy in &mut envoys {
            envoy.report(up.then_some(&plane), now);
        }
    }
    (0..windows)
        .map(|w| {
            envoys
                .iter()
                .map(|e| e.admitted.get(&(T0 + w * 60)).copied().unwrap_or(0))
                .sum()
        })
        .collect()
}

#[test]
fn three_envoys_spread_70_20_10_admit_at_least_95_percent_and_never_past_the_limit() {
    // 1 500 requests a minute asked, 1 000 allowed.
    let admitted = run(&[70, 20, 10], 25, 5, 1000, &|_| false);
    for (window, admitted) in admitted.iter().enumerate() {
        assert!(*admitted <= 1000, "window {window}: {admitted}");
        assert!(*admitted >= 950, "window {window}: {admitted}");
    }
}

#[test]
fn one_envoy_with_all_the_traffic_reaches_95_percent_alone() {
    let admitted = run(&[100, 0, 0], 25, 5, 1000, &|_| false);
    for (window, admitted) in admitted.iter().enumerate() {
        assert!(
            (950..=1000).contains(admitted),
            "window {window}: {admitted}"
        );
    }
}

#[test]
fn with_the_control_plane_gone_mid_window_the_fleet_stays_within_the_limit() {
    // Away from second 90 (the middle of the second minute) to the end.
    let admitted = run(&[70, 20, 10], 25, 4, 1000, &|second| second >= 90);
    for (window, admitted) in admitted.iter().enumerate() {
        assert!(*admitted <= 1000, "window {window}: {admitted}");
    }
    // Later windows count to the last shares: most of the limit still serves.
    assert!(admitted[3] >= 800, "{admitted:?}");
}

#[test]
fn quota_show_sums_the_fleet() {
    let plane = plane_with_limit(1000);
    let mut a = Envoy::new("a");
    let mut b = Envoy::new("b");
    a.serve(30, T0 + 1, 1000, Unreachable::Fallback);
    b.serve(12, T0 + 1, 1000, Unreachable::Fallback);
    a.report(Some(&plane), T0 + 1);
    b.report(Some(&plane), T0 + 1);
    let states = plane.quota_state(Some("alice"), None, T0 + 2).unwrap();
    assert_eq!(states.len(), 1);
    let state = &states[0];
    assert_eq!((state.plan.as_str(), state.limit.as_str()), ("team", "rpm"));
    assert_eq!((state.used, state.remaining, state.proxies), (42, 958, 2));
    assert_eq!(state.resets_at, T0 + 60);
    assert!(plane
        .quota_state(Some("bob"), None, T0 + 2)
        .unwrap()
        .is_empty());
    // Pruned once the next window has ended too.
    plane.prune(T0 + 121).unwrap();
    assert!(plane
        .quota_state(Some("alice"), None, T0 + 2)
        .unwrap()
        .is_empty());
}
