use super::*;
use rusqlite::Connection;

#[test]
fn a_file_database_is_migrated_once_and_runs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.journal_mode().unwrap(), "wal");
    store.set_setting("issuer", "https://a").unwrap();
    drop(store);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(
        again.setting("issuer").unwrap().as_deref(),
        Some("https://a"),
        "reopened, not re-created"
    );
    again.set_setting("issuer", "https://b").unwrap();
    assert_eq!(
        again.setting("issuer").unwrap().as_deref(),
        Some("https://b")
    );
}

#[test]
fn usage_sums_add_up_without_wrapping() {
    let mut total = UsageSums {
        requests: u64::MAX - 1,
        cost_micro_usd: 5,
        ..UsageSums::default()
    };
    total.add(&UsageSums {
        requests: 3,
        cost_micro_usd: 2,
        ..UsageSums::default()
    });
    assert_eq!((total.requests, total.cost_micro_usd), (u64::MAX, 7));
}

#[test]
fn a_database_from_a_newer_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

fn api_keys_are_revoked_by_id_subject_or_tenant(store: &dyn Store) {
    let key = |id: &str, subject: &str, tenant: Option<&str>| ApiKeyRecord {
        id: id.into(),
        sha256: format!("{id:0>64}"),
        subject: subject.into(),
        tenant: tenant.map(str::to_string),
        scopes: vec!["chat".into()],
        models: vec![],
        plan: None,
        created_at: 1,
        expires_at: None,
        revoked_at: None,
    };
    store
        .insert_api_key(&key("a", "alice", Some("acme")))
        .unwrap();
    store
        .insert_api_key(&key("b", "bob", Some("acme")))
        .unwrap();
    store.insert_api_key(&key("c", "carol", None)).unwrap();
    assert_eq!(
        store
            .revoke_api_keys(ApiKeySelector::Tenant("acme"), 5)
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .revoke_api_keys(ApiKeySelector::Tenant("acme"), 6)
            .unwrap(),
        0,
        "already revoked"
    );
    assert_eq!(
        store.revoke_api_keys(ApiKeySelector::Id("c"), 7).unwrap(),
        1
    );
    let keys = store.api_keys().unwrap();
    assert_eq!(
        keys.iter().map(|k| k.revoked_at).collect::<Vec<_>>(),
        [Some(5), Some(5), Some(7)]
    );
    assert_eq!(keys[0].scopes, ["chat"]);
}

fn revoked_jtis_are_listed_until_their_expiry_and_pruned_after_it(store: &dyn Store) {
    store.revoke_jti("short", 100, 1).unwrap();
    store.revoke_jti("long", 1000, 1).unwrap();
    assert_eq!(store.revoked_jtis(50).unwrap().len(), 2);
    assert_eq!(
        store.revoked_jtis(100).unwrap(),
        [("long".to_string(), 1000)]
    );
    // Listing never deletes (a reader must not write); the prune job does, once.
    let revision = store.revision().unwrap();
    assert_eq!(store.prune(100).unwrap(), 1);
    assert!(store.revision().unwrap() > revision);
    let revision = store.revision().unwrap();
    assert_eq!(store.prune(100).unwrap(), 0);
    assert_eq!(
        store.revision().unwrap(),
        revision,
        "nothing pruned, nothing moved"
    );
    assert_eq!(store.revoked_jtis(0).unwrap(), [("long".to_string(), 1000)]);
}

fn routes_keep_their_order_and_a_replaced_route_its_place(store: &dyn Store) {
    use tokenward_filter::config::RouteConfig;
    let route = |name: &str, prefix: &str| RouteConfig {
        methods: vec![],
        provider: Some("p".into()),
        max_body_bytes: 10,
        ..tokenward_filter::testing::route(name, prefix)
    };

    store.put_route(&route("b", "/b")).unwrap();
    store.put_route(&route("a", "/a")).unwrap();
    store.put_route(&route("b", "/b2")).unwrap();
    let routes = store.routes().unwrap();
    assert_eq!(
        routes
            .iter()
            .map(|r| (r.name.as_str(), r.path_prefix.as_str()))
            .collect::<Vec<_>>(),
        [("b", "/b2"), ("a", "/a")]
    );
    // Removed and added again: it matches last, as a new route does.
    assert!(store.remove(CatalogEntry::Route("b")).unwrap());
    assert!(
        !store.remove(CatalogEntry::Route("b")).unwrap(),
        "gone once"
    );
    store.put_route(&route("b", "/b3")).unwrap();
    let names: Vec<String> = store
        .routes()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(!store.remove(CatalogEntry::Provider("p")).unwrap());
    assert!(!store.remove(CatalogEntry::Price("gpt*")).unwrap());
}

fn a_transaction_lands_whole_or_not_at_all(store: &dyn Store) {
    let before = store.revision().unwrap();
    {
        let transaction = store.begin(Isolation::Serialized).unwrap();
        store.set_setting("a", "1").unwrap();
        store.set_setting("b", "2").unwrap();
        drop(transaction);
    }
    assert_eq!(store.setting("a").unwrap(), None, "rolled back");
    assert_eq!(store.revision().unwrap(), before);
    let transaction = store.begin(Isolation::Serialized).unwrap();
    store.set_setting("a", "1").unwrap();
    // A nested transaction joins the outer one; its failure fails the whole.
    let inner = store.begin(Isolation::Atomic).unwrap();
    store.set_setting("b", "2").unwrap();
    inner.commit().unwrap();
    transaction.commit().unwrap();
    assert_eq!(store.setting("b").unwrap().as_deref(), Some("2"));
    assert!(store.revision().unwrap() > before);
    let transaction = store.begin(Isolation::Serialized).unwrap();
    store.set_setting("c", "3").unwrap();
    drop(store.begin(Isolation::Atomic).unwrap());
    assert!(
        transaction.commit().is_err(),
        "an inner rollback fails the outer commit"
    );
    assert_eq!(store.setting("c").unwrap(), None);
}

fn a_lease_has_one_holder_until_it_expires(store: &dyn Store) {
    assert!(store.try_lease("prune", "a", 100, 60).unwrap());
    assert!(
        store.try_lease("prune", "a", 110, 60).unwrap(),
        "renewed by its holder"
    );
    assert!(
        !store.try_lease("prune", "b", 150, 60).unwrap(),
        "held until 170"
    );
    assert!(
        store.try_lease("other", "b", 150, 60).unwrap(),
        "leases are by name"
    );
    assert!(
        store.try_lease("prune", "b", 170, 60).unwrap(),
        "expired: taken over"
    );
    assert!(!store.try_lease("prune", "a", 171, 60).unwrap());
}

fn proxies_are_kept_per_node_with_the_replica_serving_each(store: &dyn Store) {
    use crate::model::ProxyStatus;
    let mut status = ProxyStatus {
        cluster: "edge".into(),
        connected: true,
        last_seen: 100,
        ..ProxyStatus::default()
    };
    status.acked.insert("ecds".into(), "v1".into());
    let revision = store.revision().unwrap();
    store.put_proxy("envoy-a", "replica-1", &status).unwrap();
    store.put_proxy("envoy-b", "replica-2", &status).unwrap();
    assert_eq!(store.revision().unwrap(), revision, "not configuration");
    store
        .touch_proxies("replica-1", &["envoy-a".into(), "envoy-b".into()], 130)
        .unwrap();
    let proxies = store.proxies().unwrap();
    assert_eq!(proxies.len(), 2);
    assert_eq!(
        (proxies[0].node.as_str(), proxies[0].replica.as_str()),
        ("envoy-a", "replica-1")
    );
    assert_eq!(proxies[0].status.last_seen, 130);
    assert_eq!(proxies[0].status.acked["ecds"], "v1");
    assert_eq!(
        proxies[1].status.last_seen, 100,
        "touched only by the replica serving it"
    );
    // Reconnected through the other replica: it is that one's now.
    store.put_proxy("envoy-a", "replica-2", &status).unwrap();
    assert_eq!(store.proxies().unwrap()[0].replica, "replica-2");
}

fn everything_kept_moves_to_another_store(store: &dyn Store) {
    use crate::model::{Alg, IssuedToken, SigningKeyRecord};
    use tokenward_filter::config::{CredentialSource, ProviderConfig, ProviderStyle};
    store.set_setting("issuer", "https://i").unwrap();
    store
        .insert_signing_key(&SigningKeyRecord {
            kid: "k1".into(),
            alg: Alg::EdDSA,
            public_jwk: tokenward_filter::testing::ed25519_jwk(
                &jwt_simple::prelude::Ed25519KeyPair::generate(),
                Some("k1"),
            ),
            private_sealed: vec![1, 2, 3],
            created_at: 1,
            activate_at: 1,
            retired_at: None,
            publish_until: None,
        })
        .unwrap();
    store.revoke_signing_key("k0", 5).unwrap();
    let token = IssuedToken {
        jti: "j1".into(),
        subject: "alice".into(),
        tenant: Some("acme".into()),
        kid: "k1".into(),
        issued_at: 2,
        expires_at: 9_000_000_000,
    };
    store.record_token(&token, Some("key-1")).unwrap();
    store.revoke_jti("j9", 9_000_000_000, 3).unwrap();
    store.revoke_subject("mallory", 4).unwrap();
    store
        .put_provider(&StoredProvider {
            config: ProviderConfig {
                name: "openai".into(),
                style: ProviderStyle::Openai,
                cluster: "openai".into(),
                authority: "api.openai.com".into(),
                credential: CredentialSource::Inline(String::new()),
                headers: Default::default(),
            },
            credential_sealed: Some(vec![9, 9]),
        })
        .unwrap();
    for name in ["b", "a"] {
        store
            .put_route(&RouteConfig {
                provider: Some("openai".into()),
                ..tokenward_filter::testing::route(name, "/v1")
            })
            .unwrap();
    }
    store.audit(6, "op", "init", "x", "").unwrap();
    let dump = store.export().unwrap();
    assert_eq!(dump.tokens, [(token, Some("key-1".to_string()))]);

    let other = SqliteStore::in_memory().unwrap();
    other.import(&dump).unwrap();
    assert_eq!(
        other.export().unwrap(),
        dump,
        "the same rows, in the same order"
    );
    assert!(
        other.import(&dump).is_err(),
        "an initialised store is refused"
    );
    let db = crate::testing::TestDatabase::create();
    let postgres = PostgresStore::connect(&db.url, None).unwrap();
    postgres.import(&dump).unwrap();
    assert_eq!(postgres.export().unwrap(), dump);
    postgres.audit(7, "op", "next", "y", "").unwrap();
    assert_eq!(
        postgres.audit_log(1).unwrap()[0].id,
        dump.audit[0].id + 1,
        "ids go on after the copied ones"
    );
}

fn a_usage_report_is_counted_once_per_node_boot_and_sequence(store: &dyn Store) {
    use tokenward_filter::sync::{SyncReport, UsageEntry};
    let entry = |model: Option<&str>, requests: u64| UsageEntry {
        subject: "alice".into(),
        tenant: None,
        plan: Some("standard".into()),
        credential: None,
        provider: "openai".into(),
        model: model.map(str::to_string),
        requests,
        input_tokens: 100 * requests,
        output_tokens: 10 * requests,
        cached_input_tokens: requests,
        cost_micro_usd: 3 * requests,
    };
    let report = |boot: &str, seq: u64, entries: Vec<UsageEntry>| SyncReport {
        entries,
        ..SyncReport::new("envoy-a", boot, seq)
    };
    let hour = 1_800_000_000; // the start of an hour
    assert!(store
        .record_usage(
            &report("1", 1, vec![entry(Some("m"), 2), entry(None, 1)]),
            hour + 5
        )
        .unwrap());
    assert!(
        !store
            .record_usage(&report("1", 1, vec![entry(Some("m"), 2)]), hour + 6)
            .unwrap(),
        "a resend"
    );
    // The same number from another boot of the node is another report.
    assert!(store
        .record_usage(&report("2", 1, vec![entry(Some("m"), 1)]), hour + 7)
        .unwrap());
    // The next hour is its own row.
    assert!(store
        .record_usage(&report("2", 2, vec![entry(Some("m"), 4)]), hour + 3600)
        .unwrap());
    let rows = store.usage(hour).unwrap();
    let of = |h: u64, model: Option<&str>| {
        rows.iter()
            .find(|r| r.hour == h && r.entry.model.as_deref() == model)
            .map(|r| {
                (
                    r.entry.requests,
                    r.entry.input_tokens,
                    r.entry.cached_input_tokens,
                    r.entry.cost_micro_usd,
                )
            })
    };
    assert_eq!(of(hour, Some("m")), Some((3, 300, 3, 9)));
    assert_eq!(of(hour, None), Some((1, 100, 1, 3)));
    assert_eq!(of(hour + 3600, Some("m")), Some((4, 400, 4, 12)));
    assert_eq!(store.usage(hour + 3600).unwrap().len(), 1);
    assert_eq!(rows[0].entry.plan.as_deref(), Some("standard"));
    assert_eq!(rows[0].entry.tenant, None);
}

fn fleet_counters_are_kept_per_window_and_envoy_and_pruned_after_the_next_window(
    store: &dyn Store,
) {
    let row = |node: &str, window_start: u64, used: u64| FleetRow {
        key: "tw:q:team:rpm:requests:minute:s:alice".into(),
        window_start,
        window_end: window_start + 60,
        node: node.into(),
        boot: "1".into(),
        seq: 3,
        used,
        denied: 1,
        held: 50,
        granted: 60,
        share_ppm: 500_000,
        reported_at: window_start * 1000 + 500,
    };
    let t0 = 1_800_000_000;
    store.put_fleet_row(&row("a", t0, 10)).unwrap();
    store.put_fleet_row(&row("b", t0, 20)).unwrap();
    store.put_fleet_row(&row("a", t0 + 60, 5)).unwrap();
    // Written whole again: replaced, not added.
    store.put_fleet_row(&row("b", t0, 25)).unwrap();
    let rows = store
        .fleet_rows("tw:q:team:rpm:requests:minute:s:alice")
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1], row("b", t0, 25));
    assert_eq!(store.fleet_current(t0 + 30).unwrap().len(), 3);
    assert_eq!(store.fleet_current(t0 + 61).unwrap().len(), 1);
    assert_eq!(
        store.fleet_keys_since(t0 * 1000, t0 + 61).unwrap(),
        vec!["tw:q:team:rpm:requests:minute:s:alice".to_string()]
    );
    assert!(store
        .fleet_keys_since((t0 + 61) * 1000, t0 + 61)
        .unwrap()
        .is_empty());
    // The first minute's rows go once the second has ended too.
    assert_eq!(store.prune_fleet(t0 + 119).unwrap(), 0);
    assert_eq!(store.prune_fleet(t0 + 120).unwrap(), 2);
    assert_eq!(
        store
            .fleet_rows("tw:q:team:rpm:requests:minute:s:alice")
            .unwrap()
            .len(),
        1
    );
}

fn an_alert_is_recorded_once_and_its_deliveries_written(store: &dyn Store) {
    let event = AlertEvent {
        key: "tw:q:team:usd:cost_micro_usd:month:t:acme".into(),
        window_start: 1_800_000_000,
        threshold: 80,
        body: "{}".into(),
        fired_at: 1_800_000_100,
        attempts: 0,
        next_attempt_at: 1_800_000_100,
        delivered_at: None,
        last_error: String::new(),
    };
    assert!(store.record_alert(&event).unwrap());
    assert!(
        !store.record_alert(&event).unwrap(),
        "once per key, window, threshold"
    );
    assert!(store
        .record_alert(&AlertEvent {
            threshold: 100,
            ..event.clone()
        })
        .unwrap());
    assert_eq!(store.due_alerts(1_800_000_099, 10).unwrap().len(), 0);
    assert_eq!(store.due_alerts(1_800_000_100, 10).unwrap().len(), 2);
    let tried = AlertEvent {
        attempts: 1,
        next_attempt_at: 1_800_000_101,
        last_error: "503".into(),
        ..event.clone()
    };
    store.alert_attempted(&tried).unwrap();
    let delivered = AlertEvent {
        threshold: 100,
        attempts: 1,
        delivered_at: Some(1_800_000_100),
        ..event.clone()
    };
    store.alert_attempted(&delivered).unwrap();
    assert_eq!(
        store.due_alerts(1_800_000_101, 10).unwrap(),
        vec![tried.clone()]
    );
    let given_up = AlertEvent {
        attempts: ALERT_ATTEMPTS,
        ..tried
    };
    store.alert_attempted(&given_up).unwrap();
    assert!(store.due_alerts(1_900_000_000, 10).unwrap().is_empty());
    assert_eq!(store.alert_events(10).unwrap().len(), 2);
    assert_eq!(store.prune_alerts(1_800_000_101).unwrap(), 2);
    assert!(store.alert_events(10).unwrap().is_empty());
}

fn usage_is_read_per_credential_and_hour_between_bounds(store: &dyn Store) {
    use tokenward_filter::sync::{SyncReport, UsageEntry};
    let entry = |credential: Option<&str>, model: &str, requests: u64| UsageEntry {
        subject: "alice".into(),
        tenant: Some("acme".into()),
        plan: Some("team".into()),
        credential: credential.map(str::to_string),
        provider: "openai".into(),
        model: Some(model.into()),
        requests,
        input_tokens: 100 * requests,
        output_tokens: 10 * requests,
        cached_input_tokens: 0,
        cost_micro_usd: 3 * requests,
    };
    let hour = 1_800_000_000;
    let mut seq = 0;
    let mut report = |entries: Vec<UsageEntry>, at: u64| {
        seq += 1;
        let report = SyncReport {
            entries,
            ..SyncReport::new("envoy-a", "1", seq)
        };
        assert!(store.record_usage(&report, at).unwrap());
    };
    report(
        vec![
            entry(Some("k1"), "m1", 2),
            entry(Some("k1"), "m2", 3),
            entry(Some("k2"), "m1", 1),
            entry(None, "m1", 50),
        ],
        hour + 10,
    );
    report(vec![entry(Some("k1"), "m1", 4)], hour + 3600);
    report(vec![entry(Some("k1"), "m1", 8)], hour + 7200);
    // Every credential of the first two hours, models summed, no credential left out.
    let read = store.credential_usage(hour, hour + 7200, None).unwrap();
    let seen: Vec<(&str, u64, u64, u64, u64)> = read
        .iter()
        .map(|r| {
            (
                r.credential.as_str(),
                r.hour,
                r.requests,
                r.input_tokens + r.output_tokens,
                r.cost_micro_usd,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("k1", hour, 5, 550, 15),
            ("k1", hour + 3600, 4, 440, 12),
            ("k2", hour, 1, 110, 3),
        ]
    );
    assert_eq!(read[0].subject, "alice");
    assert_eq!(read[0].tenant.as_deref(), Some("acme"));
    assert_eq!(read[0].plan.as_deref(), Some("team"));
    // One credential from an hour on, to the end.
    let k1: Vec<(u64, u64)> = store
        .credential_usage(hour + 3600, u64::MAX, Some("k1"))
        .unwrap()
        .iter()
        .map(|r| (r.hour, r.requests))
        .collect();
    assert_eq!(k1, vec![(hour + 3600, 4), (hour + 7200, 8)]);
    assert!(store
        .credential_usage(hour, u64::MAX, Some("k3"))
        .unwrap()
        .is_empty());
}

use tokenward_filter::config::RouteConfig;

/// Every test above, on SQLite and on Postgres (a database of its own per test).
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::SqliteStore::in_memory().unwrap());
                }
            )*
        }
        mod on_postgres {
            $(
                #[test]
                fn $name() {
                    let db = crate::testing::TestDatabase::create();
                    super::$name(&super::PostgresStore::connect(&db.url, None).unwrap());
                }
            )*
        }
    };
}

fn the_ledger_is_summed_per_hour_and_per_value_between_bounds(store: &dyn Store) {
    let hour = 1_800_000_000; // the start of an hour
    let entry = |subject: &str, tenant: Option<&str>, model: &str, requests: u64| UsageEntry {
        subject: subject.into(),
        tenant: tenant.map(str::to_string),
        plan: None,
        credential: Some(format!("key-{subject}")),
        provider: "openai".into(),
        model: Some(model.into()),
        requests,
        input_tokens: 10 * requests,
        output_tokens: requests,
        cached_input_tokens: 0,
        cost_micro_usd: 100 * requests,
    };
    let reports = [
        (
            hour,
            vec![
                entry("alice", Some("acme"), "gpt-4o", 2),
                entry("bob", None, "gpt-4o-mini", 5),
            ],
        ),
        (
            hour + 3600,
            vec![entry("alice", Some("acme"), "gpt-4o-mini", 1)],
        ),
        (hour + 7200, vec![entry("carol", Some("acme"), "gpt-4o", 7)]),
    ];
    for (seq, (at, entries)) in reports.into_iter().enumerate() {
        let report = SyncReport {
            entries,
            ..SyncReport::new("envoy-a", "1", seq as u64 + 1)
        };
        assert!(store.record_usage(&report, at + 10).unwrap());
    }
    let any = UsageFilter::default();
    let requests = |rows: Vec<(u64, UsageSums)>| -> Vec<(u64, u64)> {
        rows.into_iter().map(|(h, s)| (h, s.requests)).collect()
    };
    assert_eq!(
        requests(store.usage_by_hour(hour, u64::MAX, &any).unwrap()),
        vec![(hour, 7), (hour + 3600, 1), (hour + 7200, 7)]
    );
    // `until` leaves its own hour out; `since` counts from its hour's start.
    assert_eq!(
        requests(store.usage_by_hour(hour + 1800, hour + 7200, &any).unwrap()),
        vec![(hour, 7), (hour + 3600, 1)]
    );
    let alice = UsageFilter {
        subject: Some("alice".into()),
        ..UsageFilter::default()
    };
    assert_eq!(
        requests(store.usage_by_hour(hour, u64::MAX, &alice).unwrap()),
        vec![(hour, 2), (hour + 3600, 1)]
    );
    let by_tenant = store
        .usage_by(hour, u64::MAX, &any, UsageDimension::Tenant, 10)
        .unwrap();
    assert_eq!(by_tenant[0].0, "acme");
    assert_eq!(by_tenant[0].1.requests, 10);
    assert_eq!(by_tenant[0].1.input_tokens, 100);
    assert_eq!(by_tenant[0].1.cost_micro_usd, 1000);
    assert_eq!(by_tenant[1].0, "", "no tenant: the empty value");
    // Largest cost first, at most `limit`, narrowed by the filters.
    let top = store
        .usage_by(hour, u64::MAX, &any, UsageDimension::Subject, 2)
        .unwrap();
    let names: Vec<&str> = top.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(names, ["carol", "bob"]);
    let mini = UsageFilter {
        model: Some("gpt-4o-mini".into()),
        ..UsageFilter::default()
    };
    let by_model = store
        .usage_by(hour, hour + 7200, &mini, UsageDimension::Model, 10)
        .unwrap();
    assert_eq!(by_model.len(), 1);
    assert_eq!(
        (by_model[0].0.as_str(), by_model[0].1.requests),
        ("gpt-4o-mini", 6)
    );
    assert_eq!(store.last_used("key-alice").unwrap(), Some(hour + 3600));
    assert_eq!(store.last_used("key-nobody").unwrap(), None);
    // The rows themselves (the export), narrowed in the statement, oldest first, at most
    // `limit`.
    let rows = |filter: &UsageFilter, limit: usize| -> Vec<(u64, String, u64)> {
        store
            .usage_rows(hour, u64::MAX, filter, limit)
            .unwrap()
            .into_iter()
            .map(|r| (r.hour, r.entry.subject, r.entry.requests))
            .collect()
    };
    assert_eq!(
        rows(&alice, 10),
        vec![(hour, "alice".into(), 2), (hour + 3600, "alice".into(), 1)]
    );
    assert_eq!(
        rows(&mini, 10),
        vec![(hour, "bob".into(), 5), (hour + 3600, "alice".into(), 1)]
    );
    assert_eq!(rows(&any, 2).len(), 2);
    assert_eq!(rows(&any, 10).len(), 4);
    assert_eq!(
        store.usage_rows(hour, hour + 3600, &any, 10).unwrap().len(),
        2,
        "`until` leaves its hour out"
    );
}

fn dashboard_sessions_are_kept_by_hash_and_pruned_after_their_end(store: &dyn Store) {
    let session = UiSession {
        id_sha256: "a".repeat(64),
        credential: r#"{"kind":"api_key","id":"k","sha256":"00"}"#.into(),
        subject: "ops".into(),
        created_at: 100,
        expires_at: 200,
    };
    store.put_ui_session(&session).unwrap();
    assert_eq!(
        store.ui_session(&"a".repeat(64)).unwrap(),
        Some(session.clone())
    );
    assert_eq!(store.ui_session(&"b".repeat(64)).unwrap(), None);
    assert_eq!(
        store.prune_ui_sessions(200).unwrap(),
        0,
        "not before its end"
    );
    assert_eq!(store.prune_ui_sessions(201).unwrap(), 1);
    assert_eq!(store.ui_session(&"a".repeat(64)).unwrap(), None);
    store.put_ui_session(&session).unwrap();
    store.delete_ui_session(&"a".repeat(64)).unwrap();
    assert_eq!(store.ui_session(&"a".repeat(64)).unwrap(), None);
    // What a token grants is kept beside it, newest first.
    for (jti, issued_at) in [("old", 10), ("new", 20)] {
        let token = IssuedToken {
            jti: jti.into(),
            subject: "alice".into(),
            tenant: None,
            kid: "k1".into(),
            issued_at,
            expires_at: 1000,
        };
        store.record_token(&token, None).unwrap();
    }
    store
        .set_token_grants("new", r#"{"scopes":["chat"]}"#)
        .unwrap();
    let recent = store.recent_tokens(500, 10).unwrap();
    let listed: Vec<(&str, Option<&str>)> = recent
        .iter()
        .map(|(t, g)| (t.jti.as_str(), g.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [("new", Some(r#"{"scopes":["chat"]}"#)), ("old", None)]
    );
    assert!(
        store.recent_tokens(1001, 10).unwrap().is_empty(),
        "expired before"
    );
}

on_every_store!(
    the_ledger_is_summed_per_hour_and_per_value_between_bounds,
    dashboard_sessions_are_kept_by_hash_and_pruned_after_their_end,
    api_keys_are_revoked_by_id_subject_or_tenant,
    revoked_jtis_are_listed_until_their_expiry_and_pruned_after_it,
    routes_keep_their_order_and_a_replaced_route_its_place,
    a_transaction_lands_whole_or_not_at_all,
    a_lease_has_one_holder_until_it_expires,
    proxies_are_kept_per_node_with_the_replica_serving_each,
    everything_kept_moves_to_another_store,
    a_usage_report_is_counted_once_per_node_boot_and_sequence,
    fleet_counters_are_kept_per_window_and_envoy_and_pruned_after_the_next_window,
    an_alert_is_recorded_once_and_its_deliveries_written,
    usage_is_read_per_credential_and_hour_between_bounds,
);

#[test]
fn a_postgres_database_is_migrated_once_and_one_from_a_newer_binary_is_refused() {
    let db = crate::testing::TestDatabase::create();
    let store = PostgresStore::connect(&db.url, None).unwrap();
    store.set_setting("issuer", "https://a").unwrap();
    drop(store);
    // Two replicas starting at once: one migrates, the other finds it done.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| PostgresStore::connect(&db.url, None).map(|_| ()));
        let b = s.spawn(|| PostgresStore::connect(&db.url, None).map(|_| ()));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    let store = PostgresStore::connect(&db.url, None).unwrap();
    assert_eq!(
        store.setting("issuer").unwrap().as_deref(),
        Some("https://a"),
        "reopened, not re-created"
    );
    let (found, known) = store.schema_versions().unwrap();
    assert_eq!(found, known);
    let mut admin = ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap();
    admin
        .batch_execute("UPDATE schema_version SET version = 99")
        .unwrap();
    assert!(matches!(
        PostgresStore::connect(&db.url, None),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[test]
fn a_commit_on_postgres_wakes_every_watcher_and_a_lost_connection_is_replaced() {
    let db = crate::testing::TestDatabase::create();
    let writer = PostgresStore::connect_with(&db.url, None, 1).unwrap();
    let reader = PostgresStore::connect(&db.url, None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    reader
        .watch(Wake {
            changed: std::sync::Arc::new(move || {
                let _ = tx.lock().unwrap().send(());
            }),
            listening: std::sync::Arc::new(|| true),
        })
        .unwrap();
    writer.set_setting("issuer", "https://a").unwrap();
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .expect("the commit was notified");
    assert_eq!(reader.revision().unwrap(), writer.revision().unwrap());
    // Postgres ends the writer's connection: the next call reconnects.
    let mut admin = ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap();
    admin
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'tokenward' AND query NOT LIKE 'LISTEN%'")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        writer.setting("issuer").unwrap().as_deref(),
        Some("https://a")
    );
}

/// TLS to Postgres is verified: the local server's TLS (Debian's default: `ssl = on` with its
/// self-signed "snakeoil" certificate for `localhost`) is refused against the system's roots,
/// and accepted against that certificate given as the CA.
#[test]
fn tls_to_postgres_is_verified_against_the_given_ca_or_the_system_roots() {
    let db = crate::testing::TestDatabase::create();
    let mut admin = ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap();
    let ssl: String = admin.query_one("SHOW ssl", &[]).unwrap().get(0);
    let cert: String = admin.query_one("SHOW ssl_cert_file", &[]).unwrap().get(0);
    assert_eq!(
        ssl, "on",
        "this test needs the PostgreSQL server's TLS: `ssl = on` in its postgresql.conf (Debian's default, with the snakeoil certificate)"
    );
    let user = crate::testing::TestDatabase::user().unwrap_or_else(|| "postgres".into());
    let url = format!(
        "postgresql://{user}@localhost:5432/{}?hostaddr=127.0.0.1&sslmode=require",
        db.name()
    );
    let refused = PostgresStore::connect(&url, None)
        .err()
        .expect("an untrusted certificate is refused");
    assert!(refused.to_string().contains("--database-ca"), "{refused}");
    let store = PostgresStore::connect(&url, Some(std::path::Path::new(&cert))).unwrap();
    store.set_setting("issuer", "https://over-tls").unwrap();
    let encrypted: bool = ::postgres::Client::connect(&db.url, ::postgres::NoTls)
        .unwrap()
        .query_one(
            "SELECT bool_or(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = $1 AND application_name = 'tokenward'",
            &[&db.name()],
        )
        .unwrap()
        .get(0);
    assert!(encrypted, "the store's connections are encrypted");
}
