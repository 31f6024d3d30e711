//! `make demo`: the gateway end to end on this machine, pushed mode. Starts mock providers
//! (OpenAI, Anthropic and Gemini wire formats), the control plane on a fresh SQLite database
//! in `.demo/` (its admin API and ADS, over TLS), and Envoy from `envoy/envoy-xds.yaml` fed by
//! it over mutual TLS. Then it mints a token and walks through a call that passes with the
//! swapped credential, a scope and a model refusal, a quota running out with its 429 headers,
//! and a revocation refused within the second. It stays up with commands to try next until Ctrl-C (DEMO_EXIT=1: exits).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::time::{Duration, Instant};

use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::model::Alg;
use tokenward_control_plane::plane::{InitSettings, ProviderSecret, Revocation, TokenRequest};
use tokenward_control_plane::tls::{dev_certs, TlsFiles};
use tokenward_control_plane::xds::snapshot::SnapshotSettings;
use tokenward_e2e::client::{bearer, send, Reply};
use tokenward_e2e::control_plane::{plane, unix_now, Served};
use tokenward_e2e::envoy::{wasm_module, ClientTls, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::mock_provider::MockProvider;
use tokenward_e2e::setup::{gateway_config, ProviderSecrets, SigningKey, PROVIDERS};
use tokenward_filter::config::{CredentialSource, Metric, PlanConfig};
use tokenward_filter::window::Window;

/// Setting one of these runs the demo against that real provider instead of its mock.
const REAL_KEYS: [(&str, &str); 3] = [
    ("openai", "OPENAI_API_KEY"),
    ("anthropic", "ANTHROPIC_API_KEY"),
    ("gemini", "GEMINI_API_KEY"),
];

fn step(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

fn show(reply: &Reply) {
    println!("    <- {} {}", reply.status, reply.body);
}

fn main() -> anyhow::Result<()> {
    step("Starting mock providers (OpenAI, Anthropic, Gemini wire formats) on loopback");
    let mut providers = Vec::new();
    for (name, _, _) in PROVIDERS {
        let mock = MockProvider::start(name)?;
        println!("    {name:<10} http://{}", mock.addr);
        providers.push(mock);
    }

    step("Setting up the control plane: SQLite in .demo/, a master key, the first signing key");
    let dir = tokenward_e2e::repo_root().join(".demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("tokenward.db");
    let master = MasterKey::generate()?.to_hex();
    write_private(&dir.join("master.key"), &master)?;
    let operator = plane(&db, &master)?;
    let (key, admin) = operator.init(
        &InitSettings {
            issuer: "https://tokenward.demo".into(),
            audiences: vec!["tokenward-gateway".into()],
            alg: Alg::EdDSA,
        },
        unix_now(),
    )?;
    write_private(&dir.join("admin.key"), &admin.key)?;
    println!(
        "    signing key {} (Ed25519); admin API key in .demo/admin.key",
        key.kid
    );
    // The providers, routes and plan the tests use: provider keys sealed in the database.
    let secrets = ProviderSecrets::generate();
    let reference = gateway_config(&[&SigningKey::generate("unused")], &secrets);
    // A provider whose key is in the environment is the real one (its key sealed like the
    // mocks'); the others are the mocks.
    let real: Vec<&str> = REAL_KEYS
        .iter()
        .filter(|(_, var)| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
        .map(|(name, _)| *name)
        .collect();
    for provider in reference.providers {
        let CredentialSource::Inline(mock_secret) = &provider.credential else {
            continue;
        };
        let secret = match REAL_KEYS
            .iter()
            .find(|(name, _)| real.contains(name) && *name == provider.name)
        {
            Some((_, var)) => std::env::var(var)?.trim().to_string(),
            None => mock_secret.clone(),
        };
        operator.put_provider(provider, ProviderSecret::Sealed(secret), unix_now())?;
    }
    for name in &real {
        println!("    {name}: the real provider (its key from the environment, sealed in .demo/); calls cost money");
    }
    for route in reference.routes {
        operator.put_route(route, unix_now())?;
    }
    use tokenward_filter::testing::limit;
    operator.put_plan(
        "demo",
        PlanConfig {
            limits: vec![
                limit("per-minute", Metric::Requests, Window::Minute, 5),
                limit("tokens-per-day", Metric::TotalTokens, Window::Day, 50_000),
            ],
            shadow: false,
            clamp_max_tokens: true,
            default_output_tokens: 1024,
            unreachable: Default::default(),
            rate_limit_headers: Default::default(),
            spike: None,
        },
        unix_now(),
    )?;
    operator.set_default_plan(Some("demo"), unix_now())?;
    println!("    providers openai, anthropic, gemini (keys sealed); 10 routes; plan \"demo\": 5 requests a minute");

    step("Starting the control plane (admin API and ADS) and Envoy fed by it over xDS (Envoy compiles the module: a few seconds)");
    let wasm = wasm_module()?;
    let settings = SnapshotSettings {
        wasm_path: wasm.display().to_string(),
        env_keys: vec![],
        upstream_overrides: PROVIDERS
            .iter()
            .zip(&providers)
            .filter(|((name, _, _), _)| !real.contains(name))
            .map(|((name, _, _), mock)| (name.to_string(), mock.addr))
            .collect(),
        ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
    };
    // As envoy-xds.yaml ships: ADS over mutual TLS, with certificates from `tokenward tls
    // dev-certs` (the admin API is HTTPS under the same CA).
    let certs = dir.join("tls");
    dev_certs::write(&dev_certs::DevCertRequest {
        out: certs.clone(),
        node_ids: vec!["tokenward-gateway-1".into()],
        server_names: vec![dev_certs::SERVER_NAME.into(), "127.0.0.1".into()],
        days: 1,
    })?;
    let tls = TlsFiles {
        cert: dev_certs::server_cert(&certs),
        key: dev_certs::server_key(&certs),
        client_ca: Some(dev_certs::ca_cert(&certs)),
    };
    let served = Served::start_tls(&db, &master, settings, tls)?;
    let envoy_config = EnvoyConfig::shipped_xds()?.with_control_plane_tls(
        served.xds,
        &wasm,
        &ClientTls {
            ca: dev_certs::ca_cert(&certs),
            cert: dev_certs::node_cert(&certs, "tokenward-gateway-1"),
            key: dev_certs::node_key(&certs, "tokenward-gateway-1"),
        },
    )?;
    let envoy = Envoy::start(envoy_config, &EnvoyOptions::default())?;
    println!(
        "    control plane: https://{} (ADS on {}, mutual TLS; certificates in .demo/tls)   gateway: http://127.0.0.1:{}   Envoy admin: http://127.0.0.1:{}",
        served.admin, served.xds, envoy.port, envoy.admin_port
    );

    let alice = TokenRequest {
        subject: "demo-user".into(),
        scopes: vec!["chat".into(), "models".into()],
        models: Some(vec!["gpt-4o*".into(), "claude-3-5-haiku*".into()]),
        ..TokenRequest::default()
    };
    let token = operator.mint_token(&alice, unix_now())?;
    std::fs::write(dir.join("token"), &token.token)?;
    step("Minted a token for demo-user: scopes chat+models, models gpt-4o* and claude-3-5-haiku*, 1 hour");
    println!("    saved in .demo/token (a credential: keep it out of logs and shells' history)");

    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
    let chat = |credential: &str, body: &str| {
        send(
            "POST",
            &envoy.url("/v1/chat/completions"),
            &[("authorization", &bearer(credential))],
            Some(body),
        )
    };
    step("1. A chat completion with the tokenward token");
    println!("    POST /v1/chat/completions  Authorization: Bearer <token>  model gpt-4o-mini");
    // The first configuration may still be on its way to Envoy.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let reply = chat(&token.token, body)?;
        if reply.status != 503 || Instant::now() > deadline {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    show(&reply);
    println!(
        "       x-ratelimit-remaining-requests: {}",
        reply
            .header("x-ratelimit-remaining-requests")
            .unwrap_or("-")
    );
    if real.contains(&"openai") {
        println!("    (the real OpenAI answered: it received its own key, never the token)");
    } else if let Some(r) = providers[0].received().last() {
        let auth = r.header("authorization").unwrap_or_default();
        let shown = if auth == format!("Bearer {}", secrets.get("openai")) {
            "Bearer <the OpenAI key sealed in the control plane>"
        } else {
            "UNEXPECTED"
        };
        println!(
            "    the provider received: Authorization: {shown}; Host: {}",
            r.header("host").unwrap_or_default()
        );
        println!(
            "    the client's token reached the provider: {}",
            if r.contains(&token.token) {
                "YES (bug)"
            } else {
                "no"
            }
        );
    }

    step("2. A token without the chat scope");
    let models_only = operator.mint_token(
        &TokenRequest {
            scopes: vec!["models".into()],
            ..alice.clone()
        },
        unix_now(),
    )?;
    let scope = chat(&models_only.token, body)?;
    show(&scope);

    step("3. The token asks for a model it may not use");
    println!("    POST /v1/chat/completions  model o1-preview");
    let model = chat(&token.token, r#"{"model":"o1-preview","messages":[]}"#)?;
    show(&model);

    step("4. The plan allows 5 requests a minute: keep calling until it says no");
    let mut limited = None;
    for n in 2..=7 {
        let r = chat(&token.token, body)?;
        println!("    request {n}: {}", r.status);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    if let Some(r) = &limited {
        show(r);
        for name in [
            "retry-after",
            "ratelimit-policy",
            "ratelimit",
            "x-ratelimit-remaining-requests",
        ] {
            println!("       {name}: {}", r.header(name).unwrap_or("-"));
        }
    }

    step("5. Revoke a token (as `tokenward token revoke --jti …` does) and call with it");
    let victim = operator.mint_token(
        &TokenRequest {
            subject: "leaked".into(),
            ..alice.clone()
        },
        unix_now(),
    )?;
    let before = chat(&victim.token, body)?;
    println!("    before: {}", before.status);
    let started = Instant::now();
    plane(&db, &master)?.revoke(
        &Revocation::Jti {
            jti: victim.jti.clone(),
            expires_at: None,
        },
        unix_now(),
    )?;
    let revoked = loop {
        let r = chat(&victim.token, body)?;
        if r.status == 401 || started.elapsed() > Duration::from_secs(10) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    show(&revoked);
    println!(
        "    refused {} ms after the revocation was committed",
        started.elapsed().as_millis()
    );

    // demo-user spent its 5 requests of this minute: the commands below use a fresh token,
    // and are tried here first, so they work as printed.
    let yours = operator.mint_token(
        &TokenRequest {
            subject: "you".into(),
            ..alice.clone()
        },
        unix_now(),
    )?;
    std::fs::write(dir.join("token"), &yours.token)?;
    let printed = chat(&yours.token, body)?;
    step("A fresh token for subject \"you\" is in .demo/token now (demo-user used up this minute's plan)");
    println!("    the curl below answers: {}", printed.status);

    let ok = reply.status == 200
        && printed.status == 200
        && scope.status == 403
        && model.status == 403
        && limited.is_some()
        && revoked.error_code().as_deref() == Some("token_revoked");
    if std::env::var("DEMO_EXIT").is_ok_and(|v| v == "1") {
        if !ok {
            eprintln!("Envoy's log:\n{}", envoy.log());
            anyhow::bail!("the demo did not see the expected answers");
        }
        step("Done (DEMO_EXIT=1): stopping Envoy, the control plane and the mock providers");
        drop(served);
        return Ok(());
    }
    step("Everything keeps running. Try it yourself:");
    println!("    curl -s http://127.0.0.1:{}/v1/chat/completions -H \"Authorization: Bearer $(cat .demo/token)\" \\", envoy.port);
    println!("         -H 'content-type: application/json' -d '{body}'");
    let cli = "target/debug/tokenward --data-dir .demo --master-key-file .demo/master.key";
    println!("    {cli} token mint --subject you --scope chat --model 'gpt-4o*'");
    println!("    {cli} token list");
    println!("    {cli} token revoke --subject demo-user");
    println!("    {cli} audit");
    println!(
        "    dashboard: https://{}/ui/ (sign in with the key in .demo/admin.key; the certificate is signed by .demo/tls/ca.crt)",
        served.admin
    );
    println!("    target/debug/tokenward proxy-status --server https://{} --server-ca .demo/tls/ca.crt --admin-key \"$(cat .demo/admin.key)\"", served.admin);
    println!(
        "    curl -s http://127.0.0.1:{}/stats/prometheus | grep tokenward",
        envoy.admin_port
    );
    println!("\nPress Ctrl-C to stop.");
    std::io::stdout().flush()?;
    // Ctrl-C ends the process; Envoy dies with it (PR_SET_PDEATHSIG), the rest are threads.
    loop {
        std::thread::park();
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{text}")?;
    Ok(())
}
