//! `make bench` (fifth part): fleet-wide quotas, one run. Three pull-mode Envoys of two
//! workers each in front of a mock provider, one subject, a plan of 1 000 requests and
//! 200 000 tokens a minute, the control plane as a `tokenward serve` process over Postgres.
//! Load from one paced client per Envoy, 1.5 times the binding limit, spread 70/20/10; then
//! all of it on one Envoy; then the control plane SIGKILLed in the middle of a minute (the
//! fallback policy: each Envoy keeps its last allowance, then its last share). Per minute:
//! what the provider answered 200 for, against the limit. `FLEET_MINUTES` (default 5) sets
//! the minutes of the first two scenarios.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use tokenward_e2e::control_plane::unix_now;
use tokenward_e2e::fleet::{chat_body, drive, mint, proxy_credential, until, Fleet, MinuteCount};
use tokenward_filter::config::{LimitConfig, LimitScope, Metric, Unreachable};
use tokenward_filter::window::Window;

const REQUESTS: u64 = 1_000;
const TOKENS: u64 = 200_000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `total` a minute spread by `weights`.
fn spread(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u64 = weights.iter().sum();
    weights.iter().map(|w| total * w / sum).collect()
}

struct Scenario {
    name: String,
    minutes: Vec<MinuteCount>,
    /// Requests or tokens: the limit that binds.
    tokens_bound: bool,
}

impl Scenario {
    fn value(&self, m: &MinuteCount) -> u64 {
        if self.tokens_bound {
            m.tokens
        } else {
            m.admitted
        }
    }

    fn limit(&self) -> u64 {
        if self.tokens_bound {
            TOKENS
        } else {
            REQUESTS
        }
    }
}

fn main() -> anyhow::Result<()> {
    let minutes = env_number("FLEET_MINUTES", 5);
    let fleet = Fleet::create();
    let operator = fleet.operator();
    let limit = |name: &str, metric, limit| LimitConfig {
        name: name.into(),
        metric,
        window: Window::Minute,
        limit,
        per: LimitScope::Subject,
    };
    let mut plan = tokenward_filter::testing::plan(
        vec![
            limit("rpm", Metric::Requests, REQUESTS),
            limit("tpm", Metric::TotalTokens, TOKENS),
        ],
        16,
    );
    plan.unreachable = Unreachable::Fallback;
    operator.put_plan("team", plan, unix_now())?;
    operator.set_default_plan(Some("team"), unix_now())?;
    let credential = proxy_credential(&operator);
    let cp = fleet.replica_process("cp");
    let admin = cp.admin;
    let envoys = [
        fleet.pull_envoy("envoy-a", admin, &credential, 2),
        fleet.pull_envoy("envoy-b", admin, &credential, 2),
        fleet.pull_envoy("envoy-c", admin, &credential, 2),
    ];
    let (token, _) = mint(admin, &fleet.admin_key, "alice");
    for envoy in &envoys {
        until(envoy, &token, Duration::from_secs(15), |r| r.status == 200);
    }
    let urls: Vec<String> = envoys
        .iter()
        .map(|e| e.url("/v1/chat/completions"))
        .collect();
    // About 27 tokens a request (20 in, 7 out): the request limit binds.
    let small = chat_body(20, 7);
    // About 390 a request: the token limit binds at about 510 requests.
    let large = chat_body(383, 7);
    let mut scenarios = Vec::new();
    let mut run = |name: &str, rates: Vec<u64>, body: &str, tokens_bound: bool, n: u64| {
        eprintln!("{name}: {n} minutes…");
        let (counts, _) = drive(&urls, &token, &rates, body, n);
        scenarios.push(Scenario {
            name: name.to_string(),
            minutes: counts,
            tokens_bound,
        });
    };
    run(
        "3 Envoys 70/20/10, 1 500 req/min asked (request limit binds)",
        spread(1_500, &[70, 20, 10]),
        &small,
        false,
        minutes,
    );
    run(
        "3 Envoys 70/20/10, 775 req/min of ~390 tokens asked (token limit binds)",
        spread(775, &[70, 20, 10]),
        &large,
        true,
        minutes,
    );
    run(
        "1 Envoy takes all, 1 500 req/min asked (request limit binds)",
        vec![1_500, 0, 0],
        &small,
        false,
        minutes,
    );
    run(
        "1 Envoy takes all, 775 req/min of ~390 tokens asked (token limit binds)",
        vec![775, 0, 0],
        &large,
        true,
        minutes.min(3),
    );
    // The control plane SIGKILLed 30 s into the first of three minutes, not restarted.
    let killer = std::thread::spawn(move || {
        let now = unix_now();
        let first = now - now % 60 + 60;
        std::thread::sleep(Duration::from_secs(first + 30 - now));
        cp.kill().unwrap();
    });
    run(
        "3 Envoys 70/20/10, control plane killed at 0:30 of minute 1 (fallback policy)",
        spread(1_500, &[70, 20, 10]),
        &small,
        false,
        3,
    );
    killer.join().unwrap();

    println!("\nfleet-wide quotas: 3 Envoys x 2 workers (pull mode), report interval 1 s, one run");
    println!(
        "limits: {REQUESTS} requests/minute and {TOKENS} tokens/minute of one subject; admitted = answered 200 by the provider\n"
    );
    println!("| scenario | binding limit | admitted per minute | min / max vs limit | over the limit | other answers |");
    println!("|---|---|---|---:|---:|---:|");
    for s in &scenarios {
        let values: Vec<u64> = s.minutes.iter().map(|m| s.value(m)).collect();
        let min = values.iter().min().copied().unwrap_or(0);
        let max = values.iter().max().copied().unwrap_or(0);
        let over = values
            .iter()
            .map(|v| v.saturating_sub(s.limit()))
            .max()
            .unwrap_or(0);
        let other: u64 = s.minutes.iter().map(|m| m.other).sum();
        println!(
            "| {} | {} {} | {} | {:.3} / {:.3} | {} | {} |",
            s.name,
            s.limit(),
            if s.tokens_bound { "tokens" } else { "requests" },
            values
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            min as f64 / s.limit() as f64,
            max as f64 / s.limit() as f64,
            over,
            other
        );
    }
    println!("\ntargets: never above the limit + the documented bound; >= 0.95 of it while demand exceeds it");
    Ok(())
}
