//! `make bench`: one Envoy worker, loopback load from wrk, every variant in one run so the
//! ratios compare (absolute figures swing between runs on a shared machine). Variants:
//! no filter; Envoy's native `jwt_authn` verifying the same EdDSA key on every request;
//! tokenward hot (one token repeated: the verified-token cache answers); the same with a quota
//! plan (a request limit counted in shared data, a token limit read); the same plan held
//! across a fleet (a control plane answering the filter's reports with allowances); tokenward
//! cold (a
//! new token per request from a pre-generated set larger than the cache). Every variant
//! answers with a direct response, so what is measured is the filter, not an upstream.
//! `BENCH_FLOOR_WASM=<a module that does nothing>` adds the floor of any Wasm filter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use tokenward_e2e::envoy::{wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::setup::{
    gateway_config, ProviderSecrets, SigningKey, TokenSpec, AUDIENCE, ISSUER,
};
use tokenward_filter::config::{Metric, PlanConfig};
use tokenward_filter::window::Window;

const PATH: &str = "/v1/models";

struct Settings {
    seconds: u64,
    connections: u32,
    cold_tokens: usize,
}

fn settings() -> Settings {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Settings {
        seconds: var("BENCH_SECONDS", 10),
        connections: var("BENCH_CONNECTIONS", 16) as u32,
        cold_tokens: var("BENCH_COLD_TOKENS", 30_000) as usize,
    }
}

fn main() -> anyhow::Result<()> {
    let s = settings();
    let wasm = wasm_module()?;
    let module_bytes = std::fs::metadata(&wasm)?.len();
    let dir = tempfile::tempdir()?;
    let key = SigningKey::generate("bench");
    let secrets = ProviderSecrets::generate();
    let mut config = gateway_config(&[&key], &secrets);
    config.cache.max_entries = 10_000;
    let filter_json = serde_json::to_string(&config)?;
    // The same with a plan on every credential: a request limit counted in shared data on
    // every request, a token limit read for the headers, rate-limit headers on every answer.
    let limit = |name: &str, metric, window| {
        tokenward_filter::testing::limit(name, metric, window, 1_000_000_000_000)
    };
    config.plans.insert(
        "bench".into(),
        PlanConfig {
            limits: vec![
                limit("rpm", Metric::Requests, Window::Minute),
                limit("tpd", Metric::TotalTokens, Window::Day),
            ],
            shadow: false,
            clamp_max_tokens: false,
            default_output_tokens: 1024,
            unreachable: Default::default(),
            spike: None,
        },
    );
    config.default_plan = Some("bench".into());
    let quota_json = serde_json::to_string(&config)?;
    // The same plan held across a fleet: a control plane (over Postgres) the filter reports
    // to every second and that answers with the allowances the request path counts against.
    let fleet = tokenward_e2e::fleet::Fleet::create();
    let operator = fleet.operator();
    let now = tokenward_e2e::control_plane::unix_now();
    operator.put_plan("bench", config.plans["bench"].clone(), now)?;
    let proxy_credential = tokenward_e2e::fleet::proxy_credential(&operator);
    let replica = fleet.replica("bench");
    config.sync = Some(tokenward_filter::config::SyncConfig {
        cluster: "tokenward_sync".into(),
        authority: None,
        credential: tokenward_filter::config::CredentialSource::Inline(proxy_credential),
        report_interval_ms: 1000,
        max_staleness_seconds: 300,
        trust_anchor: Default::default(),
    });
    let fleet_json = serde_json::to_string(&config)?;
    let spec = TokenSpec {
        scopes: vec!["models".into()],
        ..TokenSpec::default()
    };

    let hot_token = key.mint(&spec);
    eprintln!("minting {} tokens for the cold run…", s.cold_tokens);
    let cold: Vec<String> = (0..s.cold_tokens)
        .map(|i| {
            key.mint(&TokenSpec {
                jti: format!("cold-{i}"),
                ..spec.clone()
            })
        })
        .collect();
    let tokens_file = dir.path().join("tokens.txt");
    std::fs::write(&tokens_file, cold.join("\n"))?;
    let hot_script = write_script(
        dir.path(),
        "hot.lua",
        &format!("wrk.method = \"GET\"\nwrk.headers[\"Authorization\"] = \"Bearer {hot_token}\"\n"),
    )?;
    let cold_script = write_script(dir.path(), "cold.lua", &format!(
        "local tokens = {{}}\n\
         for line in io.lines(\"{}\") do tokens[#tokens + 1] = line end\n\
         local i = 0\n\
         request = function()\n\
           i = i + 1\n\
           if i > #tokens then i = 1 end\n\
           return wrk.format(\"GET\", \"{PATH}\", {{[\"Authorization\"] = \"Bearer \" .. tokens[i]}})\n\
         end\n",
        tokens_file.display()
    ))?;

    let base = EnvoyConfig::shipped()?
        .with_wasm(&wasm)?
        .with_direct_response(200, "ok")?;
    let jwks = key.public_jwks_json();
    let jwt_authn = serde_yaml::to_value(serde_json::json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"tokenward": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "local_jwks": {"inline_string": jwks},
                "forward": false
            }},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "tokenward"}}]
        }
    }))?;

    let mut variants: Vec<(&str, EnvoyConfig, Option<&Path>)> = vec![
        (
            "no filter",
            base.clone().replace_tokenward_filter(vec![])?,
            None,
        ),
        (
            "native jwt_authn (EdDSA, every request)",
            base.clone().replace_tokenward_filter(vec![jwt_authn])?,
            Some(&hot_script),
        ),
        (
            "tokenward hot (one token, cached)",
            base.clone().with_filter_config(&filter_json)?,
            Some(&hot_script),
        ),
        (
            "tokenward hot with quotas (request + token limit)",
            base.clone().with_filter_config(&quota_json)?,
            Some(&hot_script),
        ),
        (
            "tokenward hot with quotas, fleet allowances on",
            base.clone()
                .with_filter_config(&fleet_json)?
                .with_cluster("tokenward_sync", replica.admin)?,
            Some(&hot_script),
        ),
        (
            "tokenward cold (new token per request)",
            base.clone().with_filter_config(&filter_json)?,
            Some(&cold_script),
        ),
    ];

    // BENCH_FLOOR_WASM=<module that does nothing> adds the floor of any Wasm filter here.
    if let Ok(floor) = std::env::var("BENCH_FLOOR_WASM") {
        let floor = std::fs::canonicalize(floor)?;
        let config = EnvoyConfig::shipped()?
            .with_wasm(&floor)?
            .with_direct_response(200, "ok")?;
        variants.insert(
            1,
            (
                "empty Wasm filter (floor)",
                config.without_filter_config()?,
                None,
            ),
        );
    }

    // BENCH_BASELINE_WASM=<an earlier build of the module> adds its hot variants, so a change
    // is compared with what it changes in the same run.
    if let Ok(baseline) = std::env::var("BENCH_BASELINE_WASM") {
        let baseline = std::fs::canonicalize(baseline)?;
        let base = EnvoyConfig::shipped()?
            .with_wasm(&baseline)?
            .with_direct_response(200, "ok")?;
        variants.push((
            "baseline module hot (one token, cached)",
            base.clone().with_filter_config(&filter_json)?,
            Some(&hot_script),
        ));
        variants.push((
            "baseline module hot with quotas (request + token limit)",
            base.with_filter_config(&quota_json)?,
            Some(&hot_script),
        ));
    }

    // BENCH_ONLY=<text> runs only the variants whose name contains it (for experiments; the
    // ratios need the baselines in the same run).
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        variants.retain(|(name, _, _)| name.contains(only.as_str()));
    }
    let mut results = Vec::new();
    for (name, envoy_config, script) in variants {
        let envoy = Envoy::start(
            envoy_config,
            &EnvoyOptions {
                log_level: "warning",
                ..EnvoyOptions::default()
            },
        )?;
        // Check the variant answers as intended before measuring it.
        let auth = format!("Bearer {hot_token}");
        let probe = tokenward_e2e::client::send(
            "GET",
            &envoy.url(PATH),
            &[("authorization", auth.as_bytes())],
            None,
        )?;
        if probe.status != 200 {
            bail!("{name}: probe answered {} {}", probe.status, probe.body);
        }
        let rps = wrk(&envoy.url(PATH), script, 2, s.connections)?; // warm-up
        let _ = rps;
        let rps = wrk(&envoy.url(PATH), script, s.seconds, s.connections)?;
        eprintln!("{name}: {rps:.0} req/s");
        results.push((name, rps));
    }

    let get = |prefix: &str| {
        results
            .iter()
            .find(|(n, _)| n.starts_with(prefix))
            .map(|(_, r)| *r)
            .unwrap_or(f64::NAN)
    };
    let (none, jwt, hot, quotas, fleet_quotas, cold) = (
        get("no filter"),
        get("native"),
        get("tokenward hot (one"),
        get("tokenward hot with quotas (request"),
        get("tokenward hot with quotas, fleet"),
        get("tokenward cold"),
    );
    println!(
        "\ntokenward benchmark: 1 Envoy worker, wrk -t1 -c{} -d{}s, direct response, one run",
        s.connections, s.seconds
    );
    println!("| variant | req/s | vs jwt_authn | vs no filter |");
    println!("|---|---:|---:|---:|");
    for (name, rps) in &results {
        println!(
            "| {name} | {rps:.0} | {:.2}x | {:.2}x |",
            rps / jwt,
            rps / none
        );
    }
    println!(
        "\nmodule: dist/tokenward.wasm {module_bytes} bytes (target <= 400 KB = 409600 bytes)"
    );
    println!(
        "targets: hot >= 2.5x jwt_authn: {:.2}x {}",
        hot / jwt,
        verdict(hot / jwt >= 2.5)
    );
    println!(
        "         hot with quotas >= 2.5x jwt_authn: {:.2}x {}",
        quotas / jwt,
        verdict(quotas / jwt >= 2.5)
    );
    println!(
        "         hot with quotas, fleet allowances on >= 0.95x local counting: {:.2}x {}",
        fleet_quotas / quotas,
        verdict(fleet_quotas / quotas >= 0.95)
    );
    println!(
        "         hot >= 0.5x no filter: {:.2}x {}",
        hot / none,
        verdict(hot / none >= 0.5)
    );
    println!(
        "         cold >= 0.5x jwt_authn: {:.2}x {}",
        cold / jwt,
        verdict(cold / jwt >= 0.5)
    );
    println!(
        "         module <= 400 KB: {} {}",
        module_bytes,
        verdict(module_bytes <= 409_600)
    );
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn write_script(dir: &Path, name: &str, text: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs wrk and returns requests per second; fails if any answer was not a 2xx.
fn wrk(url: &str, script: Option<&Path>, seconds: u64, connections: u32) -> anyhow::Result<f64> {
    let mut command = Command::new("wrk");
    command.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command
        .arg(url)
        .output()
        .context("running wrk (make bench installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(tokenward_e2e::wrk::report(&text)?.0)
}
