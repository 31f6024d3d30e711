use super::*;
use crate::model::Alg;
use clap::Parser;

/// Runs `tokenward <args>` against `dir`; returns (ok, stdout, stderr).
fn tokenward(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut argv = vec!["tokenward", "--data-dir", dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => return (false, String::new(), e.to_string()),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = run(&cli, &mut out, &mut err);
    let mut err = String::from_utf8(err).unwrap();
    if let Err(e) = &result {
        err.push_str(&format!("{e:#}"));
    }
    (result.is_ok(), String::from_utf8(out).unwrap(), err)
}

#[test]
fn without_a_master_key_nothing_starts_and_dev_mode_says_so_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = tokenward(
        dir.path(),
        &["init", "--issuer", "https://i", "--audience", "gw"],
    );
    assert!(!ok);
    assert!(err.contains("no master key"), "{err}");
    let (ok, _, err) = tokenward(
        dir.path(),
        &["--dev", "init", "--issuer", "https://i", "--audience", "gw"],
    );
    assert!(ok, "{err}");
    assert!(err.contains("WARNING: development mode"), "{err}");
    let key_file = dir.path().join("dev-master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The same key from a file works without --dev.
    let (ok, out, err) = tokenward(
        dir.path(),
        &[
            "--master-key-file",
            key_file.to_str().unwrap(),
            "-o",
            "json",
            "key",
            "list",
        ],
    );
    assert!(ok, "{err}");
    let keys: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys[0]["state"], "active");
}

#[test]
fn the_operator_workflow_renders_a_configuration_the_filter_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dev = |args: &[&str]| {
        let mut all = vec!["--dev"];
        all.extend_from_slice(args);
        let (ok, out, err) = tokenward(d, &all);
        assert!(ok, "{args:?}: {err}");
        out
    };
    dev(&[
        "init",
        "--issuer",
        "https://cp.example",
        "--audience",
        "gateway",
    ]);
    dev(&[
        "provider",
        "add",
        "--name",
        "openai",
        "--style",
        "openai",
        "--authority",
        "api.openai.com",
        "--credential-env",
        "OPENAI_API_KEY",
    ]);
    dev(&crate::testing::body_route_args(
        "chat",
        "/v1/chat/completions",
        "openai",
    ));
    dev(&[
        "price",
        "set",
        "--model",
        "gpt-4o*",
        "--input-price",
        "2.50",
        "--output-price",
        "10",
    ]);
    dev(&[
        "plan",
        "set",
        "standard",
        "--limit",
        "rpm:requests:minute:60",
        "--limit",
        "budget:cost_micro_usd:month:5000000:tenant",
        "--clamp-max-tokens",
    ]);
    dev(&["plan", "default", "standard"]);
    let minted: serde_json::Value = serde_json::from_str(&dev(&[
        "-o",
        "json",
        "token",
        "mint",
        "--subject",
        "alice",
        "--scope",
        "chat",
        "--model",
        "gpt-4o*",
        "--ttl",
        "600",
    ]))
    .unwrap();
    assert!(minted["token"].as_str().unwrap().starts_with("ey"));
    let created: serde_json::Value = serde_json::from_str(&dev(&[
        "-o",
        "json",
        "apikey",
        "create",
        "--subject",
        "ci",
        "--scope",
        "chat",
    ]))
    .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("tw_"));
    dev(&["token", "revoke", "--jti", minted["jti"].as_str().unwrap()]);
    let path = d.join("filter.json");
    // Written private even over a file that was world-readable.
    std::fs::write(&path, "old").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    dev(&["config", "render", "--out", path.to_str().unwrap()]);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let rendered = std::fs::read(&path).unwrap();
    let policy = tokenward_filter::policy::Policy::from_json(&rendered, &|_| {
        Some("from-the-environment".into())
    })
    .unwrap();
    assert!(policy.route_for("/v1/chat/completions", "POST").is_some());
    let config: serde_json::Value = serde_json::from_slice(&rendered).unwrap();
    assert_eq!(config["revocations"]["jtis"][0]["jti"], minted["jti"]);
    assert_eq!(config["default_plan"], "standard");
    let text = String::from_utf8(rendered).unwrap();
    assert!(!text.contains(&key), "API keys are rendered as hashes");
    let audit = dev(&["audit"]);
    assert!(
        audit.contains("token.mint")
            && audit.contains("apikey.create")
            && audit.contains("revoke.jti")
    );
    assert!(!audit.contains(&key) && !audit.contains(minted["token"].as_str().unwrap()));
    // A backup restores to the same state: the same rendered version.
    let backup = d.join("backup.db");
    dev(&["backup", "--out", backup.to_str().unwrap()]);
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&backup, restored.path().join("tokenward.db")).unwrap();
    std::fs::copy(
        d.join("dev-master.key"),
        restored.path().join("dev-master.key"),
    )
    .unwrap();
    let version = |dir: &Path| {
        let (ok, out, err) = tokenward(dir, &["--dev", "config", "render"]);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["version"].clone()
    };
    assert_eq!(version(restored.path()), version(d));
    let jwks: serde_json::Value = serde_json::from_str(&dev(&["jwks"])).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
}

#[test]
fn mistakes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, _, err) = tokenward(d, &["--dev", "token", "mint", "--subject", "a"]);
    assert!(!ok && err.contains("tokenward init"), "{err}");
    tokenward(
        d,
        &["--dev", "init", "--issuer", "https://i", "--audience", "gw"],
    );
    let (ok, _, err) = tokenward(
        d,
        &[
            "--dev",
            "route",
            "add",
            "--name",
            "r",
            "--path-prefix",
            "/x",
            "--provider",
            "ghost",
        ],
    );
    assert!(!ok && err.contains("unknown provider"), "{err}");
    let (ok, _, err) = tokenward(
        d,
        &[
            "--dev",
            "plan",
            "set",
            "p",
            "--limit",
            "rpm:requests:fortnight:5",
        ],
    );
    assert!(!ok && err.contains("minute, hour, day or month"), "{err}");
    let (ok, _, err) = tokenward(d, &["--dev", "token", "revoke"]);
    assert!(!ok && err.contains("required"), "{err}");
    let (ok, _, err) = tokenward(
        d,
        &["--dev", "settings", "set", "max_token_ttl_seconds", "5"],
    );
    assert!(!ok && err.contains("between 60"), "{err}");
    let (ok, _, err) = tokenward(
        d,
        &["--dev", "settings", "set", "max_token_ttl_seconds", "7200"],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = tokenward(d, &["--dev", "-o", "json", "settings", "show"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["max_token_ttl_seconds"],
        7200
    );
    let (ok, _, err) = tokenward(
        d,
        &["--dev", "token", "mint", "--subject", "a", "--ttl", "7000"],
    );
    assert!(ok, "the raised maximum applies: {err}");
    let (ok, _, err) = tokenward(d, &["--dev", "settings", "set", "colour", "1"]);
    assert!(!ok && err.contains("unknown setting"), "{err}");
}

#[test]
fn catalog_entries_are_removed_and_what_still_uses_one_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dev = |args: &[&str]| {
        let mut all = vec!["--dev"];
        all.extend_from_slice(args);
        tokenward(d, &all)
    };
    let ok = |args: &[&str]| {
        let (ok, out, err) = dev(args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    ok(&["init", "--issuer", "https://i", "--audience", "gw"]);
    ok(&[
        "provider",
        "add",
        "--name",
        "openai",
        "--style",
        "openai",
        "--authority",
        "api.openai.com",
        "--credential-env",
        "OPENAI_API_KEY",
    ]);
    ok(&[
        "route",
        "add",
        "--name",
        "chat",
        "--path-prefix",
        "/v1/chat/completions",
        "--provider",
        "openai",
    ]);
    ok(&["plan", "set", "gold", "--limit", "rpm:requests:minute:60"]);
    let key: serde_json::Value = serde_json::from_str(&ok(&[
        "-o",
        "json",
        "apikey",
        "create",
        "--subject",
        "svc",
        "--plan",
        "gold",
    ]))
    .unwrap();
    ok(&[
        "price",
        "set",
        "--model",
        "gpt-4o*",
        "--input-price",
        "0.000001",
        "--output-price",
        "0.000002",
    ]);

    ok(&[
        "provider",
        "add",
        "--name",
        "x",
        "--style",
        "openai",
        "--authority",
        "api.x.test",
        "--credential-env",
        "NOT_THERE",
    ]);
    // The CLI does not know serve's flags: told them, it says what cannot load.
    let listed = ok(&["provider", "list", "--env-key", "OPENAI_API_KEY"]);
    assert!(
        listed.contains("openai  api.openai.com  env OPENAI_API_KEY  available\n")
            && listed.contains("x  api.x.test  env NOT_THERE  unavailable: its credential"),
        "{listed}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["-o", "json", "provider", "list"])).unwrap();
    assert_eq!(listed[1]["status"], "unknown", "{listed}");
    ok(&["provider", "remove", "x"]);

    let (removed, _, err) = dev(&["provider", "remove", "openai"]);
    assert!(!removed, "a route uses it");
    assert!(
        err.contains(r#"used by route "chat""#) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        ok(&["provider", "remove", "openai", "--force"]).trim(),
        "provider openai removed, with routes chat"
    );
    let (removed, _, err) = dev(&["route", "remove", "chat"]);
    assert!(
        !removed && err.contains("route \"chat\" not found"),
        "{err}"
    );

    let (removed, _, err) = dev(&["plan", "remove", "gold"]);
    assert!(!removed && err.contains("API key"), "{err}");
    let out: serde_json::Value =
        serde_json::from_str(&ok(&["-o", "json", "plan", "remove", "gold", "--force"])).unwrap();
    assert_eq!(out["revoked_api_keys"][0], key["id"]);
    assert_eq!(
        ok(&["price", "remove", "gpt-4o*"]).trim(),
        "price gpt-4o* removed"
    );
    let config: serde_json::Value = serde_json::from_str(&ok(&["config", "render"])).unwrap();
    assert_eq!(
        (&config["providers"], &config["routes"]),
        (&serde_json::json!([]), &serde_json::json!([]))
    );
    // Empty plans and prices are left out of the document.
    assert!(
        config["plans"].is_null() && config["prices"].is_null(),
        "{config}"
    );
    assert!(
        !config["api_keys"]
            .to_string()
            .contains(key["id"].as_str().unwrap()),
        "the key went with its plan"
    );
    let audit = ok(&["audit"]);
    for action in [
        "provider.remove",
        "route.remove",
        "plan.remove",
        "price.remove",
        "revoke.apikey",
    ] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
}

#[test]
fn proxy_status_shows_what_each_envoy_reports_it_could_not_load() {
    let plane = ControlPlane::new(
        SqliteStore::in_memory().unwrap(),
        MasterKey::generate().unwrap(),
        "test",
    );
    let (_, admin) = plane
        .init(
            &InitSettings {
                issuer: "https://i".into(),
                audiences: vec!["gw".into()],
                alg: Alg::EdDSA,
            },
            now().unwrap(),
        )
        .unwrap();
    let state = std::sync::Arc::new(crate::state::ServerState::new(
        plane,
        Box::new(|| now().unwrap_or(0)),
    ));
    {
        let mut proxies = state.proxies.lock().unwrap();
        let reporting = proxies.entry("gw-1".into()).or_default();
        reporting.cluster = "gateways".into();
        reporting.connected = true;
        let mut reported = crate::model::ReportedStats {
            at: 1_800_000_000,
            live: Some(true),
            ..Default::default()
        };
        reported.unavailable.insert(crate::model::ConfigPart {
            kind: "provider".into(),
            name: "bad_one".into(),
        });
        reporting.reported = Some(reported);
        proxies.entry("gw-2".into()).or_default().connected = true;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let router = crate::admin::router(std::sync::Arc::clone(&state));
    runtime.spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().unwrap();
    let server = format!("http://{addr}");
    let (ok, out, err) = tokenward(
        dir.path(),
        &[
            "proxy-status",
            "--server",
            &server,
            "--admin-key",
            &admin.key,
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("gw-1 (gateways) connected")
            && out.contains("  stats: reported 1800000000, live\n")
            && out.contains("  unavailable: provider bad_one\n"),
        "{out}"
    );
    let gw2 = out.split("gw-2").nth(1).unwrap_or_default();
    assert!(gw2.contains("stats: none reported"), "{out}");
    assert!(!gw2.contains("unavailable:"), "{out}");
}

/// Runs `tokenward <args>`; the error, if any.
fn run_args(dir: &Path, args: &[&str]) -> Option<anyhow::Error> {
    let mut argv = vec!["tokenward", "--data-dir", dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    run(&cli, &mut Vec::new(), &mut Vec::new()).err()
}

#[test]
fn serve_refuses_plain_listeners_beyond_loopback_as_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    let (ok, _, err) = tokenward(
        dir.path(),
        &[
            "tls",
            "dev-certs",
            "--out",
            certs.to_str().unwrap(),
            "--node-id",
            "gw-1",
        ],
    );
    assert!(ok, "{err}");
    let (cert, key, ca) = (
        certs.join("server.crt"),
        certs.join("server.key"),
        certs.join("ca.crt"),
    );
    let (cert, key, ca) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca.to_str().unwrap(),
    );
    let refused: &[&[&str]] = &[
        &["serve", "--listen", "0.0.0.0:8080"],
        &["serve", "--xds-listen", "0.0.0.0:18000"],
        &[
            "serve",
            "--listen",
            "[::]:8080",
            "--xds-listen",
            "127.0.0.1:0",
        ],
        // TLS without client certificates: ADS would hand anyone the provider credentials.
        &[
            "serve",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--xds-listen",
            "0.0.0.0:18000",
        ],
    ];
    for args in refused {
        let error = run_args(dir.path(), args).unwrap_or_else(|| panic!("{args:?} must fail"));
        assert!(
            error.downcast_ref::<UsageError>().is_some(),
            "{args:?}: {error:#}"
        );
        assert!(error.to_string().contains("--insecure"), "{error}");
        // Refused before the master key is asked for or a database is made.
        assert!(!dir.path().join("tokenward.db").exists());
    }
    // Allowed: the same with --insecure, or mutual TLS. They get as far as the database
    // (none here), which shows the exposure check passed.
    let allowed: &[&[&str]] = &[
        &["serve", "--listen", "0.0.0.0:8080", "--insecure"],
        &["serve", "--xds-listen", "0.0.0.0:18000", "--insecure"],
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--xds-listen",
            "0.0.0.0:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--xds-client-ca",
            ca,
        ],
    ];
    for args in allowed {
        let error = run_args(dir.path(), args).unwrap();
        assert!(
            error.downcast_ref::<UsageError>().is_none(),
            "{args:?}: {error:#}"
        );
        assert!(
            error.to_string().contains("no tokenward database"),
            "{args:?}: {error:#}"
        );
    }
    // A key without a certificate (and the reverse) is clap's own usage error.
    let argv = ["tokenward", "serve", "--tls-key", key];
    assert!(Cli::try_parse_from(argv).is_err());
    let argv = ["tokenward", "serve", "--xds-client-ca", ca];
    assert!(
        Cli::try_parse_from(argv).is_err(),
        "a client CA needs a server certificate"
    );
}

#[test]
fn dev_certs_need_no_database_and_say_what_they_kept() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    let args = [
        "tls",
        "dev-certs",
        "--out",
        certs.to_str().unwrap(),
        "--node-id",
        "gw-1",
    ];
    let (ok, out, err) = tokenward(dir.path(), &args);
    assert!(ok, "{err}");
    assert!(
        out.contains("written: ") && out.contains("node-gw-1.crt"),
        "{out}"
    );
    assert!(!dir.path().join("tokenward.db").exists());
    let (ok, out, _) = tokenward(dir.path(), &args);
    assert!(ok);
    assert!(!out.contains("written") && out.contains("kept: "), "{out}");
}

#[test]
fn a_data_dir_without_a_database_is_refused_except_by_init() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("tokenward-dat");
    let (ok, _, err) = tokenward(&typo, &["--dev", "key", "list"]);
    assert!(!ok);
    assert!(
        err.contains("no tokenward database") && err.contains("tokenward init"),
        "{err}"
    );
    assert!(
        !typo.exists(),
        "nothing is created for a mistyped --data-dir"
    );
    let (ok, _, err) = tokenward(
        &typo,
        &[
            "--dev",
            "init",
            "--issuer",
            "https://x.test",
            "--audience",
            "gw",
        ],
    );
    assert!(ok, "{err}");
    assert!(typo.join("tokenward.db").exists());
}

#[test]
fn human_units_messages_that_hold_and_undoing_a_subject_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |args: &[&str]| {
        let mut all = vec!["--dev"];
        all.extend_from_slice(args);
        let (ok, out, err) = tokenward(d, &all);
        assert!(ok, "{args:?}: {err}");
        out
    };
    ok(&["init", "--issuer", "https://x.test", "--audience", "gw"]);
    let minted: serde_json::Value = serde_json::from_str(&ok(&[
        "-o",
        "json",
        "token",
        "mint",
        "--subject",
        "alice",
        "--ttl",
        "10m",
    ]))
    .unwrap();
    let lifetime = minted["expires_at"].as_u64().unwrap() - now().unwrap();
    assert!((590..=600).contains(&lifetime), "{lifetime}");
    let key: serde_json::Value = serde_json::from_str(&ok(&[
        "-o",
        "json",
        "apikey",
        "create",
        "--subject",
        "svc",
        "--expires-at",
        "2099-01-01",
    ]))
    .unwrap();
    assert!(key["id"].is_string());
    let (ok_flag, _, err) = tokenward(
        d,
        &[
            "--dev",
            "apikey",
            "create",
            "--subject",
            "svc",
            "--expires-at",
            "soon",
        ],
    );
    assert!(!ok_flag && err.contains("2027-01-01T12:00:00Z"), "{err}");
    ok(&[
        "price",
        "set",
        "--model",
        "gpt-4o*",
        "--input-price",
        "2.50",
        "--output-price",
        "10",
    ]);
    let (ok_flag, _, err) = tokenward(
        d,
        &[
            "--dev",
            "price",
            "set",
            "--model",
            "m",
            "--input-price",
            "2500000",
            "--output-price",
            "1",
        ],
    );
    assert!(!ok_flag && err.contains("USD per million tokens"), "{err}");

    // A jti this control plane never minted: said so, and revoked all the same.
    let text = ok(&["token", "revoke", "--jti", "nosuchjti"]);
    assert!(text.contains("no token minted here carries it"), "{text}");
    assert!(!text.contains("push or render"), "{text}");
    let text = ok(&["token", "revoke", "--subject", "alice"]);
    assert!(text.contains("subject alice revoked"), "{text}");
    let text = ok(&["token", "unrevoke", "--subject", "alice"]);
    assert!(text.contains("alice is no longer revoked"), "{text}");
    let (ok_flag, _, err) = tokenward(d, &["--dev", "token", "unrevoke", "--subject", "alice"]);
    assert!(!ok_flag && err.contains("not found"), "{err}");
    let audit = ok(&["audit"]);
    assert!(audit.contains("unrevoke.subject  alice"), "{audit}");
}

#[test]
fn an_error_and_its_causes_are_said_once() {
    #[derive(Debug, thiserror::Error)]
    #[error("the store failed: {0}")]
    struct Outer(#[from] std::io::Error);
    let error =
        anyhow::Error::from(Outer(std::io::Error::other("disk full"))).context("saving the route");
    assert_eq!(
        error_message(&error),
        "saving the route: the store failed: disk full"
    );
}

#[test]
fn every_resource_has_a_list_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |args: &[&str]| {
        let mut all = vec!["--dev"];
        all.extend_from_slice(args);
        let (ok, out, err) = tokenward(d, &all);
        assert!(ok, "{args:?}: {err}");
        out
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&ok(&all)).unwrap()
    };
    ok(&["init", "--issuer", "https://x.test", "--audience", "gw"]);
    ok(&[
        "apikey",
        "create",
        "--subject",
        "svc",
        "--tenant",
        "acme",
        "--expires-at",
        "2099-01-01",
    ]);
    let minted = json(&["token", "mint", "--subject", "alice"]);
    ok(&["token", "revoke", "--subject", "mallory"]);
    ok(&[
        "provider",
        "add",
        "--name",
        "openai",
        "--style",
        "openai",
        "--authority",
        "api.openai.com",
        "--credential-env",
        "OPENAI_API_KEY",
    ]);
    ok(&crate::testing::body_route_args(
        "chat",
        "/v1/chat/completions",
        "openai",
    ));
    ok(&["plan", "set", "gold", "--limit", "rpm:requests:minute:60"]);
    ok(&["plan", "default", "gold"]);
    ok(&[
        "price",
        "set",
        "--model",
        "gpt-4o*",
        "--input-price",
        "2.50",
        "--output-price",
        "10",
    ]);

    let keys = ok(&["apikey", "list", "--tenant", "acme"]);
    assert!(
        keys.contains("  svc  acme  ") && keys.contains("active  expires 2099-01-01T00:00:00Z"),
        "{keys}"
    );
    let keys = json(&["apikey", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 2, "the admin key and svc's");
    assert!(!keys.to_string().contains("sha256"), "never a hash");
    let tokens = json(&["token", "list", "--subject", "alice"]);
    assert_eq!(tokens[0]["jti"], minted["jti"]);
    assert!(ok(&["token", "list"]).contains("  alice  -  key "));
    assert_eq!(
        json(&["revocations"])["subjects"],
        serde_json::json!(["mallory"])
    );
    assert!(ok(&["revocations"]).contains("subject mallory"));
    assert!(ok(&["route", "list"]).contains("chat  /v1/chat/completions  POST  -> openai"));
    assert!(ok(&["plan", "list"]).contains("gold (default)  rpm=60"));
    assert_eq!(json(&["plan", "list"])["default_plan"], "gold");
    assert!(ok(&["price", "list"]).contains("gpt-4o*  input $2.5  output $10  per million tokens"));
    assert_eq!(json(&["price", "list"])[0]["input"], 2_500_000);
}

#[test]
fn every_flag_says_what_it_takes() {
    use clap::CommandFactory;
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" || arg.is_positional() {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} --{id}"));
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&Cli::command(), "tokenward", &mut missing);
    assert!(missing.is_empty(), "flags without help: {missing:?}");
}

#[test]
fn every_resource_can_be_shown_alone_and_a_missing_one_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let mut all = vec!["--dev", "-o", "json"];
        all.extend_from_slice(args);
        tokenward(d, &all)
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let (ok, out, err) = run(args);
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    json(&["init", "--issuer", "https://x.test", "--audience", "gw"]);
    let key = json(&["apikey", "create", "--subject", "svc"]);
    let minted = json(&["token", "mint", "--subject", "alice"]);
    json(&[
        "provider",
        "add",
        "--name",
        "openai",
        "--style",
        "openai",
        "--authority",
        "api.openai.com",
        "--credential-env",
        "OPENAI_API_KEY",
    ]);
    json(&crate::testing::body_route_args(
        "chat",
        "/v1/chat/completions",
        "openai",
    ));
    json(&["plan", "set", "gold", "--limit", "rpm:requests:minute:60"]);
    json(&[
        "price",
        "set",
        "--model",
        "gpt-4o*",
        "--input-price",
        "2.50",
        "--output-price",
        "10",
    ]);

    let id = key["id"].as_str().unwrap();
    assert_eq!(json(&["apikey", "show", id])["subject"], "svc");
    assert_eq!(
        json(&["token", "show", minted["jti"].as_str().unwrap()])["subject"],
        "alice"
    );
    assert_eq!(
        json(&["provider", "show", "openai"])["authority"],
        "api.openai.com"
    );
    assert_eq!(
        json(&["route", "show", "chat"])["path_prefix"],
        "/v1/chat/completions"
    );
    assert_eq!(json(&["plan", "show", "gold"])["limits"][0]["limit"], 60);
    assert_eq!(json(&["price", "show", "gpt-4o*"])["input"], 2_500_000);
    for args in [
        &["apikey", "show", "nope"][..],
        &["token", "show", "nope"],
        &["provider", "show", "nope"],
        &["route", "show", "nope"],
        &["plan", "show", "nope"],
        &["price", "show", "nope"],
    ] {
        let (ok, _, err) = run(args);
        assert!(!ok && err.contains("not found"), "{args:?}: {err}");
    }
}

mod postgres;

#[test]
fn proxy_credentials_the_sync_channel_and_pull_mode_bootstraps_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let mut argv = vec!["--dev"];
        argv.extend_from_slice(args);
        tokenward(d, &argv)
    };
    let ok = |args: &[&str]| {
        let (ok, out, err) = run(args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    ok(&["init", "--issuer", "https://i", "--audience", "gw"]);
    let created: serde_json::Value = serde_json::from_str(&ok(&[
        "-o",
        "json",
        "proxy-credential",
        "create",
        "--name",
        "mesh",
    ]))
    .unwrap();
    let key = created["key"].as_str().unwrap();
    assert_eq!(created["subject"], "proxy:mesh");
    // Listed as an API key; never in the configuration the filters get.
    assert!(ok(&["apikey", "list"]).contains("proxy:mesh"));
    let config = ok(&["config", "render"]);
    assert!(!config.contains("proxy:mesh"), "{config}");
    // Pushed mode: the channel by variable only.
    let (refused, _, err) = run(&["sync", "set", "--cluster", "cp", "--credential-env", ""]);
    assert!(!refused && err.contains("sync"), "{err}");
    ok(&[
        "sync",
        "set",
        "--cluster",
        "tokenward_sync",
        "--credential-env",
        "TOKENWARD_PROXY_CREDENTIAL",
    ]);
    let config: serde_json::Value = serde_json::from_str(&ok(&["config", "render"])).unwrap();
    assert_eq!(config["sync"]["cluster"], "tokenward_sync");
    assert_eq!(
        config["sync"]["credential"]["env"],
        "TOKENWARD_PROXY_CREDENTIAL"
    );
    assert!(ok(&["sync", "show"]).contains("tokenward_sync"));
    ok(&["sync", "off"]);
    let config: serde_json::Value = serde_json::from_str(&ok(&["config", "render"])).unwrap();
    assert!(config.get("sync").is_none());
    // Pull mode: the bootstrap alone (json), with the keys of today as its trust anchor.
    let bootstrap: serde_json::Value = serde_json::from_str(&ok(&[
        "config",
        "render",
        "--sync-url",
        "https://cp.example.com:8443",
        "--proxy-credential",
        key,
    ]))
    .unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&ok(&["jwks"])).unwrap();
    assert_eq!(bootstrap["sync"]["trust_anchor"], jwks);
    assert_eq!(bootstrap["sync"]["cluster"], "tokenward_sync");
    assert_eq!(bootstrap["sync"]["authority"], "cp.example.com:8443");
    let (missing, _, err) = run(&[
        "config",
        "render",
        "--format",
        "istio",
        "--sync-url",
        "https://cp",
    ]);
    assert!(!missing && err.contains("proxy credential"), "{err}");
    let istio: serde_json::Value = serde_json::from_str(&ok(&[
        "config",
        "render",
        "--format",
        "istio",
        "--sync-url",
        "https://cp.example.com",
        "--proxy-credential-env",
        "TW_PROXY",
    ]))
    .unwrap();
    let plugin = &istio["items"][0];
    assert_eq!(plugin["kind"], "WasmPlugin");
    assert_eq!(
        plugin["spec"]["pluginConfig"]["sync"]["cluster"],
        "outbound|443||cp.example.com"
    );
    // Nothing reported yet; CSV is for the ledger only.
    assert!(ok(&["usage"]).contains("no usage reported"));
    assert!(ok(&["-o", "csv", "usage", "--by", "model"]).starts_with("model,requests,"));
    assert!(ok(&["-o", "csv", "usage", "--subject", "x"]).starts_with("hour,subject,tenant,"));
    let (refused, _, err) = run(&["-o", "csv", "key", "list"]);
    assert!(!refused && err.contains("-o csv is for `usage`"), "{err}");
    // Fleet-wide quotas: a plan that fails closed, and nothing counted yet.
    ok(&[
        "plan",
        "set",
        "strict",
        "--limit",
        "rpm:requests:minute:10",
        "--unreachable",
        "fail-closed",
        "--rate-limit-headers",
        "near-limit",
    ]);
    let plan: serde_json::Value =
        serde_json::from_str(&ok(&["-o", "json", "plan", "show", "strict"])).unwrap();
    assert_eq!(plan["unreachable"], "fail_closed", "{plan}");
    assert_eq!(plan["rate_limit_headers"], "near_limit", "{plan}");
    assert!(ok(&["plan", "show", "strict"]).contains("rate-limit headers near the limit only"));
    assert!(ok(&["quota", "show", "--subject", "alice"]).contains("no counter"));
    assert_eq!(
        ok(&["-o", "json", "quota", "show", "--tenant", "acme"]).trim(),
        "[]"
    );
    assert!(ok(&["quota", "show"]).contains("no counter"));
    // Budget alerts: thresholds on a limit the catalog has, a webhook with its secret once.
    ok(&[
        "alert", "set", "--plan", "strict", "--limit", "rpm", "--at", "100", "--at", "80",
    ]);
    let (refused, _, err) = run(&[
        "alert", "set", "--plan", "strict", "--limit", "tpm", "--at", "80",
    ]);
    assert!(!refused && err.contains("not found"), "{err}");
    let hook: serde_json::Value = serde_json::from_str(&ok(&[
        "-o",
        "json",
        "alert",
        "webhook",
        "--url",
        "https://hooks.example.com/tw",
    ]))
    .unwrap();
    let secret = hook["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 64);
    let listed = ok(&["alert", "list"]);
    assert!(listed.contains("strict/rpm  at 80%, 100%"), "{listed}");
    assert!(
        listed.contains("webhook: https://hooks.example.com/tw"),
        "{listed}"
    );
    assert!(!listed.contains(secret), "the secret is shown once");
    ok(&["alert", "remove", "--plan", "strict", "--limit", "rpm"]);
    assert!(ok(&["alert", "list"]).contains("no thresholds"));
}

#[test]
fn plan_set_takes_a_spike_setting_whole_and_unrevoke_says_it_lifts_a_suspension() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let mut all = vec!["--dev"];
        all.extend_from_slice(args);
        tokenward(d, &all)
    };
    let (ok, _, err) = run(&["init", "--issuer", "https://x.test", "--audience", "gw"]);
    assert!(ok, "{err}");
    let set = |extra: &[&str]| {
        let mut args = vec![
            "plan",
            "set",
            "watched",
            "--limit",
            "rpm:requests:minute:60",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (ok, _, err) = set(&[
        "--spike-multiple",
        "10",
        "--spike-metric",
        "total_tokens",
        "--spike-min-baseline",
        "1000",
        "--spike-action",
        "suspend",
    ]);
    assert!(ok, "{err}");
    let (_, shown, _) = run(&["-o", "json", "plan", "show", "watched"]);
    let plan: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        plan["spike"],
        serde_json::json!({"multiple": 10, "metric": "total_tokens", "min_baseline": 1000, "action": "suspend"}),
        "{plan}"
    );
    // Without --spike-action a spike only alerts.
    let (ok, _, err) = set(&[
        "--spike-multiple",
        "5",
        "--spike-metric",
        "requests",
        "--spike-min-baseline",
        "20",
    ]);
    assert!(ok, "{err}");
    let (_, shown, _) = run(&["-o", "json", "plan", "show", "watched"]);
    let plan: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(plan["spike"]["action"], "alert", "{plan}");
    // Half a setting, an unknown metric, and a multiple that fires on noise are refused.
    let (ok, _, err) = set(&["--spike-multiple", "10"]);
    assert!(!ok && err.contains("--spike-metric"), "{err}");
    let (ok, _, err) = set(&["--spike-action", "suspend"]);
    assert!(!ok && err.contains("--spike-multiple"), "{err}");
    let (ok, _, err) = set(&[
        "--spike-multiple",
        "10",
        "--spike-metric",
        "tokens",
        "--spike-min-baseline",
        "1",
    ]);
    assert!(!ok && err.contains("total_tokens"), "{err}");
    let (ok, _, err) = set(&[
        "--spike-multiple",
        "1",
        "--spike-metric",
        "requests",
        "--spike-min-baseline",
        "1",
    ]);
    assert!(!ok && err.contains("multiple is 2"), "{err}");
    // Setting the plan again without the flags turns spike detection off.
    let (ok, _, err) = set(&[]);
    assert!(ok, "{err}");
    let (_, shown, _) = run(&["-o", "json", "plan", "show", "watched"]);
    let plan: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert!(plan.get("spike").is_none(), "{plan}");
    let (_, _, help) = run(&["token", "unrevoke", "--help"]);
    assert!(help.contains("suspension after a spend spike"), "{help}");
}

#[test]
fn the_guard_is_set_in_human_units_rendered_into_the_configuration_and_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let mut all = vec!["--dev"];
        all.extend_from_slice(args);
        tokenward(d, &all)
    };
    let ok = |args: &[&str]| {
        let (ok, out, err) = run(args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    ok(&["init", "--issuer", "https://i", "--audience", "gw"]);
    assert!(ok(&["guard", "show"]).contains("20 failed authentications in 60 s"));
    let config: serde_json::Value = serde_json::from_str(&ok(&["config", "render"])).unwrap();
    assert!(config.get("guard").is_none(), "the filter's defaults");
    ok(&[
        "guard",
        "set",
        "--threshold",
        "50",
        "--window",
        "2m",
        "--block",
        "1h",
        "--exempt",
        "10.0.0.0/8",
    ]);
    let config: serde_json::Value = serde_json::from_str(&ok(&["config", "render"])).unwrap();
    assert_eq!(
        config["guard"]["failed_auth"],
        serde_json::json!({"threshold": 50, "window_seconds": 120, "block_seconds": 3600, "exempt": ["10.0.0.0/8"]})
    );
    let (refused, _, err) = run(&["guard", "set", "--block", "30d"]);
    assert!(!refused && err.contains("block_seconds"), "{err}");
    ok(&["guard", "set", "--off"]);
    assert!(ok(&["guard", "show"]).contains("off"));
    let config: serde_json::Value = serde_json::from_str(&ok(&["config", "render"])).unwrap();
    assert_eq!(config["guard"]["failed_auth"]["enabled"], false);
}
