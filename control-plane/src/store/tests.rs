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

#[test]
fn api_keys_are_revoked_by_id_subject_or_tenant() {
    let store = SqliteStore::in_memory().unwrap();
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

#[test]
fn revoked_jtis_are_pruned_after_their_expiry() {
    let store = SqliteStore::in_memory().unwrap();
    store.revoke_jti("short", 100, 1).unwrap();
    store.revoke_jti("long", 1000, 1).unwrap();
    assert_eq!(store.revoked_jtis(50).unwrap().len(), 2);
    assert_eq!(
        store.revoked_jtis(100).unwrap(),
        [("long".to_string(), 1000)]
    );
}

#[test]
fn routes_keep_their_order_and_a_replaced_route_its_place() {
    use tokenward_filter::config::RouteConfig;
    let store = SqliteStore::in_memory().unwrap();
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
