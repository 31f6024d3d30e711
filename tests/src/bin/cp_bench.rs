//! `make bench` (second part): the control plane's figures, one run. Revocation propagation:
//! from a revocation committed by another process (as `tokenward token revoke` does) to the
//! first request Envoy refuses, over many trials, p50 and p99. Configuration size: how long
//! each worker's filter takes to parse and compile a configuration with 10 000 revoked
//! tokens and 1 000 routes (the filter logs it), and how long the control plane takes to
//! render it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::model::Alg;
use tokenward_control_plane::plane::{InitSettings, ProviderSecret, Revocation, TokenRequest};
use tokenward_control_plane::xds::snapshot::SnapshotSettings;
use tokenward_e2e::client::{self, bearer};
use tokenward_e2e::control_plane::{plane, unix_now, Served};
use tokenward_e2e::envoy::{wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::mock_provider::MockProvider;
use tokenward_filter::config::{
    CredentialSource, ModelSource, ProviderConfig, ProviderStyle, RouteConfig,
};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn route(name: &str, prefix: &str) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        path_prefix: prefix.into(),
        methods: vec!["POST".into()],
        required_scopes: vec!["chat".into()],
        model_source: ModelSource::Body,
        provider: Some("openai".into()),
        model_providers: vec![],
        max_body_bytes: 1 << 20,
        allow_query_credential: false,
    }
}

fn main() -> anyhow::Result<()> {
    let trials: usize = std::env::var("BENCH_REVOCATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("tokenward.db");
    let master = MasterKey::generate()?.to_hex();
    let openai = MockProvider::start("openai")?;
    let operator = plane(&db, &master)?;
    operator.init(
        &InitSettings {
            issuer: "https://cp.bench".into(),
            audiences: vec!["gateway".into()],
            alg: Alg::EdDSA,
        },
        unix_now(),
    )?;
    let provider = ProviderConfig {
        name: "openai".into(),
        style: ProviderStyle::Openai,
        cluster: "openai".into(),
        authority: "api.openai.com".into(),
        credential: CredentialSource::Env(String::new()),
        headers: Default::default(),
    };
    operator.put_provider(
        provider,
        ProviderSecret::Sealed(format!("bench-credential-{}", unix_now())),
        unix_now(),
    )?;
    operator.put_route(route("chat", "/v1/chat/completions"), unix_now())?;
    let wasm = wasm_module()?;
    let settings = SnapshotSettings {
        wasm_path: wasm.display().to_string(),
        env_keys: vec![],
        upstream_overrides: [("openai".to_string(), openai.addr)].into(),
        ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
    };
    let _served = Served::start(&db, &master, settings, 0)?;
    let config = EnvoyConfig::shipped_xds()?.with_control_plane(_served.xds, &wasm)?;
    let envoy = Envoy::start(
        config,
        &EnvoyOptions {
            log_level: "info",
            ..EnvoyOptions::default()
        },
    )?;
    let chat = |token: &str| {
        client::send(
            "POST",
            &envoy.url("/v1/chat/completions"),
            &[("authorization", &bearer(token))],
            Some(r#"{"model":"gpt-4o-mini","messages":[]}"#),
        )
    };
    let request = TokenRequest {
        subject: "bench".into(),
        scopes: vec!["chat".into()],
        models: Some(vec!["*".into()]),
        ..TokenRequest::default()
    };

    eprintln!("revocation propagation: {trials} trials…");
    let mut delays = Vec::with_capacity(trials);
    for _ in 0..trials {
        let token = operator.mint_token(&request, unix_now())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while chat(&token.token)?.status != 200 {
            anyhow::ensure!(Instant::now() < deadline, "a fresh token never passed");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Another process's connection, as the CLI's.
        let revoker = plane(&db, &master)?;
        let started = Instant::now();
        revoker.revoke(
            &Revocation::Jti {
                jti: token.jti.clone(),
                expires_at: None,
            },
            unix_now(),
        )?;
        loop {
            if chat(&token.token)?.error_code().as_deref() == Some("token_revoked") {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the revocation never arrived"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));

    eprintln!("a configuration with 10 000 revocations and 1 000 routes…");
    for i in 0..10_000 {
        operator.revoke(
            &Revocation::Jti {
                jti: format!("bulk-{i:05}"),
                expires_at: Some(unix_now() + 3600),
            },
            unix_now(),
        )?;
    }
    for i in 0..1_000 {
        operator.put_route(
            route(&format!("r{i:04}"), &format!("/bulk/{i:04}/")),
            unix_now(),
        )?;
    }
    let started = Instant::now();
    let big = operator.render(unix_now())?;
    let render = started.elapsed();
    let version = big.version.clone().unwrap_or_default();
    let bytes = serde_json::to_vec(&big)?.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let needle = format!("configuration {version} applied in ");
    let applied: Vec<f64> = loop {
        let log = envoy.log();
        let times: Vec<f64> = log
            .lines()
            .filter_map(|l| l.split(&needle).nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse().ok())
            .collect();
        // The canary VM and the worker both apply it.
        if times.len() >= 2 {
            break times;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the large configuration was never applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let worst = applied.iter().cloned().fold(0.0, f64::max);

    println!("\ntokenward control plane, one run: Envoy 1.40 on ADS, one worker, SQLite");
    println!("| measure | value | target |");
    println!("|---|---:|---:|");
    println!(
        "| revocation → first refusal, p50 ({trials} trials) | {:.0} ms | |",
        p50.as_secs_f64() * 1000.0
    );
    println!(
        "| revocation → first refusal, p99 | {:.0} ms | ≤ 1000 ms |",
        p99.as_secs_f64() * 1000.0
    );
    println!("| filter applies 10k revocations + 1k routes ({bytes} bytes), per VM, worst of {} | {worst:.1} ms | ≤ 50 ms |", applied.len());
    println!(
        "| control plane renders it | {:.0} ms | |",
        render.as_secs_f64() * 1000.0
    );
    Ok(())
}
