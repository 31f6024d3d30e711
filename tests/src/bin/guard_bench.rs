//! `make bench` (guard part, docs/guard.md): a client on 127.0.0.2 sends 10 000 requests with
//! random bad tokens (well-formed JWTs whose signatures are random, so each would cost a
//! signature check), 8 at a time, paced at `BENCH_ATTACK_RPS` (default 1000: the attack
//! itself must not take the machine's cores from Envoy, or the figures measure the attacker),
//! while wrk sends valid traffic (one cached token) from 127.0.0.1. Two Envoy workers, direct response. Three variants in one run, so the figures
//! compare: no attack; the attack with the guard on (its defaults); the attack with the guard
//! off. Per variant: valid req/s, and how many credentials reached a signature check
//! (`tokenward.auth.verifications`) against the bound (threshold + one per worker).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use jwt_simple::prelude::Base64UrlSafeNoPadding;
use jwt_simple::reexports::ct_codecs::Encoder;
use tokenward_e2e::envoy::{wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::setup::{gateway_config, ProviderSecrets, SigningKey, TokenSpec};
use tokenward_filter::config::{FailedAuthConfig, GuardConfig};

const PATH: &str = "/v1/models";
const WORKERS: u32 = 2;
const ATTACK_REQUESTS: u64 = 10_000;
const ATTACKERS: u64 = 8;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Outcome {
    name: &'static str,
    valid_rps: f64,
    attack_sent: u64,
    attack_seconds: f64,
    unauthorized: u64,
    blocked: u64,
    verifications: u64,
}

fn main() -> anyhow::Result<()> {
    let seconds = env_number("BENCH_SECONDS", 10);
    let attack_rps = env_number("BENCH_ATTACK_RPS", 1000).max(1);
    let connections = env_number("BENCH_CONNECTIONS", 16);
    let wasm = wasm_module()?;
    let dir = tempfile::tempdir()?;
    let key = SigningKey::generate("bench");
    let secrets = ProviderSecrets::generate();
    let spec = TokenSpec {
        scopes: vec!["models".into()],
        ..TokenSpec::default()
    };
    let valid = key.mint(&spec);
    let mut config = gateway_config(&[&key], &secrets);
    let guarded = serde_json::to_string(&config)?;
    config.guard = Some(GuardConfig {
        failed_auth: FailedAuthConfig {
            enabled: false,
            ..FailedAuthConfig::default()
        },
    });
    let unguarded = serde_json::to_string(&config)?;
    let threshold = u64::from(FailedAuthConfig::default().threshold);
    let script = dir.path().join("valid.lua");
    std::fs::write(
        &script,
        format!("wrk.method = \"GET\"\nwrk.headers[\"Authorization\"] = \"Bearer {valid}\"\n"),
    )?;
    // A forged token: this key's header and claims, a random signature of the right length.
    let (signed_part, _) = valid.rsplit_once('.').context("a JWT has three parts")?;
    let signed_part = signed_part.to_string();

    let base = EnvoyConfig::shipped()?
        .with_wasm(&wasm)?
        .with_direct_response(200, "ok")?;
    let variants: [(&str, &str, bool); 3] = [
        ("no attack", &guarded, false),
        ("attack, guard on (defaults)", &guarded, true),
        ("attack, guard off", &unguarded, true),
    ];
    let mut outcomes = Vec::new();
    for (name, filter_json, attack) in variants {
        let envoy = Envoy::start(
            base.clone().with_filter_config(filter_json)?,
            &EnvoyOptions {
                concurrency: WORKERS,
                log_level: "warning",
                ..EnvoyOptions::default()
            },
        )?;
        let probe = tokenward_e2e::client::send(
            "GET",
            &envoy.url(PATH),
            &[("authorization", format!("Bearer {valid}").as_bytes())],
            None,
        )?;
        if probe.status != 200 {
            bail!("{name}: probe answered {} {}", probe.status, probe.body);
        }
        wrk(&envoy.url(PATH), &script, 2, connections)?; // warm-up
        let running = Arc::new(AtomicBool::new(true));
        let attack = attack.then(|| {
            start_attack(
                &envoy.url(PATH),
                &signed_part,
                attack_rps,
                Arc::clone(&running),
            )
        });
        let valid_rps = wrk(&envoy.url(PATH), &script, seconds, connections)?;
        running.store(false, Ordering::Relaxed);
        let (attack_sent, attack_seconds, unauthorized, blocked) = match attack {
            Some(attack) => attack.finish(),
            None => (0, 0.0, 0, 0),
        };
        let verifications = envoy.stat("wasmcustom.tokenward.auth.verifications");
        eprintln!(
            "{name}: {valid_rps:.0} valid req/s; attack {attack_sent} sent in {attack_seconds:.1} s, \
             {unauthorized} answered 401, {blocked} 429; {verifications} verifications"
        );
        outcomes.push(Outcome {
            name,
            valid_rps,
            attack_sent,
            attack_seconds,
            unauthorized,
            blocked,
            verifications,
        });
    }

    println!(
        "\ntokenward guard benchmark: {WORKERS} Envoy workers, direct response; valid traffic wrk -t1 -c{connections} -d{seconds}s \
         from 127.0.0.1 (one cached token); attack from 127.0.0.2: at least {ATTACK_REQUESTS} forged tokens, {ATTACKERS} at a time, \
         paced at {attack_rps} req/s, for as long as wrk runs; one run"
    );
    println!("| variant | valid req/s | vs no attack | attack requests (req/s) | 401 | 429 | signature checks |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let calm = outcomes[0].valid_rps;
    for o in &outcomes {
        let rate = if o.attack_seconds > 0.0 {
            format!(
                "{} ({:.0})",
                o.attack_sent,
                o.attack_sent as f64 / o.attack_seconds
            )
        } else {
            "-".to_string()
        };
        println!(
            "| {} | {:.0} | {:.2}x | {rate} | {} | {} | {} |",
            o.name,
            o.valid_rps,
            o.valid_rps / calm,
            o.unauthorized,
            o.blocked,
            o.verifications
        );
    }
    let bound = threshold + u64::from(WORKERS);
    let guarded_checks = outcomes[1]
        .verifications
        .saturating_sub(outcomes[0].verifications);
    println!(
        "\ntarget: forged tokens reaching a signature check with the guard on <= threshold + one per worker ({bound}): {guarded_checks} {}",
        if guarded_checks <= bound { "met" } else { "MISSED" }
    );
    Ok(())
}

struct Attack {
    started: Instant,
    threads: Vec<std::thread::JoinHandle<(u64, u64, u64)>>,
}

impl Attack {
    /// Requests sent, seconds taken for them, 401s and 429s.
    fn finish(self) -> (u64, f64, u64, u64) {
        let (mut sent, mut unauthorized, mut blocked) = (0, 0, 0);
        for thread in self.threads {
            let (s, u, b) = thread.join().unwrap();
            sent += s;
            unauthorized += u;
            blocked += b;
        }
        (
            sent,
            self.started.elapsed().as_secs_f64(),
            unauthorized,
            blocked,
        )
    }
}

/// `ATTACKERS` threads from 127.0.0.2 sending forged tokens until at least
/// `ATTACK_REQUESTS` went and `running` turns false.
fn start_attack(url: &str, signed_part: &str, rps: u64, running: Arc<AtomicBool>) -> Attack {
    let interval = Duration::from_secs_f64(ATTACKERS as f64 / rps as f64);
    let started = Instant::now();
    let threads = (0..ATTACKERS)
        .map(|_| {
            let url = url.to_string();
            let signed_part = signed_part.to_string();
            let running = Arc::clone(&running);
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
                    .build()
                    .unwrap();
                let (mut sent, mut unauthorized, mut blocked) = (0u64, 0u64, 0u64);
                let share = ATTACK_REQUESTS / ATTACKERS;
                let began = Instant::now();
                while sent < share || running.load(Ordering::Relaxed) {
                    let due = began + interval * u32::try_from(sent).unwrap_or(u32::MAX);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let mut signature = [0u8; 64];
                    getrandom::fill(&mut signature).unwrap();
                    let token = format!(
                        "{signed_part}.{}",
                        Base64UrlSafeNoPadding::encode_to_string(signature).unwrap()
                    );
                    let Ok(reply) = client
                        .get(&url)
                        .header("authorization", format!("Bearer {token}"))
                        .send()
                    else {
                        continue;
                    };
                    sent += 1;
                    match reply.status().as_u16() {
                        401 => unauthorized += 1,
                        429 => blocked += 1,
                        _ => {}
                    }
                    let _ = reply.bytes();
                }
                (sent, unauthorized, blocked)
            })
        })
        .collect();
    Attack { started, threads }
}

/// Runs wrk and returns requests per second; fails if any answer was not a 2xx.
fn wrk(url: &str, script: &Path, seconds: u64, connections: u64) -> anyhow::Result<f64> {
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
