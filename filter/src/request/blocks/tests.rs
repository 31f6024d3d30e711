use std::rc::Rc;

use super::*;
use crate::config::{FailedAuthConfig, GuardConfig};
use crate::decision::Decision;
use crate::host::fake::FakeHost;
use crate::quota::counter::fake::FakeStore;
use crate::request::RequestFlow;
use crate::testing::{Fixture, NOW};

/// A worker whose guard blocks at the third failure, for 300 s.
fn guarded(fx: &mut Fixture, threshold: u32) -> Rc<Worker> {
    fx.config.guard = Some(GuardConfig {
        failed_auth: FailedAuthConfig {
            threshold,
            ..FailedAuthConfig::default()
        },
    });
    Worker::configured(fx.policy())
}

fn models(token: &str, from: &str, store: &Rc<FakeStore>, now: u64) -> FakeHost {
    FakeHost::request("GET", "/v1/models")
        .with_bearer(token)
        .with_source(from)
        .with_store(store)
        .with_now(now)
}

/// The decision and the stats the request counted.
fn send(worker: &Rc<Worker>, host: &FakeHost) -> (Decision, Vec<String>) {
    let mut flow = RequestFlow::new(Rc::clone(worker));
    let decision = flow.on_request_headers(host, true);
    (decision, flow.take_events())
}

fn status(decision: &Decision) -> (u16, &'static str) {
    match decision {
        Decision::Refuse(r) => (r.code.status(), r.code.code()),
        Decision::Forward(_) => (200, "forwarded"),
        other => panic!("unexpected {other:?}"),
    }
}

fn retry_after(decision: &Decision) -> Option<String> {
    match decision {
        Decision::Refuse(r) => r
            .headers()
            .into_iter()
            .find(|(n, _)| n == "retry-after")
            .map(|(_, v)| v),
        _ => None,
    }
}

const ATTACKER: &str = "192.0.2.66:40000";
const OTHER: &str = "198.51.100.7:51000";

#[test]
fn an_address_is_blocked_at_the_threshold_before_any_further_signature_check() {
    let mut fx = Fixture::new();
    let w = guarded(&mut fx, 3);
    let store = Rc::new(FakeStore::default());
    let mut verifications = 0;
    let mut seen = Vec::new();
    for i in 0..10 {
        let bad = format!("{}x{i}", fx.token());
        let (decision, events) = send(&w, &models(&bad, ATTACKER, &store, NOW));
        verifications += events.iter().filter(|e| *e == stat::VERIFICATIONS).count();
        seen.push(status(&decision).1);
    }
    assert_eq!(
        seen,
        [
            "invalid_token",
            "invalid_token",
            "invalid_token",
            "temporarily_blocked",
            "temporarily_blocked",
            "temporarily_blocked",
            "temporarily_blocked",
            "temporarily_blocked",
            "temporarily_blocked",
            "temporarily_blocked"
        ]
    );
    assert_eq!(verifications, 3, "only the threshold reached a signature check");

    // A valid token from the blocked address is refused too, with the seconds left.
    let (decision, events) = send(&w, &models(&fx.token(), ATTACKER, &store, NOW + 100));
    assert_eq!(status(&decision), (429, "temporarily_blocked"));
    assert_eq!(retry_after(&decision).as_deref(), Some("200"));
    assert!(!events.contains(&stat::VERIFICATIONS.to_string()));
    // From another address it passes.
    let (decision, _) = send(&w, &models(&fx.token(), OTHER, &store, NOW + 100));
    assert_eq!(status(&decision), (200, "forwarded"));
    // After the cool-down the attacker's address is heard again.
    let (decision, _) = send(&w, &models(&fx.token(), ATTACKER, &store, NOW + 300));
    assert_eq!(status(&decision), (200, "forwarded"));
}

#[test]
fn the_block_is_counted_once_and_queued_for_the_control_plane() {
    let mut fx = Fixture::new();
    let w = guarded(&mut fx, 2);
    let store = Rc::new(FakeStore::default());
    let mut blocked_stats = 0;
    for i in 0..5 {
        let (_, events) = send(&w, &models(&format!("junk{i}"), ATTACKER, &store, NOW));
        blocked_stats += events.iter().filter(|e| e.starts_with("tokenward.guard.blocked.")).count();
    }
    assert_eq!(blocked_stats, 1);
    let events = guard::take_events(&*store).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, events[0].value.as_str(), events[0].failures),
        (SourceKind::Address, "192.0.2.66", 2)
    );
    assert_eq!((events[0].blocked_at, events[0].until), (NOW, NOW + 300));
}

#[test]
fn one_bad_credential_tried_from_many_addresses_is_blocked_by_its_fingerprint() {
    let mut fx = Fixture::new();
    let w = guarded(&mut fx, 3);
    let store = Rc::new(FakeStore::default());
    let stolen = format!("{}tampered", fx.token());
    let mut seen = Vec::new();
    for i in 0..5 {
        let from = format!("203.0.113.{i}:1234");
        seen.push(send(&w, &models(&stolen, &from, &store, NOW)).0);
    }
    let codes: Vec<_> = seen.iter().map(|d| status(d).1).collect();
    assert_eq!(codes[..3], ["invalid_token"; 3]);
    assert_eq!(codes[3..], ["temporarily_blocked"; 2]);
    let Decision::Refuse(r) = &seen[3] else { unreachable!() };
    assert!(r.message.contains("this credential"), "{}", r.message);
    // The addresses themselves were not blocked: a valid token from one of them passes.
    let (decision, _) = send(&w, &models(&fx.token(), "203.0.113.0:1", &store, NOW));
    assert_eq!(status(&decision), (200, "forwarded"));
}

#[test]
fn a_cached_credential_costs_no_host_call_while_nothing_is_blocked() {
    let mut fx = Fixture::new();
    let w = guarded(&mut fx, 3);
    let store = Rc::new(FakeStore::default());
    let token = fx.token();
    let first = models(&token, OTHER, &store, NOW);
    assert_eq!(status(&send(&w, &first).0), (200, "forwarded"));
    let (reads, source_reads) = (store.reads(), first.source_reads());
    assert!(reads > 0 && source_reads == 1, "a miss checks the slots");

    let cached = models(&token, OTHER, &store, NOW);
    for _ in 0..5 {
        assert_eq!(status(&send(&w, &cached).0), (200, "forwarded"));
    }
    assert_eq!(store.reads(), reads, "no shared-data read on a cache hit");
    assert_eq!(cached.source_reads(), 0, "no property read on a cache hit");

    // Unguarded, a cached credential costs the same: nothing.
    fx.config.guard = Some(GuardConfig {
        failed_auth: FailedAuthConfig {
            enabled: false,
            ..FailedAuthConfig::default()
        },
    });
    let off = Worker::configured(fx.policy());
    let host = models(&token, OTHER, &store, NOW);
    for _ in 0..3 {
        send(&off, &host);
    }
    assert_eq!(host.source_reads(), 0, "an unguarded worker never reads the address");
}

#[test]
fn while_blocks_are_active_a_cached_credential_from_a_blocked_address_is_refused() {
    let mut fx = Fixture::new();
    let w = guarded(&mut fx, 2);
    let other_worker = Worker::configured(fx.policy());
    let store = Rc::new(FakeStore::default());
    let token = fx.token();
    // Both workers have verified the token from the attacker's address.
    for worker in [&w, &other_worker] {
        let (decision, _) = send(worker, &models(&token, ATTACKER, &store, NOW));
        assert_eq!(status(&decision), (200, "forwarded"));
    }
    for i in 0..2 {
        send(&w, &models(&format!("junk{i}"), ATTACKER, &store, NOW));
    }
    // The worker that started the block knows at once.
    let (decision, _) = send(&w, &models(&token, ATTACKER, &store, NOW + 1));
    assert_eq!(status(&decision), (429, "temporarily_blocked"));
    assert_eq!(retry_after(&decision).as_deref(), Some("299"));
    let (decision, _) = send(&w, &models(&token, OTHER, &store, NOW + 1));
    assert_eq!(status(&decision), (200, "forwarded"));
    // Another worker, from its next timer tick.
    let (decision, _) = send(&other_worker, &models(&token, ATTACKER, &store, NOW + 1));
    assert_eq!(status(&decision), (200, "forwarded"), "not told yet");
    other_worker.refresh_blocks(&*store);
    let (decision, _) = send(&other_worker, &models(&token, ATTACKER, &store, NOW + 1));
    assert_eq!(status(&decision), (429, "temporarily_blocked"));
}

#[test]
fn a_missing_credential_counts_against_the_address_only() {
    let mut fx = Fixture::new();
    let w = guarded(&mut fx, 2);
    let store = Rc::new(FakeStore::default());
    let bare = || {
        FakeHost::request("GET", "/v1/models")
            .with_source(ATTACKER)
            .with_store(&store)
            .with_now(NOW)
    };
    assert_eq!(status(&send(&w, &bare()).0), (401, "missing_credential"));
    assert_eq!(status(&send(&w, &bare()).0), (401, "missing_credential"));
    assert_eq!(store.keys_with("tokenward.guard.credential."), 0);
    let (decision, _) = send(&w, &models(&fx.token(), ATTACKER, &store, NOW));
    assert_eq!(status(&decision), (429, "temporarily_blocked"));
}

#[test]
fn an_exempt_network_is_never_blocked_by_address() {
    let mut fx = Fixture::new();
    fx.config.guard = Some(GuardConfig {
        failed_auth: FailedAuthConfig {
            threshold: 2,
            exempt: vec!["192.0.2.0/24".into()],
            ..FailedAuthConfig::default()
        },
    });
    let w = Worker::configured(fx.policy());
    let store = Rc::new(FakeStore::default());
    for i in 0..5 {
        send(&w, &models(&format!("junk{i}"), ATTACKER, &store, NOW));
    }
    let (decision, _) = send(&w, &models(&fx.token(), ATTACKER, &store, NOW));
    assert_eq!(status(&decision), (200, "forwarded"));
}

#[test]
fn the_client_ip_is_envoys_source_address_without_its_port() {
    assert_eq!(client_ip("192.0.2.1:443"), "192.0.2.1");
    assert_eq!(client_ip("[2001:db8::1]:443"), "2001:db8::1");
    assert_eq!(client_ip("2001:db8::1"), "2001:db8::1");
    assert_eq!(client_ip("192.0.2.1"), "192.0.2.1");
}
