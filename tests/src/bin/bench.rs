//! `make bench`: one Envoy worker, loopback load, every variant in one run so the ratios
//! compare (absolute figures swing between runs on a shared machine). Throughput (wrk) of:
//! no filter; the floor of any Wasm filter (a module that does nothing, dist/floor.wasm,
//! which `make bench` builds); Envoy's native `jwt_authn` verifying every request, with an
//! EdDSA key and with an ES256 one; tokenward hot (one token repeated: the verified-token
//! cache answers); the same with a quota plan (a request limit counted in shared data, a
//! token limit read, rate-limit headers); the same plan held across a fleet (a control plane
//! answering the filter's reports with allowances); tokenward cold (a new token per request
//! from a pre-generated set larger than the cache), EdDSA and ES256. These answer with a
//! direct response, so what is measured is the filter, not an upstream. Then the latency
//! tokenward adds at a fixed rate (half the no-filter throughput), a 2 MB SSE stream's
//! throughput through it from an upstream, and the worker's memory with 100 000 tokens
//! cached. Every figure is printed against the issue's targets.
//!
//! `BENCH_FLOOR_WASM` replaces the floor module, `BENCH_BASELINE_WASM=<an earlier build>` adds
//! its hot variants, `BENCH_ONLY=<text>[,<text>…]` runs only the throughput variants whose name
//! has one of them (and skips the rest); `BENCH_SECONDS` is each measurement's length.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use tokenward_e2e::envoy::{http_get, wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::load::{self, Latencies};
use tokenward_e2e::setup::{
    gateway_config, ProviderSecrets, SigningKey, TokenSpec, AUDIENCE, ISSUER,
};
use tokenward_e2e::streaming::{self, SseUpstream};

const PATH: &str = "/v1/models";
/// The issue's module budget: 400 000 bytes, not 400 KiB.
const MODULE_BUDGET: u64 = 400_000;
const P99_ADDED_BUDGET: Duration = Duration::from_micros(150);
const MEMORY_BUDGET_BYTES: u64 = 16 * 1024 * 1024;

struct Settings {
    seconds: u64,
    connections: u32,
    cold_tokens: usize,
    memory_tokens: usize,
    stream_connections: usize,
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
        memory_tokens: var("BENCH_MEMORY_TOKENS", 100_000) as usize,
        stream_connections: var("BENCH_STREAM_CONNECTIONS", 4) as usize,
    }
}

/// Which figure a variant is: the targets and the ratios look variants up by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NoFilter,
    Floor,
    /// The floor making the host calls tokenward makes for a cached token.
    FloorHostCalls,
    /// The floor making the host calls tokenward makes for a cached token under a plan.
    FloorQuotaCalls,
    JwtAuthnEddsa,
    JwtAuthnEs256,
    Hot,
    HotQuotas,
    HotQuotasFleet,
    /// The quota plan with `rate_limit_headers: near_limit`, far from its limits.
    HotQuotasNearLimit,
    ColdEddsa,
    ColdEs256,
    Baseline,
}

impl Kind {
    /// The `jwt_authn` a variant is compared with: the one verifying the same algorithm.
    fn jwt_authn(self) -> Kind {
        match self {
            Kind::JwtAuthnEs256 | Kind::ColdEs256 => Kind::JwtAuthnEs256,
            _ => Kind::JwtAuthnEddsa,
        }
    }

    /// Whether the latency it adds over no filter is measured at a fixed rate.
    fn latency(self) -> bool {
        matches!(self, Kind::NoFilter | Kind::Hot | Kind::HotQuotas)
    }
}

struct Variant {
    kind: Kind,
    name: &'static str,
    config: EnvoyConfig,
    /// The wrk script (its Authorization header) and the token a probe checks the variant
    /// with before it is measured.
    script: PathBuf,
    probe_token: String,
}

struct Measured {
    kind: Kind,
    name: &'static str,
    rps: f64,
    /// Envoy's CPU time (every thread) per request while wrk measured: steadier than
    /// throughput when other work shares the machine, since wrk's own time is not in it.
    cpu_micros: f64,
    latency: Option<Latencies>,
}

fn main() -> anyhow::Result<()> {
    let s = settings();
    let only = std::env::var("BENCH_ONLY").ok();
    let wasm = wasm_module()?;
    let module_bytes = std::fs::metadata(&wasm)?.len();
    let floor_wasm = floor_module()?;
    let dir = tempfile::tempdir()?;
    let key = SigningKey::generate("bench");
    let es_key = SigningKey::generate_es256("bench-es256");
    let secrets = ProviderSecrets::generate();
    let mut config = gateway_config(&[&key, &es_key], &secrets);
    config.cache.max_entries = 10_000;
    let filter_json = serde_json::to_string(&config)?;
    // The worker's memory with this many tokens cached: a cache that holds them all.
    let mut memory_config = config.clone();
    memory_config.cache.max_entries = s.memory_tokens.max(10_000);
    let memory_json = serde_json::to_string(&memory_config)?;
    // The control: the same tokens with the cache off, for what Envoy and the VM grow by
    // serving them at all (connections, allocator pools), which is not the cache's.
    memory_config.cache.max_entries = 0;
    let uncached_json = serde_json::to_string(&memory_config)?;
    // The same with a plan on every credential: a request limit counted in shared data on
    // every request, a token limit read for the headers, rate-limit headers on every answer.
    config
        .plans
        .insert("bench".into(), tokenward_e2e::setup::bench_plan());
    config.default_plan = Some("bench".into());
    let quota_json = serde_json::to_string(&config)?;
    // The same plan sending its rate-limit headers only near the limit (none here: far from it).
    let mut near_limit = config.clone();
    if let Some(plan) = near_limit.plans.get_mut("bench") {
        plan.rate_limit_headers = tokenward_filter::config::RateLimitHeaders::NearLimit;
    }
    let near_limit_json = serde_json::to_string(&near_limit)?;
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
    let hot_es_token = es_key.mint(&spec);
    // Each token as the control plane mints them (a 32-hex-digit jti) for a subject of its
    // own: the most a cached token costs, since nothing is shared but the grants.
    let distinct = |key: &SigningKey, count: usize| -> Vec<String> {
        (0..count)
            .map(|i| {
                key.mint(&TokenSpec {
                    jti: format!("{i:032x}"),
                    subject: format!("user-{i:06}"),
                    ..spec.clone()
                })
            })
            .collect()
    };
    let wants = |text: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|o| text.contains(o)))
    };
    // The memory figure's tokens are the cold run's and more.
    let eddsa_count = if wants("memory") {
        s.cold_tokens.max(s.memory_tokens)
    } else {
        s.cold_tokens
    };
    eprintln!(
        "minting {eddsa_count} EdDSA and {} ES256 tokens…",
        s.cold_tokens
    );
    let cold = distinct(&key, eddsa_count);
    let cold_es = distinct(&es_key, s.cold_tokens);
    let hot_script = write_hot_script(dir.path(), "hot.lua", &hot_token)?;
    let hot_es_script = write_hot_script(dir.path(), "hot-es256.lua", &hot_es_token)?;
    let cold_script = write_cold_script(dir.path(), "cold", &cold[..s.cold_tokens])?;
    let cold_es_script = write_cold_script(dir.path(), "cold-es256", &cold_es)?;

    let base = EnvoyConfig::shipped()?
        .with_wasm(&wasm)?
        .with_direct_response(200, "ok")?;
    let floor = EnvoyConfig::shipped()?
        .with_wasm(&floor_wasm)?
        .with_direct_response(200, "ok")?
        .without_filter_config()?;
    let variant = |kind, name, config, script: &Path, probe_token: &str| Variant {
        kind,
        name,
        config,
        script: script.to_path_buf(),
        probe_token: probe_token.to_string(),
    };
    let mut variants = vec![
        // Every variant sends the same request (a bearer token in the header), filter or not.
        variant(
            Kind::NoFilter,
            "no filter",
            base.clone().replace_tokenward_filter(vec![])?,
            &hot_script,
            &hot_token,
        ),
        variant(
            Kind::Floor,
            "empty Wasm filter (floor)",
            floor,
            &hot_script,
            &hot_token,
        ),
        variant(
            Kind::FloorHostCalls,
            "empty Wasm filter making tokenward's host calls",
            EnvoyConfig::shipped()?
                .with_wasm(&floor_wasm)?
                .with_direct_response(200, "ok")?
                .with_filter_config("swap-headers")?,
            &hot_script,
            &hot_token,
        ),
        variant(
            Kind::FloorQuotaCalls,
            "empty Wasm filter making tokenward's host calls under a quota plan",
            EnvoyConfig::shipped()?
                .with_wasm(&floor_wasm)?
                .with_direct_response(200, "ok")?
                .with_filter_config("quota-calls")?,
            &hot_script,
            &hot_token,
        ),
        variant(
            Kind::JwtAuthnEddsa,
            "native jwt_authn (EdDSA, every request)",
            base.clone()
                .replace_tokenward_filter(vec![jwt_authn(&key)?])?,
            &hot_script,
            &hot_token,
        ),
        variant(
            Kind::JwtAuthnEs256,
            "native jwt_authn (ES256, every request)",
            base.clone()
                .replace_tokenward_filter(vec![jwt_authn(&es_key)?])?,
            &hot_es_script,
            &hot_es_token,
        ),
        variant(
            Kind::Hot,
            "tokenward hot (one token, cached)",
            base.clone().with_filter_config(&filter_json)?,
            &hot_script,
            &hot_token,
        ),
        variant(
            Kind::HotQuotas,
            "tokenward hot with quotas (request + token limit)",
            base.clone().with_filter_config(&quota_json)?,
            &hot_script,
            &hot_token,
        ),
        variant(
            Kind::HotQuotasNearLimit,
            "tokenward hot with quotas, rate-limit headers near the limit only",
            base.clone().with_filter_config(&near_limit_json)?,
            &hot_script,
            &hot_token,
        ),
        variant(
            Kind::HotQuotasFleet,
            "tokenward hot with quotas, fleet allowances on",
            base.clone()
                .with_filter_config(&fleet_json)?
                .with_cluster("tokenward_sync", replica.admin)?,
            &hot_script,
            &hot_token,
        ),
        variant(
            Kind::ColdEddsa,
            "tokenward cold, EdDSA (new token per request)",
            base.clone().with_filter_config(&filter_json)?,
            &cold_script,
            &hot_token,
        ),
        variant(
            Kind::ColdEs256,
            "tokenward cold, ES256 (new token per request)",
            base.clone().with_filter_config(&filter_json)?,
            &cold_es_script,
            &hot_es_token,
        ),
    ];

    // BENCH_BASELINE_WASM=<an earlier build of the module> adds its hot variants, so a change
    // is compared with what it changes in the same run.
    if let Ok(baseline) = std::env::var("BENCH_BASELINE_WASM") {
        let baseline = std::fs::canonicalize(baseline)?;
        let base = EnvoyConfig::shipped()?
            .with_wasm(&baseline)?
            .with_direct_response(200, "ok")?;
        variants.push(variant(
            Kind::Baseline,
            "baseline module hot (one token, cached)",
            base.clone().with_filter_config(&filter_json)?,
            &hot_script,
            &hot_token,
        ));
        variants.push(variant(
            Kind::Baseline,
            "baseline module hot with quotas (request + token limit)",
            base.with_filter_config(&quota_json)?,
            &hot_script,
            &hot_token,
        ));
    }

    // BENCH_ONLY=<text>[,<text>…] runs only the variants whose name contains one of them (for
    // experiments; the ratios need the baselines in the same run).
    variants.retain(|v| wants(v.name));
    let mut results: Vec<Measured> = Vec::new();
    let mut fixed_rate = None;
    for v in variants {
        let envoy = start(v.config)?;
        probe(&envoy, v.name, &v.probe_token)?;
        wrk(&envoy.url(PATH), &v.script, 2, s.connections)?; // warm-up
        let cpu_before = cpu_seconds(envoy.pid())?;
        let rps = wrk(&envoy.url(PATH), &v.script, s.seconds, s.connections)?;
        let cpu_micros = (cpu_seconds(envoy.pid())? - cpu_before) * 1e6 / (rps * s.seconds as f64);
        eprintln!(
            "{}: {rps:.0} req/s, Envoy CPU {cpu_micros:.1} µs/request",
            v.name
        );
        if v.kind == Kind::NoFilter {
            fixed_rate = Some(rps / 2.0);
        }
        let latency = match fixed_rate {
            Some(rate) if v.kind.latency() => {
                let request = load::get_request(PATH, &hot_token);
                let l = load::fixed_rate(
                    envoy.addr(),
                    &request,
                    rate,
                    Duration::from_secs(s.seconds),
                    s.connections as usize,
                )?;
                eprintln!(
                    "{} at {rate:.0} req/s: p50 {:?} p99 {:?} ({} late of {})",
                    v.name,
                    l.percentile(50.0),
                    l.percentile(99.0),
                    l.late,
                    l.count()
                );
                Some(l)
            }
            _ => None,
        };
        results.push(Measured {
            kind: v.kind,
            name: v.name,
            rps,
            cpu_micros,
            latency,
        });
    }

    let streams = if wants("stream") || only.is_none() {
        // The default token's scopes include chat.
        let chat_token = key.mint(&TokenSpec::default());
        Some(stream_throughput(
            &s,
            &wasm,
            &floor_wasm,
            &filter_json,
            &chat_token,
        )?)
    } else {
        None
    };
    let memory = if wants("memory") || only.is_none() {
        let tokens = &cold[..s.memory_tokens.min(cold.len())];
        let mut cached = memory_with_cached_tokens(&wasm, &memory_json, &hot_token, tokens)?;
        let uncached = memory_with_cached_tokens(&wasm, &uncached_json, &hot_token, tokens)?;
        cached.uncached_delta = Some(uncached.rss_after.saturating_sub(uncached.rss_before));
        Some(cached)
    } else {
        None
    };

    report(
        &s,
        &results,
        fixed_rate,
        module_bytes,
        streams.as_ref(),
        memory.as_ref(),
    );
    Ok(())
}

/// dist/floor.wasm, which `make bench` builds (`BENCH_FLOOR_WASM` may name another).
fn floor_module() -> anyhow::Result<PathBuf> {
    let path = match std::env::var("BENCH_FLOOR_WASM") {
        Ok(path) => PathBuf::from(path),
        Err(_) => tokenward_e2e::repo_root().join("dist/floor.wasm"),
    };
    if !path.is_file() {
        bail!(
            "{} is missing: `make bench` builds it (or run `bash scripts/build-wasm.sh tokenward-bench-floor floor`)",
            path.display()
        );
    }
    Ok(std::fs::canonicalize(path)?)
}

fn start(config: EnvoyConfig) -> anyhow::Result<Envoy> {
    Envoy::start(
        config,
        &EnvoyOptions {
            log_level: "warning",
            ..EnvoyOptions::default()
        },
    )
}

/// Checks the variant answers as intended before measuring it.
fn probe(envoy: &Envoy, name: &str, token: &str) -> anyhow::Result<()> {
    let auth = format!("Bearer {token}");
    let probe = tokenward_e2e::client::send(
        "GET",
        &envoy.url(PATH),
        &[("authorization", auth.as_bytes())],
        None,
    )?;
    if probe.status != 200 {
        bail!("{name}: probe answered {} {}", probe.status, probe.body);
    }
    Ok(())
}

/// Envoy's native JWT filter verifying `key`'s tokens on every request (no JWT cache).
fn jwt_authn(key: &SigningKey) -> anyhow::Result<serde_yaml::Value> {
    Ok(serde_yaml::to_value(serde_json::json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"tokenward": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "local_jwks": {"inline_string": key.public_jwks_json()},
                "forward": false
            }},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "tokenward"}}]
        }
    }))?)
}

fn write_hot_script(dir: &Path, name: &str, token: &str) -> anyhow::Result<PathBuf> {
    write_file(
        dir,
        name,
        &format!("wrk.method = \"GET\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"),
    )
}

/// A wrk script sending the tokens in turn, one per request.
fn write_cold_script(dir: &Path, name: &str, tokens: &[String]) -> anyhow::Result<PathBuf> {
    let tokens_file = write_file(dir, &format!("{name}.txt"), &tokens.join("\n"))?;
    write_file(
        dir,
        &format!("{name}.lua"),
        &format!(
            "local tokens = {{}}\n\
             for line in io.lines(\"{}\") do tokens[#tokens + 1] = line end\n\
             local i = 0\n\
             request = function()\n\
               i = i + 1\n\
               if i > #tokens then i = 1 end\n\
               return wrk.format(\"GET\", \"{PATH}\", {{[\"Authorization\"] = \"Bearer \" .. tokens[i]}})\n\
             end\n",
            tokens_file.display()
        ),
    )
}

fn write_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs wrk and returns requests per second; fails if any answer was not a 2xx.
fn wrk(url: &str, script: &Path, seconds: u64, connections: u32) -> anyhow::Result<f64> {
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .context("running wrk (make bench installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(tokenward_e2e::wrk::report(&text)?.0)
}

struct StreamFigures {
    /// No filter first, then the floor, tokenward and (with `BENCH_BASELINE_WASM`) the
    /// baseline module; each with Envoy's CPU time a stream, in ms.
    variants: Vec<(&'static str, streaming::StreamThroughput, f64)>,
    stream_bytes: u64,
}

impl StreamFigures {
    fn megabytes_per_second(&self, name: &str) -> Option<f64> {
        self.variants
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, t, _)| t.megabytes_per_second())
    }
}

/// A 2 MB chat-completions stream from an upstream, through Envoy without a filter, with the
/// floor (a VM call per chunk and nothing else) and with tokenward (which looks through
/// every event for the usage at its end; and for a client that did not ask for the usage,
/// also takes the usage-only chunk out), several at once.
fn stream_throughput(
    s: &Settings,
    wasm: &Path,
    floor_wasm: &Path,
    filter_json: &str,
    chat_token: &str,
) -> anyhow::Result<StreamFigures> {
    let body = streaming::chat_completion_stream(streaming::STREAM_BYTES);
    let upstream = SseUpstream::start(&body)?;
    let config = |wasm: &Path| -> anyhow::Result<EnvoyConfig> {
        EnvoyConfig::shipped()?
            .with_wasm(wasm)?
            .with_upstream("openai", upstream.addr)
    };
    // (name, Envoy, whether the client asks for the usage itself)
    let mut configs = vec![
        (
            "no filter",
            config(wasm)?.replace_tokenward_filter(vec![])?,
            true,
        ),
        ("floor", config(floor_wasm)?.without_filter_config()?, true),
        // What any filter that meters a stream pays: the host copies each chunk into the VM.
        (
            "floor reading each chunk",
            config(floor_wasm)?.with_filter_config("read-body")?,
            true,
        ),
        (
            "tokenward",
            config(wasm)?.with_filter_config(filter_json)?,
            true,
        ),
        (
            "tokenward, usage chunk taken out",
            config(wasm)?.with_filter_config(filter_json)?,
            false,
        ),
    ];
    if let Ok(baseline) = std::env::var("BENCH_BASELINE_WASM") {
        let baseline = std::fs::canonicalize(baseline)?;
        configs.push((
            "baseline module",
            config(&baseline)?.with_filter_config(filter_json)?,
            true,
        ));
        configs.push((
            "baseline module, usage chunk taken out",
            config(&baseline)?.with_filter_config(filter_json)?,
            false,
        ));
    }
    let mut variants = Vec::new();
    for (name, config, asks_usage) in configs {
        let envoy = start(config)?;
        let request = streaming::chat_stream_request(chat_token, asks_usage);
        let expected = if asks_usage {
            upstream.body_bytes
        } else {
            upstream.body_bytes - streaming::usage_chunk_bytes(&body)?
        };
        // Warm-up, and a check that the stream arrives whole.
        streaming::read_streams(
            envoy.addr(),
            &request,
            expected,
            Duration::from_millis(500),
            1,
        )?;
        let cpu_before = cpu_seconds(envoy.pid())?;
        let t = streaming::read_streams(
            envoy.addr(),
            &request,
            expected,
            Duration::from_secs(s.seconds),
            s.stream_connections,
        )?;
        let cpu_millis = (cpu_seconds(envoy.pid())? - cpu_before) * 1e3 / t.streams as f64;
        eprintln!(
            "streams, {name}: {} streams of {} bytes, {:.1} MB/s, {cpu_millis:.2} ms of Envoy CPU a stream",
            t.streams,
            upstream.body_bytes,
            t.megabytes_per_second()
        );
        variants.push((name, t, cpu_millis));
    }
    Ok(StreamFigures {
        variants,
        stream_bytes: upstream.body_bytes,
    })
}

struct MemoryFigures {
    tokens: usize,
    rss_before: u64,
    rss_after: u64,
    send_rate: f64,
    /// The first tokens sent again: at the hot path's rate if the cache still holds them.
    resent: usize,
    resend_rate: f64,
    wasm_stats_before: Vec<String>,
    wasm_stats_after: Vec<String>,
    /// The RSS growth for the same tokens with the cache off (the control).
    uncached_delta: Option<u64>,
}

impl MemoryFigures {
    /// The growth the cache accounts for: with it, less the control without it.
    fn cache_delta(&self) -> u64 {
        let delta = self.rss_after.saturating_sub(self.rss_before);
        delta.saturating_sub(self.uncached_delta.unwrap_or(0))
    }
}

/// One worker with a cache big enough for `tokens`: Envoy's resident memory before and after
/// each of them is verified once (and cached), and what Envoy's stats say of Wasm.
fn memory_with_cached_tokens(
    wasm: &Path,
    filter_json: &str,
    hot_token: &str,
    tokens: &[String],
) -> anyhow::Result<MemoryFigures> {
    let envoy = start(
        EnvoyConfig::shipped()?
            .with_wasm(wasm)?
            .with_direct_response(200, "ok")?
            .with_filter_config(filter_json)?,
    )?;
    // The VM has served requests (and grown what it grows for any) before the baseline.
    probe(&envoy, "memory", hot_token)?;
    load::each_once(envoy.addr(), &[load::get_request(PATH, hot_token)], 1)?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_bytes(envoy.pid())?;
    let wasm_stats_before = wasm_stats(&envoy);
    let requests: Vec<Vec<u8>> = tokens.iter().map(|t| load::get_request(PATH, t)).collect();
    eprintln!("memory: sending {} distinct tokens…", tokens.len());
    let took = load::each_once(envoy.addr(), &requests, 4)?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_bytes(envoy.pid())?;
    let wasm_stats_after = wasm_stats(&envoy);
    let resent = requests.len().min(5_000);
    let resend = load::each_once(envoy.addr(), &requests[..resent], 4)?;
    Ok(MemoryFigures {
        tokens: tokens.len(),
        rss_before,
        rss_after,
        send_rate: tokens.len() as f64 / took.as_secs_f64(),
        resent,
        resend_rate: resent as f64 / resend.as_secs_f64(),
        wasm_stats_before,
        wasm_stats_after,
        uncached_delta: None,
    })
}

/// A process's CPU time so far (user and system, every thread), from /proc.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) : state is field 3, utime 14.
    let after_name = stat
        .rsplit_once(')')
        .context("no ')' in /proc/<pid>/stat")?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/<pid>/stat")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// VmRSS of a process, from /proc.
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kb * 1024)
}

/// Envoy's own stats about its Wasm runtime (not the filter's `wasmcustom` metrics).
fn wasm_stats(envoy: &Envoy) -> Vec<String> {
    http_get(envoy.admin_port, "/stats")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("wasm") && !l.starts_with("wasmcustom"))
        .map(str::to_string)
        .collect()
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// The difference `a - b` in microseconds, signed.
fn added(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() - b.as_secs_f64()) * 1e6
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
}

fn report(
    s: &Settings,
    results: &[Measured],
    fixed_rate: Option<f64>,
    module_bytes: u64,
    streams: Option<&StreamFigures>,
    memory: Option<&MemoryFigures>,
) {
    let rps = |kind: Kind| {
        results
            .iter()
            .find(|m| m.kind == kind)
            .map(|m| m.rps)
            .unwrap_or(f64::NAN)
    };
    let (none, floor) = (rps(Kind::NoFilter), rps(Kind::Floor));
    let (jwt, jwt_es) = (rps(Kind::JwtAuthnEddsa), rps(Kind::JwtAuthnEs256));
    let (hot, quotas) = (rps(Kind::Hot), rps(Kind::HotQuotas));
    println!(
        "\ntokenward benchmark: 1 Envoy worker, wrk -t1 -c{} -d{}s, direct response, one run",
        s.connections, s.seconds
    );
    let floor_cpu = results
        .iter()
        .find(|m| m.kind == Kind::Floor)
        .map_or(f64::NAN, |m| m.cpu_micros);
    println!(
        "| variant | req/s | vs floor | vs jwt_authn (same algorithm) | vs no filter | Envoy CPU µs/request | floor's CPU / its CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for m in results {
        println!(
            "| {} | {:.0} | {:.2}x | {:.2}x | {:.2}x | {:.1} | {:.2}x |",
            m.name,
            m.rps,
            m.rps / floor,
            m.rps / rps(m.kind.jwt_authn()),
            m.rps / none,
            m.cpu_micros,
            floor_cpu / m.cpu_micros
        );
    }

    let none_latency = results
        .iter()
        .find(|m| m.kind == Kind::NoFilter)
        .and_then(|m| m.latency.as_ref());
    let mut p99_added = Vec::new();
    if let (Some(rate), Some(base)) = (fixed_rate, none_latency) {
        println!(
            "\nlatency at a fixed {rate:.0} req/s (half the no-filter throughput), {} connections, \
             {} s, measured from each request's scheduled time",
            s.connections, s.seconds
        );
        println!("| variant | p50 | p99 | p50 added | p99 added | achieved req/s | late sends |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for m in results {
            let Some(l) = &m.latency else { continue };
            let (p50, p99) = (l.percentile(50.0), l.percentile(99.0));
            let (p50_added, p99_add) = (
                added(p50, base.percentile(50.0)),
                added(p99, base.percentile(99.0)),
            );
            if m.kind != Kind::NoFilter {
                p99_added.push((m.name, p99_add));
            }
            println!(
                "| {} | {} | {} | {p50_added:+.0} µs | {p99_add:+.0} µs | {:.0} | {} of {} |",
                m.name,
                micros(p50),
                micros(p99),
                l.achieved_rate,
                l.late,
                l.count()
            );
        }
        if results
            .iter()
            .filter_map(|m| m.latency.as_ref())
            .any(|l| l.late * 10 > l.count())
        {
            println!(
                "(a variant with most sends late could not keep up with the rate: its latencies \
                 are mostly time queued behind earlier requests)"
            );
        }
    }

    if let Some(st) = streams {
        println!(
            "\nstreaming: a {} byte chat-completions SSE stream in 1–4 KB chunks from an upstream, \
             {} at once, {} s",
            st.stream_bytes, s.stream_connections, s.seconds
        );
        println!(
            "| variant | streams | MB/s | vs floor | vs floor reading each chunk | vs no filter | Envoy CPU ms/stream |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let base = st.megabytes_per_second("no filter").unwrap_or(f64::NAN);
        let floor = st.megabytes_per_second("floor").unwrap_or(f64::NAN);
        let reading = st
            .megabytes_per_second("floor reading each chunk")
            .unwrap_or(f64::NAN);
        for (name, t, cpu_millis) in &st.variants {
            println!(
                "| {name} | {} | {:.1} | {:.2}x | {:.2}x | {:.2}x | {cpu_millis:.2} |",
                t.streams,
                t.megabytes_per_second(),
                t.megabytes_per_second() / floor,
                t.megabytes_per_second() / reading,
                t.megabytes_per_second() / base
            );
        }
        println!(
            "every stream arrived whole: {} bytes ending with [DONE]",
            st.stream_bytes
        );
    }

    if let Some(m) = memory {
        let delta = m.rss_after.saturating_sub(m.rss_before);
        println!(
            "\nmemory: one worker, {} distinct tokens verified and cached ({:.0} req/s): Envoy's RSS {} -> {} (+{}); \
             the first {} sent again: {:.0} req/s (cache hits run at the hot rate, misses at the cold)",
            m.tokens,
            m.send_rate,
            mib(m.rss_before as f64),
            mib(m.rss_after as f64),
            mib(delta as f64),
            m.resent,
            m.resend_rate
        );
        if let Some(uncached) = m.uncached_delta {
            println!(
                "the same tokens with the cache off: +{}; the cache's share: +{} ({:.0} bytes a token)",
                mib(uncached as f64),
                mib(m.cache_delta() as f64),
                m.cache_delta() as f64 / m.tokens.max(1) as f64
            );
        }
        let memory_stats: Vec<(&String, &String)> = m
            .wasm_stats_before
            .iter()
            .zip(&m.wasm_stats_after)
            .filter(|(_, after)| {
                ["memory", "heap", "bytes"]
                    .iter()
                    .any(|w| after.contains(w))
            })
            .collect();
        if memory_stats.is_empty() {
            let vms = m
                .wasm_stats_after
                .iter()
                .filter(|l| l.contains("vm_count") || l.contains("v8."))
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            println!("Envoy's /stats have no Wasm memory figure; its Wasm stats count VMs: {vms}");
        } else {
            println!("Envoy's Wasm memory stats (before -> after):");
            for (before, after) in memory_stats {
                println!("  {before} -> {after}");
            }
        }
    }

    println!("\nmodule: dist/tokenward.wasm {module_bytes} bytes");
    println!("targets:");
    // A NaN figure is one BENCH_ONLY left out.
    let target = |what: &str, figure: String, met: bool| {
        if figure.contains("NaN") {
            println!("  {what}: not measured in this run");
        } else {
            println!("  {what}: {figure} {}", verdict(met));
        }
    };
    target(
        "hot with quotas >= 0.7x floor",
        format!("{:.2}x", quotas / floor),
        quotas / floor >= 0.7,
    );
    target(
        "hot >= 0.8x floor",
        format!("{:.2}x", hot / floor),
        hot / floor >= 0.8,
    );
    // Not a target: how much of the gap is the host calls any credential swap makes.
    let calls = rps(Kind::FloorHostCalls);
    if !calls.is_nan() {
        println!(
            "  (the floor making tokenward's host calls: {:.2}x floor; hot: {:.2}x of it, hot with quotas: {:.2}x)",
            calls / floor,
            hot / calls,
            quotas / calls
        );
    }
    let quota_calls = rps(Kind::FloorQuotaCalls);
    if !quota_calls.is_nan() {
        println!(
            "  (the floor making tokenward's host calls under a quota plan: {:.2}x floor; hot with quotas: {:.2}x of it)",
            quota_calls / floor,
            quotas / quota_calls
        );
    }
    let near_limit = rps(Kind::HotQuotasNearLimit);
    if !near_limit.is_nan() {
        println!(
            "  (hot with quotas, the plan sending rate-limit headers only near the limit: {:.2}x floor)",
            near_limit / floor
        );
    }
    target(
        "hot with quotas >= 2x jwt_authn (EdDSA)",
        format!("{:.2}x", quotas / jwt),
        quotas / jwt >= 2.0,
    );
    target(
        "hot >= 2x jwt_authn (EdDSA)",
        format!("{:.2}x", hot / jwt),
        hot / jwt >= 2.0,
    );
    let (cold, cold_es) = (rps(Kind::ColdEddsa), rps(Kind::ColdEs256));
    target(
        "cold EdDSA >= 0.6x jwt_authn EdDSA",
        format!("{:.2}x", cold / jwt),
        cold / jwt >= 0.6,
    );
    target(
        "cold ES256 >= 0.6x jwt_authn ES256",
        format!("{:.2}x", cold_es / jwt_es),
        cold_es / jwt_es >= 0.6,
    );
    let fleet = rps(Kind::HotQuotasFleet);
    target(
        "hot with quotas, fleet allowances on >= 0.95x local counting",
        format!("{:.2}x", fleet / quotas),
        fleet / quotas >= 0.95,
    );
    target(
        "module <= 400 000 bytes",
        format!("{module_bytes} bytes"),
        module_bytes <= MODULE_BUDGET,
    );
    for (name, p99) in &p99_added {
        target(
            &format!("p99 added by {name} <= 150 µs"),
            format!("{p99:+.0} µs"),
            *p99 <= P99_ADDED_BUDGET.as_secs_f64() * 1e6,
        );
    }
    if let Some(st) = streams {
        let ratio = st.megabytes_per_second("tokenward").unwrap_or(f64::NAN)
            / st.megabytes_per_second("no filter").unwrap_or(f64::NAN);
        target(
            "streaming >= 0.8x no filter",
            format!("{ratio:.2}x"),
            ratio >= 0.8,
        );
    }
    if let Some(m) = memory {
        let delta = m.cache_delta();
        target(
            &format!(
                "worker memory for {} cached tokens (RSS growth less the control's) <= 16 MiB",
                m.tokens
            ),
            format!("+{}", mib(delta as f64)),
            delta <= MEMORY_BUDGET_BYTES,
        );
    }
}
