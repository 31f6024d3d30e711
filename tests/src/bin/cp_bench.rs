//! `make bench` (second part): the control plane's figures, one run. Revocation propagation:
//! from a revocation committed by another process (as `tokenward token revoke` does) to the
//! first request Envoy refuses, over many trials, p50 and p99. Configuration size: how long
//! each worker's filter takes to parse and compile a configuration with 10 000 revoked
//! tokens and 1 000 routes (the filter logs it), and how long the control plane takes to
//! render it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::model::{Alg, ApiKeyRecord};
use tokenward_control_plane::plane::{
    ApiKeyRequest, InitSettings, ProviderSecret, Revocation, TokenRequest, SCOPE_ADMIN_READ,
};
use tokenward_control_plane::store::Store;
use tokenward_control_plane::xds::snapshot::SnapshotSettings;
use tokenward_e2e::client::{self, bearer};
use tokenward_e2e::control_plane::{plane, unix_now, Served};
use tokenward_e2e::envoy::{wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::mock_provider::MockProvider;
use tokenward_filter::config::{CredentialSource, ProviderConfig, ProviderStyle, RouteConfig};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn route(name: &str, prefix: &str) -> RouteConfig {
    tokenward_filter::testing::chat_route(name, prefix, "openai")
}

/// `wrk` against `url` with an `Authorization` header: requests per second and p99 latency.
/// Any non-2xx answer is an error: a refused call is not load.
fn wrk_latency(
    url: &str,
    authorization: &str,
    connections: u32,
    seconds: u64,
) -> anyhow::Result<(f64, Duration)> {
    let output = std::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Authorization: {authorization}"),
            url,
        ])
        .output()
        .map_err(|e| anyhow::anyhow!("running wrk (make bench installs it): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (throughput, p99) = tokenward_e2e::wrk::report(&text)?;
    let p99 = p99.ok_or_else(|| anyhow::anyhow!("no 99% latency in wrk's output:\n{text}"))?;
    Ok((throughput, p99))
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

    eprintln!("admin API under load: 10 000 API keys in the database…");
    for i in 0..10_000u32 {
        operator.store().insert_api_key(&ApiKeyRecord {
            id: format!("bulk-{i:05}"),
            sha256: format!("{i:064x}"),
            subject: format!("bulk-{i:05}"),
            tenant: None,
            scopes: vec!["chat".into()],
            models: vec!["*".into()],
            plan: None,
            created_at: unix_now(),
            expires_at: None,
            revoked_at: None,
        })?;
    }
    let admin = operator.create_api_key(
        &ApiKeyRequest {
            subject: "bench-admin".into(),
            tenant: None,
            scopes: vec![SCOPE_ADMIN_READ.into()],
            models: vec![],
            plan: None,
            expires_at: None,
        },
        unix_now(),
    )?;
    let keys_url = format!("http://{}/admin/v1/keys", _served.admin);
    let load = std::thread::spawn(move || {
        wrk_latency(&keys_url, &format!("Bearer {}", admin.key), 32, 10)
    });
    // Revocations during that load, through Envoy as before.
    std::thread::sleep(Duration::from_secs(2));
    let mut under_load = Vec::new();
    while !load.is_finished() && under_load.len() < 5 {
        let token = operator.mint_token(&request, unix_now())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while chat(&token.token)?.status != 200 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "a fresh token never passed under load"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = Instant::now();
        plane(&db, &master)?.revoke(
            &Revocation::Jti {
                jti: token.jti.clone(),
                expires_at: None,
            },
            unix_now(),
        )?;
        while chat(&token.token)?.error_code().as_deref() != Some("token_revoked") {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the revocation never arrived under load"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        under_load.push(started.elapsed());
    }
    let (throughput, admin_p99) = load
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    let worst_under_load = under_load.iter().max().copied().unwrap_or_default();

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
    println!("| admin API, authenticated GET /admin/v1/keys, 32 connections, 10k API keys + 10k revocations + 1k routes: throughput | {throughput:.0} req/s | ≥ 2000 req/s |");
    println!(
        "| same, p99 | {:.1} ms | ≤ 20 ms |",
        admin_p99.as_secs_f64() * 1000.0
    );
    println!(
        "| revocation → first refusal during that load, worst of {} | {:.0} ms | ≤ 1000 ms |",
        under_load.len(),
        worst_under_load.as_secs_f64() * 1000.0
    );
    Ok(())
}
