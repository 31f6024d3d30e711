#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;

use jwt_simple::prelude::*;

use super::*;
use crate::config::JwkSet;
use crate::quota::counter::fake::FakeStore;
use crate::quota::fleet::Allowances;
use crate::testing::{ed25519_jwk, Fixture, NOW};

/// The host of several workers of one Envoy: one shared store, the calls each sent.
#[derive(Default)]
struct FakeEnvoy {
    store: FakeStore,
    calls: RefCell<Vec<(u32, Call)>>,
    next_token: std::cell::Cell<u32>,
    counted: RefCell<Vec<String>>,
    gauges: RefCell<std::collections::HashMap<String, u64>>,
}

impl SyncHost for FakeEnvoy {
    fn store(&self) -> &dyn SharedStore {
        &self.store
    }

    fn dispatch(&self, call: &Call) -> Result<u32, HostStatus> {
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        self.calls.borrow_mut().push((token, call.clone()));
        Ok(token)
    }

    fn count(&self, stat: &str, _by: u64) {
        self.counted.borrow_mut().push(stat.to_string());
    }

    fn gauge(&self, stat: &str, value: u64) {
        self.gauges.borrow_mut().insert(stat.to_string(), value);
    }
}

impl FakeEnvoy {
    /// The calls sent since the last look, to `path` (its start).
    fn take_calls(&self, path: &str) -> Vec<(u32, Call)> {
        let (taken, kept) = self
            .calls
            .take()
            .into_iter()
            .partition(|(_, call)| header(call, ":path").starts_with(path));
        *self.calls.borrow_mut() = kept;
        taken
    }
}

fn header<'a>(call: &'a Call, name: &str) -> &'a str {
    call.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

const T0: u64 = NOW * 1000;

fn settings(anchor: JwkSet) -> Arc<SyncSettings> {
    Arc::new(
        SyncSettings::compile(
            &SyncConfig {
                cluster: "tokenward_cp".into(),
                authority: None,
                credential: CredentialSource::Inline("twp_proxy".into()),
                report_interval_ms: 1000,
                max_staleness_seconds: 60,
                trust_anchor: anchor,
            },
            &|_| None,
        )
        .unwrap(),
    )
}

fn channel(pull: bool, anchor: JwkSet) -> Channel {
    Channel::new(settings(anchor), pull, "envoy-a".into(), Box::new(|_| None))
}

fn key(subject: &str) -> UsageKey {
    UsageKey {
        subject: subject.into(),
        tenant: Some("acme".into()),
        plan: None,
        credential: Some("jti-1".into()),
        provider: "openai".into(),
        model: Some("gpt-4o-mini".into()),
    }
}

fn used(requests: u64, tokens: u64) -> UsageCounts {
    UsageCounts {
        requests,
        input_tokens: tokens,
        output_tokens: tokens,
        cached_input_tokens: 0,
        cost_micro_usd: tokens * 10,
    }
}

fn answer(status: u16) -> Answer {
    Answer {
        status: Some(status),
        ..Answer::default()
    }
}

fn report_of(call: &Call) -> SyncReport {
    serde_json::from_slice(call.body.as_deref().unwrap()).unwrap()
}

#[test]
fn workers_flush_into_one_outbox_and_the_report_takes_it_whole() {
    let envoy = FakeEnvoy::default();
    let (mut one, mut two) = (UsageLedger::default(), UsageLedger::default());
    one.record(key("alice"), used(1, 10));
    one.record(key("alice"), used(1, 5));
    two.record(key("alice"), used(1, 1));
    two.record(key("bob"), used(2, 0));
    one.flush(&envoy.store).unwrap();
    two.flush(&envoy.store).unwrap();
    assert!(one.is_empty() && two.is_empty());
    let entries = ledger::take_outbox(&envoy.store).unwrap();
    let alice = entries.iter().find(|e| e.subject == "alice").unwrap();
    assert_eq!(
        (alice.requests, alice.input_tokens, alice.cost_micro_usd),
        (3, 16, 160)
    );
    assert_eq!(
        entries
            .iter()
            .find(|e| e.subject == "bob")
            .unwrap()
            .requests,
        2
    );
    assert!(
        ledger::take_outbox(&envoy.store).unwrap().is_empty(),
        "taken once"
    );
}

#[test]
fn a_flush_that_loses_its_race_keeps_the_usage_for_the_next() {
    let envoy = FakeEnvoy {
        store: FakeStore::with_conflicts(100, 0),
        ..FakeEnvoy::default()
    };
    let mut ledger = UsageLedger::default();
    ledger.record(key("alice"), used(1, 10));
    assert!(ledger.flush(&envoy.store).is_err());
    assert!(!ledger.is_empty(), "nothing lost");
}

#[test]
fn one_worker_leads_and_another_takes_over_when_it_stops() {
    let envoy = FakeEnvoy::default();
    let (mut a, mut b) = (
        channel(false, JwkSet::default()),
        channel(false, JwkSet::default()),
    );
    let mut ledger = UsageLedger::default();
    a.on_tick(&envoy, T0, &mut ledger, &mut Allowances::default(), None);
    b.on_tick(
        &envoy,
        T0 + 10,
        &mut ledger,
        &mut Allowances::default(),
        None,
    );
    assert!(a.leading && !b.leading);
    // `a` goes on renewing; `b` never leads meanwhile.
    for step in 1..20 {
        a.on_tick(
            &envoy,
            T0 + step * TICK_MS,
            &mut ledger,
            &mut Allowances::default(),
            None,
        );
        b.on_tick(
            &envoy,
            T0 + step * TICK_MS + 10,
            &mut ledger,
            &mut Allowances::default(),
            None,
        );
        assert!(a.leading && !b.leading);
    }
    // `a` is gone: after its lease runs out, `b` leads.
    let later = T0 + 20 * TICK_MS + LEASE_MS + 1;
    b.on_tick(&envoy, later, &mut ledger, &mut Allowances::default(), None);
    assert!(b.leading);
}

#[test]
fn a_report_lost_in_transit_is_sent_again_with_its_number_and_counted_once() {
    let envoy = FakeEnvoy::default();
    let mut a = channel(false, JwkSet::default());
    let mut ledger = UsageLedger::default();
    ledger.record(key("alice"), used(1, 10));
    a.on_tick(&envoy, T0, &mut ledger, &mut Allowances::default(), None);
    let sent = envoy.take_calls(REPORT_PATH);
    assert_eq!(sent.len(), 1);
    let (token, call) = &sent[0];
    assert_eq!(header(call, "authorization"), "Bearer twp_proxy");
    assert_eq!(header(call, ":method"), "POST");
    let first = report_of(call);
    assert_eq!((first.seq, first.entries.len()), (1, 1));
    // No answer (the control plane is down): the same report, same number, next interval.
    a.on_answer(
        &envoy,
        *token,
        Answer::default(),
        T0 + 50,
        &mut Allowances::default(),
        None,
    );
    ledger.record(key("alice"), used(1, 1));
    a.on_tick(
        &envoy,
        T0 + 1000,
        &mut ledger,
        &mut Allowances::default(),
        None,
    );
    let (token, call) = envoy.take_calls(REPORT_PATH).pop().unwrap();
    assert_eq!(report_of(&call), first, "resent as it was");
    // Taken: the next report has the next number and what came meanwhile.
    a.on_answer(
        &envoy,
        token,
        answer(200),
        T0 + 1050,
        &mut Allowances::default(),
        None,
    );
    a.on_tick(
        &envoy,
        T0 + 2000,
        &mut ledger,
        &mut Allowances::default(),
        None,
    );
    let (_, call) = envoy.take_calls(REPORT_PATH).pop().unwrap();
    let second = report_of(&call);
    assert_eq!((second.seq, second.boot.as_str()), (2, first.boot.as_str()));
    assert_eq!(second.entries[0].requests, 1);
    assert_eq!(second.entries[0].input_tokens, 1);
}

#[test]
fn a_new_leader_sends_the_report_its_predecessor_had_in_flight() {
    let envoy = FakeEnvoy::default();
    let (mut a, mut b) = (
        channel(false, JwkSet::default()),
        channel(false, JwkSet::default()),
    );
    let mut ledger = UsageLedger::default();
    ledger.record(key("alice"), used(3, 7));
    a.on_tick(&envoy, T0, &mut ledger, &mut Allowances::default(), None);
    let (_, lost) = envoy.take_calls(REPORT_PATH).pop().unwrap();
    // `a` went away with its call unanswered; `b` leads after the lease.
    b.on_tick(
        &envoy,
        T0 + LEASE_MS + 1,
        &mut UsageLedger::default(),
        &mut Allowances::default(),
        None,
    );
    let (_, again) = envoy.take_calls(REPORT_PATH).pop().unwrap();
    assert_eq!(report_of(&again), report_of(&lost));
}

#[test]
fn a_report_the_control_plane_calls_malformed_is_dropped_not_resent_forever() {
    let envoy = FakeEnvoy::default();
    let mut a = channel(false, JwkSet::default());
    let mut ledger = UsageLedger::default();
    ledger.record(key("alice"), used(1, 1));
    a.on_tick(&envoy, T0, &mut ledger, &mut Allowances::default(), None);
    let (token, _) = envoy.take_calls(REPORT_PATH).pop().unwrap();
    a.on_answer(
        &envoy,
        token,
        answer(400),
        T0 + 10,
        &mut Allowances::default(),
        None,
    );
    assert!(envoy
        .counted
        .borrow()
        .contains(&stat::REPORTS_DROPPED.to_string()));
    a.on_tick(
        &envoy,
        T0 + 1000,
        &mut ledger,
        &mut Allowances::default(),
        None,
    );
    assert!(
        envoy.take_calls(REPORT_PATH).is_empty(),
        "nothing new to say, no heartbeat due"
    );
}

#[test]
fn shutdown_sends_what_is_left_and_hands_the_lease_over() {
    let envoy = FakeEnvoy::default();
    let (mut a, mut b) = (
        channel(false, JwkSet::default()),
        channel(false, JwkSet::default()),
    );
    let mut ledger = UsageLedger::default();
    a.on_tick(&envoy, T0, &mut ledger, &mut Allowances::default(), None);
    // The first report (a heartbeat) was taken.
    let (token, _) = envoy.take_calls(REPORT_PATH).pop().unwrap();
    a.on_answer(
        &envoy,
        token,
        answer(200),
        T0 + 5,
        &mut Allowances::default(),
        None,
    );
    ledger.record(key("alice"), used(1, 2));
    assert!(
        a.on_done(
            &envoy,
            T0 + 10,
            &mut ledger,
            &mut Allowances::default(),
            None
        ),
        "waits for the answer"
    );
    let (_, last) = envoy.take_calls(REPORT_PATH).pop().unwrap();
    assert_eq!(report_of(&last).entries[0].input_tokens, 2);
    b.on_tick(
        &envoy,
        T0 + 20,
        &mut UsageLedger::default(),
        &mut Allowances::default(),
        None,
    );
    assert!(b.leading, "no wait for the lease to run out");
}

/// A control plane's answer to a poll: the configuration, signed by `signer`.
fn signed_answer(fx: &Fixture, signer: &Ed25519KeyPair, revision: u64, now: u64) -> Answer {
    let body = serde_json::to_vec(&fx.config).unwrap();
    let digest: String = hmac_sha256::Hash::hash(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut claims = Claims::with_custom_claims(
        ConfigSignature {
            sha256: digest,
            revision,
        },
        Duration::from_secs(3600),
    )
    .with_audience(SIGNATURE_AUDIENCE);
    claims.issued_at = Some(Duration::from_secs(now));
    claims.expires_at = Some(Duration::from_secs(now + 3600));
    let signature = signer.sign(claims).unwrap();
    let version = fx.config.version.clone().unwrap();
    let headers = crate::host::HeaderBlock::from_pairs([
        (":status", b"200".as_slice()),
        ("etag", format!("\"{version}\"").as_bytes()),
        (REVISION_HEADER, revision.to_string().as_bytes()),
        (SIGNATURE_HEADER, signature.as_bytes()),
    ]);
    Answer {
        status: Some(200),
        headers,
        body,
    }
}

fn anchor(fx: &Fixture) -> JwkSet {
    JwkSet {
        keys: vec![ed25519_jwk(&fx.key, None)],
    }
}

#[test]
fn a_pulled_configuration_is_verified_applied_and_followed_by_every_worker() {
    let fx = Fixture::new();
    let envoy = FakeEnvoy::default();
    let (mut a, mut b) = (channel(true, anchor(&fx)), channel(true, anchor(&fx)));
    let mut ledger = UsageLedger::default();
    assert!(matches!(
        a.on_tick(&envoy, T0, &mut ledger, &mut Allowances::default(), None),
        Apply::Keep
    ));
    let (token, poll) = envoy
        .take_calls(CONFIG_PATH)
        .pop()
        .expect("the leader polls");
    assert_eq!(header(&poll, ":path"), "/sync/v1/config?wait=20");
    assert_eq!(header(&poll, "if-none-match"), "");
    let applied = a.on_answer(
        &envoy,
        token,
        signed_answer(&fx, &fx.key, 7, NOW),
        T0 + 5,
        &mut Allowances::default(),
        None,
    );
    let Apply::Install(policy) = applied else {
        panic!("not installed")
    };
    assert_eq!(policy.version.as_deref(), Some("test"));
    // It polls again at once, naming what it has.
    let (_, next) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    assert_eq!(header(&next, "if-none-match"), "\"test\"");
    // Another worker follows from shared data, once.
    assert!(matches!(
        b.on_tick(
            &envoy,
            T0 + 100,
            &mut ledger,
            &mut Allowances::default(),
            None
        ),
        Apply::Install(_)
    ));
    assert!(matches!(
        b.on_tick(
            &envoy,
            T0 + 200,
            &mut ledger,
            &mut Allowances::default(),
            None
        ),
        Apply::Keep
    ));
}

#[test]
fn a_configuration_not_signed_by_a_trusted_key_is_refused_and_the_last_stays() {
    let fx = Fixture::new();
    let envoy = FakeEnvoy::default();
    let mut a = channel(true, anchor(&fx));
    a.on_tick(
        &envoy,
        T0,
        &mut UsageLedger::default(),
        &mut Allowances::default(),
        None,
    );
    let (token, _) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    let stranger = Ed25519KeyPair::generate();
    let refused = a.on_answer(
        &envoy,
        token,
        signed_answer(&fx, &stranger, 7, NOW),
        T0 + 5,
        &mut Allowances::default(),
        None,
    );
    assert!(matches!(refused, Apply::Keep));
    assert!(envoy
        .counted
        .borrow()
        .contains(&stat::CONFIGS_REFUSED.to_string()));
    assert_eq!(a.pulled.refused().unwrap().version, "test");
    // Bytes changed after signing: refused too.
    let mut tampered = signed_answer(&fx, &fx.key, 7, NOW);
    tampered.body = tampered.body.replace_first(b"openai", b"evilai");
    a.on_tick(
        &envoy,
        T0 + 2000,
        &mut UsageLedger::default(),
        &mut Allowances::default(),
        None,
    );
    let (token, _) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    assert!(matches!(
        a.on_answer(
            &envoy,
            token,
            tampered,
            T0 + 2005,
            &mut Allowances::default(),
            None
        ),
        Apply::Keep
    ));
    // An expired signature (a replayed answer) is refused.
    a.on_tick(
        &envoy,
        T0 + 4000,
        &mut UsageLedger::default(),
        &mut Allowances::default(),
        None,
    );
    let (token, _) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    let old = signed_answer(&fx, &fx.key, 7, NOW - 7200);
    assert!(matches!(
        a.on_answer(
            &envoy,
            token,
            old,
            T0 + 4005,
            &mut Allowances::default(),
            None
        ),
        Apply::Keep
    ));
}

#[test]
fn an_older_revision_is_refused() {
    let fx = Fixture::new();
    let envoy = FakeEnvoy::default();
    let mut a = channel(true, anchor(&fx));
    a.on_tick(
        &envoy,
        T0,
        &mut UsageLedger::default(),
        &mut Allowances::default(),
        None,
    );
    let (token, _) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    let Apply::Install(policy) = a.on_answer(
        &envoy,
        token,
        signed_answer(&fx, &fx.key, 9, NOW),
        T0,
        &mut Allowances::default(),
        None,
    ) else {
        panic!()
    };
    let mut older = Fixture::new();
    older.key = Ed25519KeyPair::from_bytes(&fx.key.to_bytes()).unwrap();
    older.config.keys = fx.config.keys.clone();
    older.config.version = Some("older".into());
    let (token, _) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    let answer = signed_answer(&older, &fx.key, 8, NOW);
    assert!(matches!(
        a.on_answer(
            &envoy,
            token,
            answer,
            T0 + 10,
            &mut Allowances::default(),
            Some(&policy)
        ),
        Apply::Keep
    ));
    assert!(a.pulled.refused().unwrap().error.contains("older"));
}

#[test]
fn keys_of_the_configuration_in_force_carry_trust_across_a_rotation() {
    let mut fx = Fixture::new();
    let envoy = FakeEnvoy::default();
    let mut a = channel(true, anchor(&fx));
    a.on_tick(
        &envoy,
        T0,
        &mut UsageLedger::default(),
        &mut Allowances::default(),
        None,
    );
    let (token, _) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    // The configuration announces a second key…
    let next = Ed25519KeyPair::generate().with_key_id("next");
    fx.config.keys.keys = vec![
        ed25519_jwk(&fx.key, Some("first")),
        ed25519_jwk(&next, Some("next")),
    ];
    let signer = Ed25519KeyPair::from_bytes(&fx.key.to_bytes())
        .unwrap()
        .with_key_id("first");
    let Apply::Install(policy) = a.on_answer(
        &envoy,
        token,
        signed_answer(&fx, &signer, 1, NOW),
        T0,
        &mut Allowances::default(),
        None,
    ) else {
        panic!()
    };
    // …which alone signs the next one: trusted, though not in the bootstrap's anchor.
    fx.config.version = Some("rotated".into());
    let (token, _) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    let answer = signed_answer(&fx, &next, 2, NOW);
    assert!(matches!(
        a.on_answer(
            &envoy,
            token,
            answer,
            T0 + 10,
            &mut Allowances::default(),
            Some(&policy)
        ),
        Apply::Install(_)
    ));
}

#[test]
fn without_an_answer_for_longer_than_the_maximum_staleness_every_worker_fails_closed() {
    let fx = Fixture::new();
    let envoy = FakeEnvoy::default();
    let (mut a, mut b) = (channel(true, anchor(&fx)), channel(true, anchor(&fx)));
    let mut ledger = UsageLedger::default();
    a.on_tick(&envoy, T0, &mut ledger, &mut Allowances::default(), None);
    let (token, _) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    a.on_answer(
        &envoy,
        token,
        signed_answer(&fx, &fx.key, 1, NOW),
        T0,
        &mut Allowances::default(),
        None,
    );
    assert!(matches!(
        b.on_tick(
            &envoy,
            T0 + 100,
            &mut ledger,
            &mut Allowances::default(),
            None
        ),
        Apply::Install(_)
    ));
    // 59 s without an answer: still in force.
    assert!(matches!(
        b.on_tick(
            &envoy,
            T0 + 59_000,
            &mut ledger,
            &mut Allowances::default(),
            None
        ),
        Apply::Keep
    ));
    assert_eq!(envoy.gauges.borrow()[stat::SECONDS_SINCE_CONTACT], 59);
    // Past 60 s: refused, once.
    assert!(matches!(
        b.on_tick(
            &envoy,
            T0 + 61_000,
            &mut ledger,
            &mut Allowances::default(),
            None
        ),
        Apply::Stale
    ));
    assert_eq!(envoy.gauges.borrow()[stat::STALE], 1);
    assert!(matches!(
        b.on_tick(
            &envoy,
            T0 + 61_100,
            &mut ledger,
            &mut Allowances::default(),
            None
        ),
        Apply::Keep
    ));
    // The control plane answers (304): the last configuration is in force again.
    pulled::touch_contact(&envoy.store, T0 + 62_000);
    assert!(matches!(
        b.on_tick(
            &envoy,
            T0 + 62_100,
            &mut ledger,
            &mut Allowances::default(),
            None
        ),
        Apply::Install(_)
    ));
    assert_eq!(envoy.gauges.borrow()[stat::STALE], 0);
}

#[test]
fn a_bootstrap_is_told_from_a_whole_configuration() {
    let fx = Fixture::new();
    let full = serde_json::to_vec(&fx.config).unwrap();
    assert!(matches!(
        PluginConfig::load(&full, &|_| None).unwrap(),
        PluginConfig::Full(_)
    ));
    let bootstrap = br#"{"sync": {"cluster": "cp", "credential": {"env": "TW_PROXY"}}}"#;
    let PluginConfig::Bootstrap(settings) = PluginConfig::load(bootstrap, &|name| {
        (name == "TW_PROXY").then(|| "twp_x".into())
    })
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        (settings.cluster.as_str(), settings.authority.as_str()),
        ("cp", "cp")
    );
    assert_eq!(settings.report_interval_ms, 1000);
    assert!(
        !format!("{settings:?}").contains("twp_x"),
        "never the credential"
    );
    // A bootstrap whose credential is not in the VM is refused (nothing could be pulled).
    assert!(PluginConfig::load(bootstrap, &|_| None).is_err());
}

#[test]
fn a_sync_block_that_cannot_load_costs_the_reports_not_the_configuration() {
    let mut fx = Fixture::new();
    fx.config.sync = Some(SyncConfig {
        cluster: "cp".into(),
        authority: None,
        credential: CredentialSource::Env("MISSING".into()),
        report_interval_ms: 1000,
        max_staleness_seconds: 300,
        trust_anchor: JwkSet::default(),
    });
    let policy = Policy::load(&serde_json::to_vec(&fx.config).unwrap(), &|_| None).unwrap();
    assert!(policy.sync.is_none());
    assert_eq!(policy.unavailable()[0].kind.label(), "sync");
}

trait ReplaceFirst {
    fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
}

impl ReplaceFirst for Vec<u8> {
    fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = self.windows(from.len()).position(|w| w == from).unwrap();
        [&self[..at], to, &self[at + from.len()..]].concat()
    }
}

#[test]
fn a_shared_secret_of_the_configuration_never_vouches_for_the_next_one() {
    let mut fx = Fixture::new();
    let secret = HS256Key::generate().with_key_id("shared");
    fx.config.keys.keys.push(crate::config::Jwk {
        kty: "oct".into(),
        kid: Some("shared".into()),
        alg: Some("HS256".into()),
        use_: None,
        crv: None,
        x: None,
        y: None,
        k: Some(Base64UrlSafeNoPadding::encode_to_string(secret.to_bytes()).unwrap()),
        allow_symmetric: true,
    });
    let envoy = FakeEnvoy::default();
    let mut a = channel(true, anchor(&fx));
    a.on_tick(
        &envoy,
        T0,
        &mut UsageLedger::default(),
        &mut Allowances::default(),
        None,
    );
    let (token, _) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    let Apply::Install(policy) = a.on_answer(
        &envoy,
        token,
        signed_answer(&fx, &fx.key, 1, NOW),
        T0,
        &mut Allowances::default(),
        None,
    ) else {
        panic!("the first configuration, signed by the anchor, is taken")
    };
    // Every Envoy holds that secret: a configuration it signed is refused.
    fx.config.version = Some("forged".into());
    let (token, _) = envoy.take_calls(CONFIG_PATH).pop().unwrap();
    let body = serde_json::to_vec(&fx.config).unwrap();
    let digest: String = hmac_sha256::Hash::hash(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut claims = Claims::with_custom_claims(
        ConfigSignature {
            sha256: digest,
            revision: 2,
        },
        Duration::from_secs(3600),
    )
    .with_audience(SIGNATURE_AUDIENCE);
    claims.issued_at = Some(Duration::from_secs(NOW));
    claims.expires_at = Some(Duration::from_secs(NOW + 3600));
    let forged = Answer {
        status: Some(200),
        headers: crate::host::HeaderBlock::from_pairs([
            ("etag", b"\"forged\"".as_slice()),
            (REVISION_HEADER, b"2".as_slice()),
            (
                SIGNATURE_HEADER,
                secret.authenticate(claims).unwrap().as_bytes(),
            ),
        ]),
        body,
    };
    assert!(matches!(
        a.on_answer(
            &envoy,
            token,
            forged,
            T0 + 10,
            &mut Allowances::default(),
            Some(&policy)
        ),
        Apply::Keep
    ));
}

#[test]
fn a_block_goes_up_in_the_next_report_and_again_if_that_report_is_not_taken() {
    let envoy = FakeEnvoy::default();
    let mut channel = channel(false, JwkSet::default());
    let mut ledger = UsageLedger::default();
    let block = BlockEvent {
        kind: SourceKind::Address,
        value: "192.0.2.66".into(),
        failures: 20,
        blocked_at: NOW,
        until: NOW + 300,
    };
    // The first report (a heartbeat) is taken; the next heartbeat is 10 s away.
    channel.on_tick(&envoy, T0, &mut ledger, &mut Allowances::default(), None);
    let (token, _) = envoy.take_calls(REPORT_PATH)[0];
    channel.on_answer(
        &envoy,
        token,
        answer(200),
        T0 + 1,
        &mut Allowances::default(),
        None,
    );
    crate::guard::announce(&envoy.store, &block).unwrap();
    let at = T0 + 1000 + TICK_MS;
    channel.on_tick(&envoy, at, &mut ledger, &mut Allowances::default(), None);
    let calls = envoy.take_calls(REPORT_PATH);
    assert_eq!(calls.len(), 1, "a block alone is worth a report");
    assert_eq!(report_of(&calls[0].1).blocks, vec![block.clone()]);
    // Not taken: the same report, block and all, goes again.
    let (token, _) = calls[0];
    channel.on_answer(
        &envoy,
        token,
        answer(503),
        at + 1,
        &mut Allowances::default(),
        None,
    );
    let next = at + 1000 + TICK_MS;
    channel.on_tick(&envoy, next, &mut ledger, &mut Allowances::default(), None);
    let calls = envoy.take_calls(REPORT_PATH);
    assert_eq!(report_of(&calls[0].1).blocks, vec![block]);
    // Taken: the next report has no block.
    channel.on_answer(
        &envoy,
        calls[0].0,
        answer(200),
        next + 1,
        &mut Allowances::default(),
        None,
    );
    assert!(crate::guard::take_events(&envoy.store).unwrap().is_empty());
}

/// What the filter sends and keeps is written by hand (`json::write`); the control plane
/// reads it with serde: every field, escapes and skipped options as `Serialize` writes them.
#[test]
fn reports_are_written_exactly_as_serde_writes_them() {
    let odd = "quote \" backslash \\ newline \n control \u{1f} é";
    let full = SyncReport {
        node: odd.to_string(),
        boot: "b".to_string(),
        seq: u64::MAX,
        pull: true,
        config_version: Some("v1".to_string()),
        refused: Some(RefusedConfig {
            version: "v2".to_string(),
            error: odd.to_string(),
        }),
        entries: vec![
            UsageEntry {
                subject: odd.to_string(),
                tenant: Some("t".to_string()),
                plan: Some("p".to_string()),
                credential: Some("c".to_string()),
                provider: "openai".to_string(),
                model: Some("gpt".to_string()),
                requests: 1,
                input_tokens: 2,
                output_tokens: 3,
                cached_input_tokens: 4,
                cost_micro_usd: 5,
            },
            UsageEntry {
                subject: "s".to_string(),
                tenant: None,
                plan: None,
                credential: None,
                provider: "anthropic".to_string(),
                model: None,
                requests: 0,
                input_tokens: 0,
                output_tokens: 0,
                cached_input_tokens: 0,
                cost_micro_usd: 0,
            },
        ],
        counters: vec![CounterState {
            key: "tw:q:p:l:requests:minute:s:x".to_string(),
            window_start: 60,
            used: 7,
            denied: 1,
            ceiling: 10,
        }],
        blocks: vec![
            BlockEvent {
                kind: SourceKind::Address,
                value: "10.0.0.1".to_string(),
                failures: u32::MAX,
                blocked_at: 100,
                until: 400,
            },
            BlockEvent {
                kind: SourceKind::Credential,
                value: "fp".to_string(),
                failures: 3,
                blocked_at: 1,
                until: 2,
            },
        ],
    };
    let bare = SyncReport::new("n", "b", 0);
    for report in [full, bare] {
        assert_eq!(
            crate::json::write::to_string(&report),
            serde_json::to_string(&report).unwrap()
        );
    }
    let answer = FleetAnswer {
        fleet_size: 3,
        grants: vec![FleetGrant {
            key: "k\"".to_string(),
            window_start: 1,
            ceiling: 2,
            share_ppm: u32::MAX,
        }],
    };
    assert_eq!(
        crate::json::write::to_string(&answer),
        serde_json::to_string(&answer).unwrap()
    );
}
