//! Pushed mode: `tokenward serve` feeds a real Envoy over ADS (the filter's configuration by
//! ECDS, clusters by CDS, routes by RDS). Minted tokens pass; a revocation made by another
//! process reaches Envoy without a restart; a provider and route added later carry traffic;
//! the proxy's ACKs show in the admin API; with the control plane gone, Envoy keeps
//! enforcing the last configuration. Envoy's stats sink reaches the control plane, and
//! entries removed with the CLI leave Envoy.

use std::path::Path;
use std::time::{Duration, Instant};
use tokenward_control_plane::testing::body_route_args;

use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::model::Alg;
use tokenward_control_plane::plane::{
    ControlPlane, InitSettings, ProviderSecret, Revocation, TokenRequest,
};
use tokenward_control_plane::store::SqliteStore;
use tokenward_control_plane::xds::snapshot::SnapshotSettings;
use tokenward_e2e::client::{self, bearer, Reply};
use tokenward_e2e::control_plane::Served;
use tokenward_e2e::envoy::{wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::mock_provider::MockProvider;
use tokenward_filter::config::{CredentialSource, ProviderConfig, ProviderStyle, RouteConfig};

const ISSUER: &str = "https://cp.test";

pub(crate) fn plane(db: &Path, master: &str) -> ControlPlane<SqliteStore> {
    tokenward_e2e::control_plane::plane(db, master).unwrap()
}

pub(crate) fn now() -> u64 {
    tokenward_e2e::control_plane::unix_now()
}

pub(crate) fn provider(name: &str, style: ProviderStyle, authority: &str) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        style,
        cluster: name.into(),
        authority: authority.into(),
        credential: CredentialSource::Env(String::new()),
        headers: Default::default(),
    }
}

pub(crate) fn route(name: &str, prefix: &str, provider: &str) -> RouteConfig {
    tokenward_filter::testing::chat_route(name, prefix, provider)
}

pub(crate) fn chat(envoy: &Envoy, credential: &str) -> Reply {
    client::send(
        "POST",
        &envoy.url("/v1/chat/completions"),
        &[("authorization", &bearer(credential))],
        Some(r#"{"model":"gpt-4o-mini","messages":[]}"#),
    )
    .unwrap()
}

/// Repeats `request` until `done` holds (a hang guard, not a timing assertion).
pub(crate) fn eventually(
    what: &str,
    mut request: impl FnMut() -> Reply,
    done: impl Fn(&Reply) -> bool,
) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = request();
        if done(&reply) {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {} {}",
            reply.status,
            reply.body
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn envoy_on_ads_enforces_what_the_control_plane_holds_and_keeps_it_when_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tokenward.db");
    let master = MasterKey::generate().unwrap().to_hex();
    // Provider keys as the operator's vault would hold them: generated for the test.
    let secrets = tokenward_e2e::setup::ProviderSecrets::generate();
    let (openai_key, anthropic_key) = (
        secrets.get("openai").to_string(),
        secrets.get("anthropic").to_string(),
    );
    let openai = MockProvider::start("openai").unwrap();
    let anthropic = MockProvider::start("anthropic").unwrap();
    let operator = plane(&db, &master);
    let (_, admin_key) = operator
        .init(
            &InitSettings {
                issuer: ISSUER.into(),
                audiences: vec!["gateway".into()],
                alg: Alg::EdDSA,
            },
            now(),
        )
        .unwrap();
    operator
        .put_provider(
            provider("openai", ProviderStyle::Openai, "api.openai.com"),
            ProviderSecret::Sealed(openai_key.clone()),
            now(),
        )
        .unwrap();
    operator
        .put_route(route("chat", "/v1/chat/completions", "openai"), now())
        .unwrap();
    let alice = TokenRequest {
        subject: "alice".into(),
        scopes: vec!["chat".into()],
        models: Some(vec!["*".into()]),
        ..TokenRequest::default()
    };
    let token = operator.mint_token(&alice, now()).unwrap();

    let wasm = wasm_module().unwrap();
    let settings = SnapshotSettings {
        wasm_path: wasm.display().to_string(),
        env_keys: vec![],
        upstream_overrides: [
            ("openai".to_string(), openai.addr),
            ("anthropic".to_string(), anthropic.addr),
        ]
        .into(),
        ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
    };
    let served = Served::start(&db, &master, settings.clone(), 0).unwrap();
    let config = EnvoyConfig::shipped_xds()
        .unwrap()
        .with_control_plane(served.xds, &wasm)
        .unwrap();
    let envoy = Envoy::start(config, &EnvoyOptions::default()).unwrap();

    let ok = eventually(
        "the first configuration",
        || chat(&envoy, &token.token),
        |r| r.status == 200,
    );
    assert!(ok.body.contains("chat.completion"));
    let received = openai.received();
    assert_eq!(
        received.last().unwrap().header("authorization"),
        Some(format!("Bearer {openai_key}"))
    );
    assert!(!received.iter().any(|r| r.contains(&token.token)));

    // Another process revokes; Envoy refuses without a restart.
    plane(&db, &master)
        .revoke(
            &Revocation::Jti {
                jti: token.jti.clone(),
                expires_at: None,
            },
            now(),
        )
        .unwrap();
    eventually(
        "the revocation",
        || chat(&envoy, &token.token),
        |r| r.error_code().as_deref() == Some("token_revoked"),
    );
    let fresh = operator.mint_token(&alice, now()).unwrap();
    assert_eq!(chat(&envoy, &fresh.token).status, 200);

    // A provider and a route added later with the CLI carry traffic: a new cluster (CDS),
    // route (RDS) and filter configuration (ECDS), no Envoy restart.
    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, &master).unwrap();
    let secret_file = dir.path().join("anthropic.key");
    std::fs::write(&secret_file, &anthropic_key).unwrap();
    let cli = |args: &[&str]| {
        let mut argv = vec![
            "tokenward",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--master-key-file",
            key_file.to_str().unwrap(),
        ];
        argv.extend_from_slice(args);
        let cli =
            <tokenward_control_plane::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        tokenward_control_plane::cli::run(&cli, &mut out, &mut err).unwrap();
    };
    cli(&[
        "provider",
        "add",
        "--name",
        "anthropic",
        "--style",
        "anthropic",
        "--authority",
        "api.anthropic.com",
        "--credential-file",
        secret_file.to_str().unwrap(),
    ]);
    cli(&body_route_args("messages", "/v1/messages", "anthropic"));
    let messages = || {
        client::send(
            "POST",
            &envoy.url("/v1/messages"),
            &[("x-api-key", fresh.token.as_bytes())],
            Some(r#"{"model":"claude-3-5-haiku-latest","max_tokens":16,"messages":[]}"#),
        )
        .unwrap()
    };
    eventually("the new provider", messages, |r| r.status == 200);
    assert_eq!(
        anthropic
            .received()
            .last()
            .unwrap()
            .header("x-api-key")
            .as_deref(),
        Some(anthropic_key.as_str())
    );

    // Rotation: a new key signs at once; tokens of the old one pass until they expire.
    operator.rotate_key(Alg::ES256, Some(0), now()).unwrap();
    let rotated = operator.mint_token(&alice, now()).unwrap();
    assert_ne!(rotated.kid, fresh.kid);
    eventually(
        "the rotated key",
        || chat(&envoy, &rotated.token),
        |r| r.status == 200,
    );
    assert_eq!(
        chat(&envoy, &fresh.token).status,
        200,
        "the retired key's token still passes"
    );

    // The proxy's ACKs, in the admin API.
    let proxies = client::send(
        "GET",
        &format!("http://{}/admin/v1/proxies", served.admin),
        &[("authorization", &bearer(&admin_key.key))],
        None,
    )
    .unwrap()
    .json();
    let node = &proxies["tokenward-gateway-1"];
    assert_eq!(node["connected"], true, "{proxies}");
    for kind in ["ecds", "cds", "rds"] {
        assert!(node["acked"][kind].is_string(), "{kind} acked: {proxies}");
    }
    // The same through `tokenward proxy-status`.
    let cli = <tokenward_control_plane::cli::Cli as clap::Parser>::try_parse_from([
        "tokenward",
        "proxy-status",
        "--server",
        &format!("http://{}", served.admin),
        "--admin-key",
        &admin_key.key,
    ])
    .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    tokenward_control_plane::cli::run(&cli, &mut out, &mut err).unwrap();
    let text = String::from_utf8(out).unwrap();
    let ecds = node["acked"]["ecds"].as_str().unwrap();
    assert!(
        text.contains("tokenward-gateway-1 (tokenward-gateway) connected")
            && text.contains(&format!("ecds: {ecds}")),
        "{text}"
    );

    // The control plane goes away: Envoy keeps the last configuration.
    let xds_port = served.xds.port();
    drop(served);
    assert_eq!(chat(&envoy, &fresh.token).status, 200);
    assert_eq!(
        chat(&envoy, &token.token).error_code().as_deref(),
        Some("token_revoked")
    );
    let missing =
        client::send("POST", &envoy.url("/v1/chat/completions"), &[], Some("{}")).unwrap();
    assert_eq!(missing.status, 401);

    // It comes back on the same port with the same state: the same version, nothing to push.
    let updates = envoy.stat("extension_config_discovery.http_filter.tokenward.config_reload");
    assert!(
        updates >= 3,
        "three filter configurations were applied so far: {updates}"
    );
    let served = Served::start(&db, &master, settings, xds_port).unwrap();
    eventually(
        "reconnection",
        || chat(&envoy, &fresh.token),
        |r| r.status == 200,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        envoy.stat("extension_config_discovery.http_filter.tokenward.config_reload"),
        updates,
        "a restarted control plane pushes no needless update"
    );
    // A provider this Envoy cannot load (its credential is in an environment variable the
    // Envoy does not have): it disables only its own route (503 provider_unavailable), is no
    // NACK, and holds back no revocation made after it.
    operator
        .put_provider(
            provider(
                "gemini",
                ProviderStyle::Gemini,
                "generativelanguage.googleapis.com",
            ),
            ProviderSecret::Env("GEMINI_KEY_NOT_IN_THIS_ENVOY".into()),
            now(),
        )
        .unwrap();
    operator
        .put_route(route("gemini", "/v1/gemini/", "gemini"), now())
        .unwrap();
    let gemini = || {
        client::send(
            "POST",
            &envoy.url("/v1/gemini/chat"),
            &[("authorization", &bearer(&rotated.token))],
            Some(r#"{"model":"gemini-2.0-flash","messages":[]}"#),
        )
        .unwrap()
    };
    let unavailable = eventually("the unavailable provider", gemini, |r| r.status == 503);
    assert_eq!(
        unavailable.error_code().as_deref(),
        Some("provider_unavailable"),
        "{}",
        unavailable.body
    );
    plane(&db, &master)
        .revoke(
            &Revocation::Jti {
                jti: fresh.jti.clone(),
                expires_at: None,
            },
            now(),
        )
        .unwrap();
    let revoked_at = Instant::now();
    eventually(
        "the revocation after the bad provider",
        || chat(&envoy, &fresh.token),
        |r| r.error_code().as_deref() == Some("token_revoked"),
    );
    let latency = revoked_at.elapsed();
    println!("revocation enforced {latency:?} after a provider Envoy cannot load");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert_eq!(
        chat(&envoy, &rotated.token).status,
        200,
        "the rest still passes"
    );
    let proxies = client::send(
        "GET",
        &format!("http://{}/admin/v1/proxies", served.admin),
        &[("authorization", &bearer(&admin_key.key))],
        None,
    )
    .unwrap()
    .json();
    assert!(
        proxies["tokenward-gateway-1"]["nacked"]
            .as_object()
            .is_none_or(|n| n.is_empty()),
        "nothing was refused whole: {proxies}"
    );
    let log = envoy.log();
    assert!(
        log.contains("provider \"gemini\" is unavailable")
            && log.contains("GEMINI_KEY_NOT_IN_THIS_ENVOY"),
        "{log}"
    );
    assert_eq!(
        envoy.stat("wasmcustom.tokenward.config.unavailable.provider.gemini"),
        1,
        "the gauge the control plane's stats sink receives"
    );
    // What the Envoy reports it could not load shows in the proxy's status and the
    // provider list.
    eventually_reported_unavailable(
        &served,
        &admin_key.key,
        "tokenward-gateway-1",
        "provider",
        "gemini",
    );
    let providers = client::send(
        "GET",
        &format!("http://{}/admin/v1/providers", served.admin),
        &[("authorization", &bearer(&admin_key.key))],
        None,
    )
    .unwrap()
    .json();
    let gemini_entry = providers
        .as_array()
        .or_else(|| providers["providers"].as_array())
        .and_then(|list| list.iter().find(|p| p["name"] == "gemini"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(gemini_entry["status"], "unavailable", "{providers}");

    drop(served);
}

/// `GET /admin/v1/proxies` for one node: what the server knows of that Envoy.
fn proxy(served: &Served, admin_key: &str, node: &str) -> serde_json::Value {
    client::send(
        "GET",
        &format!("http://{}/admin/v1/proxies", served.admin),
        &[("authorization", &bearer(admin_key))],
        None,
    )
    .unwrap()
    .json()[node]
        .clone()
}

/// The parts of its configuration an Envoy's stats sink reports it could not load, as
/// `(kind, name)`.
fn reported_unavailable(served: &Served, admin_key: &str, node: &str) -> Vec<(String, String)> {
    let status = proxy(served, admin_key, node);
    status["reported"]["unavailable"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["kind"].as_str().unwrap_or("").to_string(),
                p["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits until `node` reports (through its stats sink: the filter's gauges
/// `tokenward.config.unavailable.<kind>.<name>`) that it could not load `kind` `name`.
fn eventually_reported_unavailable(
    served: &Served,
    admin_key: &str,
    node: &str,
    kind: &str,
    name: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let parts = reported_unavailable(served, admin_key, node);
        if parts.iter().any(|(k, n)| k == kind && n == name) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} does not report {kind} {name} unavailable: {parts:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn envoy_streams_its_stats_to_the_control_plane_and_removed_entries_leave_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tokenward.db");
    let master = MasterKey::generate().unwrap().to_hex();
    let secrets = tokenward_e2e::setup::ProviderSecrets::generate();
    let openai = MockProvider::start("openai").unwrap();
    let operator = plane(&db, &master);
    let (_, admin_key) = operator
        .init(
            &InitSettings {
                issuer: ISSUER.into(),
                audiences: vec!["gateway".into()],
                alg: Alg::EdDSA,
            },
            now(),
        )
        .unwrap();
    operator
        .put_provider(
            provider("openai", ProviderStyle::Openai, "api.openai.com"),
            ProviderSecret::Sealed(secrets.get("openai").to_string()),
            now(),
        )
        .unwrap();
    operator
        .put_route(route("chat", "/v1/chat/completions", "openai"), now())
        .unwrap();
    let token = operator
        .mint_token(
            &TokenRequest {
                subject: "alice".into(),
                scopes: vec!["chat".into()],
                models: Some(vec!["*".into()]),
                ..TokenRequest::default()
            },
            now(),
        )
        .unwrap();
    let wasm = wasm_module().unwrap();
    let settings = SnapshotSettings {
        wasm_path: wasm.display().to_string(),
        env_keys: vec!["OPENAI_API_KEY".into()],
        upstream_overrides: [("openai".to_string(), openai.addr)].into(),
        ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
    };
    let served = Served::start(&db, &master, settings, 0).unwrap();
    let config = EnvoyConfig::shipped_xds()
        .unwrap()
        .with_control_plane(served.xds, &wasm)
        .unwrap();
    let envoy = Envoy::start(config, &EnvoyOptions::default()).unwrap();
    eventually(
        "the first configuration",
        || chat(&envoy, &token.token),
        |r| r.status == 200,
    );

    // The bootstrap's stats sink streams to the control plane: Envoy's own server.live
    // gauge arrives under the node id, and every part of the configuration loads.
    let node = "tokenward-gateway-1";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = proxy(&served, &admin_key.key, node);
        if status["reported"]["live"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "no stats from {node}: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        reported_unavailable(&served, &admin_key.key, node),
        [],
        "everything loads"
    );

    // A provider no Envoy fed by this control plane can load is saved with a warning and
    // listed unavailable.
    let admin = |method: &str, path: &str, body: Option<&str>| {
        client::send(
            method,
            &format!("http://{}{path}", served.admin),
            &[
                ("authorization", &bearer(&admin_key.key)),
                ("content-type", b"application/json"),
            ],
            body,
        )
        .unwrap()
    };
    let saved = admin(
        "PUT",
        "/admin/v1/providers/x",
        Some(r#"{"style":"openai","authority":"api.x.test","credential":{"env":"NOT_THERE"}}"#),
    );
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(
        saved.json()["warning"]
            .as_str()
            .is_some_and(|w| w.contains("NOT_THERE")),
        "{}",
        saved.body
    );
    let listed = admin("GET", "/admin/v1/providers", None).json();
    assert_eq!(listed[1]["name"], "x");
    assert_eq!(listed[1]["status"], "unavailable", "{listed}");
    assert_eq!(admin("DELETE", "/admin/v1/providers/x", None).status, 200);

    // Removed by another process (the CLI on the same database): the route leaves Envoy,
    // then, forced, the provider and its cluster.
    let cli = |args: &[&str]| {
        let key_file = dir.path().join("master.key");
        std::fs::write(&key_file, &master).unwrap();
        let mut argv = vec![
            "tokenward",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--master-key-file",
            key_file.to_str().unwrap(),
        ];
        argv.extend_from_slice(args);
        let cli =
            <tokenward_control_plane::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        tokenward_control_plane::cli::run(&cli, &mut out, &mut err)
            .map(|()| String::from_utf8(out).unwrap())
    };
    let refused = cli(&["provider", "remove", "openai"]).unwrap_err();
    assert!(
        format!("{refused:#}").contains("route \"chat\""),
        "{refused:#}"
    );
    assert_eq!(chat(&envoy, &token.token).status, 200, "nothing changed");
    cli(&["provider", "remove", "openai", "--force"]).unwrap();
    eventually(
        "the removed route",
        || chat(&envoy, &token.token),
        |r| r.error_code().as_deref() == Some("route_not_found"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokenward_e2e::envoy::http_get(envoy.admin_port, "/clusters")
        .unwrap()
        .contains("openai::")
    {
        assert!(Instant::now() < deadline, "the openai cluster stays");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(served);
}
