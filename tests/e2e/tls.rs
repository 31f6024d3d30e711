//! The control plane over TLS, as envoy/envoy-xds.yaml ships: a real Envoy gets its
//! configuration over mutual TLS and carries traffic; an Envoy whose client certificate names
//! another node is refused and keeps failing closed, with nothing recorded for it; the admin API
//! (and `tokenward proxy-status`) answer over HTTPS only. Certificates are made per run.

use std::path::Path;
use std::time::{Duration, Instant};

use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::model::Alg;
use tokenward_control_plane::plane::{InitSettings, ProviderSecret, TokenRequest};
use tokenward_control_plane::tls::dev_certs::{self, DevCertRequest};
use tokenward_control_plane::tls::TlsFiles;
use tokenward_control_plane::xds::snapshot::SnapshotSettings;
use tokenward_e2e::client::{self, bearer};
use tokenward_e2e::control_plane::Served;
use tokenward_e2e::envoy::{wasm_module, ClientTls, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::mock_provider::MockProvider;
use tokenward_filter::config::ProviderStyle;

use crate::xds::{chat, eventually, now, plane, provider, route};

fn client_tls(dir: &Path, node_id: &str) -> ClientTls {
    ClientTls {
        ca: dev_certs::ca_cert(dir),
        cert: dev_certs::node_cert(dir, node_id),
        key: dev_certs::node_key(dir, node_id),
    }
}

#[test]
fn envoy_gets_its_configuration_over_mutual_tls_and_a_certificate_for_another_node_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tokenward.db");
    let master = MasterKey::generate().unwrap().to_hex();
    let secrets = tokenward_e2e::setup::ProviderSecrets::generate();
    let openai = MockProvider::start("openai").unwrap();
    let operator = plane(&db, &master);
    let (_, admin_key) = operator
        .init(
            &InitSettings {
                issuer: "https://cp.test".into(),
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

    // What an operator makes with `tokenward tls dev-certs`: a CA, the server's certificate
    // (the name the shipped bootstrap checks, and 127.0.0.1), and two node certificates.
    let certs = dir.path().join("tls");
    dev_certs::write(&DevCertRequest {
        out: certs.clone(),
        node_ids: vec!["tokenward-gateway-1".into(), "tokenward-gateway-3".into()],
        server_names: vec![dev_certs::SERVER_NAME.into(), "127.0.0.1".into()],
        days: 1,
    })
    .unwrap();
    let wasm = wasm_module().unwrap();
    let settings = SnapshotSettings {
        wasm_path: wasm.display().to_string(),
        env_keys: vec![],
        upstream_overrides: [("openai".to_string(), openai.addr)].into(),
        ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
    };
    let served = Served::start_tls(
        &db,
        &master,
        settings,
        TlsFiles {
            cert: dev_certs::server_cert(&certs),
            key: dev_certs::server_key(&certs),
            client_ca: Some(dev_certs::ca_cert(&certs)),
        },
    )
    .unwrap();

    // The impostor says it is tokenward-gateway-2 but holds tokenward-gateway-3's certificate.
    // Refused at its first request, it waits out its initial fetch timeouts (shortened here)
    // before it serves.
    let impostor = EnvoyConfig::shipped_xds()
        .unwrap()
        .with_node_id("tokenward-gateway-2")
        .with_control_plane_tls(
            served.xds,
            &wasm,
            &client_tls(&certs, "tokenward-gateway-3"),
        )
        .unwrap()
        .with_initial_fetch_timeout("1s")
        .unwrap();
    let config = EnvoyConfig::shipped_xds()
        .unwrap()
        .with_control_plane_tls(
            served.xds,
            &wasm,
            &client_tls(&certs, "tokenward-gateway-1"),
        )
        .unwrap();
    let envoy = Envoy::start(config, &EnvoyOptions::default()).unwrap();
    let ok = eventually(
        "the first configuration over mutual TLS",
        || chat(&envoy, &token.token),
        |r| r.status == 200,
    );
    assert!(ok.body.contains("chat.completion"), "{}", ok.body);
    assert_eq!(
        openai.received().last().unwrap().header("authorization"),
        Some(format!("Bearer {}", secrets.get("openai")))
    );

    let impostor = Envoy::start(impostor, &EnvoyOptions::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Envoy logs the gRPC status (7: PERMISSION_DENIED) with its message percent-encoded.
    let refusal = |log: &str| {
        log.contains("closed: 7, ") && log.contains("not%20named%20by%20the%20client%20certificate")
    };
    while !refusal(&impostor.log()) {
        assert!(
            Instant::now() < deadline,
            "the refusal reaches the impostor's log:\n{}",
            impostor.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = chat(&impostor, &token.token);
    assert_eq!(
        (refused.status, refused.error_code().as_deref()),
        (503, Some("not_configured")),
        "the impostor fails closed: {}",
        refused.body
    );

    // The admin API over HTTPS, trusting the test's CA: the real node ACKed everything, the
    // impostor left no entry under either name.
    let https = client::tls_client(&dev_certs::ca_cert(&certs)).unwrap();
    let proxies_url = format!("https://{}/admin/v1/proxies", served.admin);
    let proxies = client::send_with(
        &https,
        "GET",
        &proxies_url,
        &[("authorization", &bearer(&admin_key.key))],
        None,
    )
    .unwrap()
    .json();
    for kind in ["ecds", "cds", "rds"] {
        assert!(
            proxies["tokenward-gateway-1"]["acked"][kind].is_string(),
            "{kind}: {proxies}"
        );
    }
    for impostor_name in ["tokenward-gateway-2", "tokenward-gateway-3"] {
        assert!(proxies.get(impostor_name).is_none(), "{proxies}");
    }
    // `tokenward proxy-status` speaks HTTPS too.
    let cli = <tokenward_control_plane::cli::Cli as clap::Parser>::try_parse_from([
        "tokenward",
        "proxy-status",
        "--server",
        &format!("https://{}", served.admin),
        "--server-ca",
        dev_certs::ca_cert(&certs).to_str().unwrap(),
        "--admin-key",
        &admin_key.key,
    ])
    .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    tokenward_control_plane::cli::run(&cli, &mut out, &mut err).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("tokenward-gateway-1 (tokenward-gateway) connected")
            && !text.contains("tokenward-gateway-2"),
        "{text}"
    );
    // Plain HTTP on the admin port gets no answer.
    let plain = client::send(
        "GET",
        &format!("http://{}/admin/v1/proxies", served.admin),
        &[("authorization", &bearer(&admin_key.key))],
        None,
    );
    assert!(plain.is_err(), "{plain:?}");

    // Still refused a while later (Envoy retried), and still fail-closed.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(chat(&impostor, &token.token).status, 503);
    assert_eq!(chat(&envoy, &token.token).status, 200);
}
