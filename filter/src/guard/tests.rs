use super::*;
use crate::quota::counter::fake::FakeStore;

fn settings(threshold: u32) -> GuardSettings {
    GuardSettings {
        threshold,
        window_seconds: 60,
        block_seconds: 300,
        exempt: Vec::new(),
    }
}

const NOW: u64 = 1_800_000_000;

#[test]
fn the_failure_that_reaches_the_threshold_starts_the_block() {
    let store = FakeStore::default();
    let s = settings(3);
    for _ in 0..2 {
        let started = record_failure(&store, &s, SourceKind::Address, "192.0.2.7", NOW).unwrap();
        assert_eq!(started, None);
        assert_eq!(blocked_until(&store, SourceKind::Address, "192.0.2.7", NOW).unwrap(), None);
    }
    let block = record_failure(&store, &s, SourceKind::Address, "192.0.2.7", NOW + 1)
        .unwrap()
        .expect("the third failure blocks");
    assert_eq!(
        (block.failures, block.blocked_at, block.until),
        (3, NOW + 1, NOW + 301)
    );
    assert_eq!(
        blocked_until(&store, SourceKind::Address, "192.0.2.7", NOW + 2).unwrap(),
        Some(NOW + 301)
    );
    // Another address and the same value of the other kind are not blocked.
    assert_eq!(blocked_until(&store, SourceKind::Address, "192.0.2.8", NOW + 2).unwrap(), None);
    assert_eq!(blocked_until(&store, SourceKind::Credential, "192.0.2.7", NOW + 2).unwrap(), None);
    // The block ends on time, and failures while it held were not counted.
    assert_eq!(blocked_until(&store, SourceKind::Address, "192.0.2.7", NOW + 301).unwrap(), None);
}

#[test]
fn after_a_block_shorter_than_the_window_the_count_starts_over() {
    let store = FakeStore::default();
    let s = GuardSettings {
        block_seconds: 10,
        ..settings(3)
    };
    for _ in 0..3 {
        record_failure(&store, &s, SourceKind::Address, "192.0.2.7", NOW).unwrap();
    }
    assert!(blocked_until(&store, SourceKind::Address, "192.0.2.7", NOW).unwrap().is_some());
    // The block is over, the window (60 s) is not: one failure is one, not a fourth.
    let started = record_failure(&store, &s, SourceKind::Address, "192.0.2.7", NOW + 10).unwrap();
    assert_eq!(started, None);
    assert_eq!(blocked_until(&store, SourceKind::Address, "192.0.2.7", NOW + 10).unwrap(), None);
}

#[test]
fn failures_spread_beyond_the_window_never_block() {
    let store = FakeStore::default();
    let s = settings(3);
    for i in 0..10 {
        let started =
            record_failure(&store, &s, SourceKind::Address, "192.0.2.7", NOW + i * 30).unwrap();
        assert_eq!(started, None, "failure {i}: two per window at most");
    }
}

#[test]
fn the_table_stays_bounded_under_a_spray_of_values_and_reuses_stale_slots() {
    let store = FakeStore::default();
    let s = settings(5);
    for i in 0..5_000 {
        record_failure(&store, &s, SourceKind::Credential, &format!("fp{i}"), NOW).unwrap();
    }
    assert_eq!(
        store.keys_with("tokenward.guard.credential."),
        SLOTS as usize,
        "one key per slot, never one per value"
    );
    // A window later every slot is stale and is taken over: a new burst is still counted.
    for _ in 0..4 {
        record_failure(&store, &s, SourceKind::Credential, "late", NOW + 61).unwrap();
    }
    let block = record_failure(&store, &s, SourceKind::Credential, "late", NOW + 61).unwrap();
    assert!(block.is_some(), "the fifth failure of a new value in a full table blocks");
    assert_eq!(store.keys_with("tokenward.guard.credential."), SLOTS as usize);
}

#[test]
fn a_full_table_evicts_the_least_failed_unblocked_slot_never_a_block() {
    let store = FakeStore::default();
    let s = settings(2);
    // Block values until some probe sequence is all blocks.
    for i in 0..20_000 {
        let value = format!("v{i}");
        record_failure(&store, &s, SourceKind::Address, &value, NOW).unwrap();
        record_failure(&store, &s, SourceKind::Address, &value, NOW).unwrap();
    }
    let blocked = (0..20_000)
        .filter(|i| {
            blocked_until(&store, SourceKind::Address, &format!("v{i}"), NOW + 1)
                .unwrap()
                .is_some()
        })
        .count();
    assert_eq!(blocked, SLOTS as usize, "every slot holds a block, none was evicted");
}

#[test]
fn blocks_are_announced_to_the_timer_and_queued_boundedly_for_the_report() {
    let store = FakeStore::default();
    assert_eq!(active_until(&store), 0);
    for i in 0..(MAX_EVENTS as u64 + 10) {
        let block = BlockEvent {
            kind: SourceKind::Address,
            value: format!("192.0.2.{i}"),
            failures: 20,
            blocked_at: NOW + i,
            until: NOW + i + 300,
        };
        announce(&store, &block).unwrap();
    }
    assert_eq!(active_until(&store), NOW + MAX_EVENTS as u64 + 9 + 300);
    let events = take_events(&store).unwrap();
    assert_eq!(events.len(), MAX_EVENTS);
    assert_eq!(events.last().unwrap().value, format!("192.0.2.{}", MAX_EVENTS + 9));
    assert!(take_events(&store).unwrap().is_empty(), "taken once");
    restore_events(&store, events.clone()).unwrap();
    assert_eq!(take_events(&store).unwrap(), events);
}

#[test]
fn settings_are_bounded_and_threshold_zero_or_disabled_turns_the_guard_off() {
    let config = |f: fn(&mut FailedAuthConfig)| {
        let mut c = FailedAuthConfig::default();
        f(&mut c);
        GuardSettings::compile(&c)
    };
    assert_eq!(config(|_| {}).unwrap(), Some(GuardSettings::defaults()));
    assert_eq!(config(|c| c.enabled = false).unwrap(), None);
    assert_eq!(config(|c| c.threshold = 0).unwrap(), None);
    assert!(config(|c| c.window_seconds = 0).is_err());
    assert!(config(|c| c.block_seconds = MAX_BLOCK_SECONDS + 1).is_err());
    assert!(config(|c| c.threshold = MAX_THRESHOLD + 1).is_err());
    assert!(config(|c| c.exempt = vec!["10.0.0.0/33".into()]).is_err());
    assert!(config(|c| c.exempt = vec!["not an address".into()]).is_err());
}

#[test]
fn exempt_networks_match_ipv4_and_ipv6() {
    let c = FailedAuthConfig {
        exempt: vec![
            "10.0.0.0/8".into(),
            "2001:db8::/32".into(),
            "192.0.2.1".into(),
        ],
        ..FailedAuthConfig::default()
    };
    let s = GuardSettings::compile(&c).unwrap().unwrap();
    assert!(s.exempts("10.200.3.4"));
    assert!(!s.exempts("11.0.0.1"));
    assert!(s.exempts("2001:db8:1::7"));
    assert!(!s.exempts("2001:db9::7"));
    assert!(s.exempts("192.0.2.1"));
    assert!(!s.exempts("192.0.2.2"));
    assert!(!s.exempts("::ffff:10.0.0.1"), "families are not mixed");
}

#[test]
fn settings_out_of_bounds_keep_the_defaults_in_force_and_show_as_unavailable() {
    use crate::config::GuardConfig;
    use crate::policy::Policy;
    let mut fx = crate::testing::Fixture::new();
    fx.config.guard = Some(GuardConfig {
        failed_auth: FailedAuthConfig {
            threshold: 5,
            window_seconds: 0,
            ..FailedAuthConfig::default()
        },
    });
    let json = serde_json::to_vec(&fx.config).unwrap();
    let loaded = Policy::load(&json, &|_| None).unwrap();
    assert_eq!(loaded.guard.as_deref(), Some(&GuardSettings::defaults()));
    let part = &loaded.unavailable()[0];
    assert_eq!(part.kind.label(), "guard");
    assert!(part.reason.to_string().contains("window_seconds"), "{}", part.reason);
    assert!(Policy::compile(&fx.config, &|_| None).is_err(), "the control plane's check");
    // Absent, the guard is on with its defaults.
    fx.config.guard = None;
    assert_eq!(fx.policy().guard.as_deref(), Some(&GuardSettings::defaults()));
}
