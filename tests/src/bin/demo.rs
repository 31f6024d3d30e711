//! `make demo`: the gateway end to end on this machine. Starts a mock OpenAI-compatible
//! provider (plus Anthropic and Gemini), generates a signing key and a token, runs the
//! shipped Envoy config with the built module, and shows one call that passes with the
//! swapped credential and one that is refused. Then it stays up for you to try more, until
//! Ctrl-C (or exits at once with DEMO_EXIT=1).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use tokenward_e2e::client::{bearer, send};
use tokenward_e2e::envoy::{wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::mock_provider::MockProvider;
use tokenward_e2e::setup::{gateway_config, ProviderSecrets, SigningKey, TokenSpec, PROVIDERS};
use tokenward_filter::config::{LimitConfig, LimitScope, Metric, PlanConfig};
use tokenward_filter::window::Window;

fn step(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

fn main() -> anyhow::Result<()> {
    step("Starting mock providers (OpenAI, Anthropic, Gemini wire formats) on loopback");
    let mut providers = Vec::new();
    let mut envoy_config = EnvoyConfig::shipped()?.with_wasm(&wasm_module()?)?;
    for (name, _, _) in PROVIDERS {
        let mock = MockProvider::start(name)?;
        println!("    {name:<10} http://{}", mock.addr);
        envoy_config = envoy_config.with_upstream(name, mock.addr)?;
        providers.push(mock);
    }

    step("Generating an Ed25519 signing key and the gateway configuration");
    let key = SigningKey::generate("demo-1");
    let secrets = ProviderSecrets::generate();
    let mut config = gateway_config(&[&key], &secrets);
    // Every credential without a plan of its own gets this one: 5 requests a minute and a
    // daily token budget, counted in Envoy's shared data.
    let limit = |name: &str, metric, window, limit| LimitConfig {
        name: name.into(),
        metric,
        window,
        limit,
        per: LimitScope::Subject,
    };
    config.plans.insert(
        "demo".into(),
        PlanConfig {
            limits: vec![
                limit("per-minute", Metric::Requests, Window::Minute, 5),
                limit("tokens-per-day", Metric::TotalTokens, Window::Day, 50_000),
            ],
            shadow: false,
            clamp_max_tokens: true,
            default_output_tokens: 1024,
        },
    );
    config.default_plan = Some("demo".into());
    let dir = tokenward_e2e::repo_root().join(".demo");
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("tokenward.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
    println!("    filter config: {}", config_path.display());
    let envoy_config = envoy_config.with_filter_config(&serde_json::to_string(&config)?)?;

    step("Starting Envoy with dist/tokenward.wasm (compiling the module takes a moment)");
    let envoy = Envoy::start(envoy_config, &EnvoyOptions::default())?;
    println!(
        "    gateway: http://127.0.0.1:{}   admin: http://127.0.0.1:{}",
        envoy.port, envoy.admin_port
    );

    let token = key.mint(&TokenSpec {
        subject: "demo-user".into(),
        scopes: vec!["chat".into(), "models".into()],
        models: Some(vec!["gpt-4o*".into(), "claude-*".into()]),
        lifetime: 3600,
        ..TokenSpec::default()
    });
    std::fs::write(dir.join("token"), &token)?;
    step("Minted a token for demo-user: scopes chat+models, models gpt-4o* and claude-*, 1 hour");
    println!("    saved in .demo/token (a credential: keep it out of logs and shells' history)");

    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
    step("1. A chat completion with the tokenward token");
    println!("    POST /v1/chat/completions  Authorization: Bearer <token>  model gpt-4o-mini");
    let reply = send(
        "POST",
        &envoy.url("/v1/chat/completions"),
        &[("authorization", &bearer(&token))],
        Some(body),
    )
    .inspect_err(|_| eprintln!("Envoy's log:\n{}", envoy.log()))?;
    println!("    <- {} {}", reply.status, reply.body);
    println!(
        "       x-ratelimit-remaining-requests: {}   x-ratelimit-remaining-tokens: {}",
        reply
            .header("x-ratelimit-remaining-requests")
            .unwrap_or("-"),
        reply.header("x-ratelimit-remaining-tokens").unwrap_or("-")
    );
    let received = providers[0].received();
    if let Some(r) = received.last() {
        let auth = r.header("authorization").unwrap_or_default();
        let shown = if auth == format!("Bearer {}", secrets.get("openai")) {
            "Bearer <the OpenAI key from the config>"
        } else {
            "UNEXPECTED"
        };
        println!(
            "    the provider received: Authorization: {shown}; Host: {}",
            r.header("host").unwrap_or_default()
        );
        println!(
            "    the client's token reached the provider: {}",
            if r.contains(&token) {
                "YES (bug)"
            } else {
                "no"
            }
        );
    }

    step("2. The same token asks for a model it may not use");
    println!("    POST /v1/chat/completions  model o1-preview");
    let refused = send(
        "POST",
        &envoy.url("/v1/chat/completions"),
        &[("authorization", &bearer(&token))],
        Some(r#"{"model":"o1-preview","messages":[]}"#),
    )?;
    println!("    <- {} {}", refused.status, refused.body);

    step("3. No credential at all");
    let missing = send("GET", &envoy.url("/v1/models"), &[], None)?;
    println!("    <- {} {}", missing.status, missing.body);
    println!(
        "       WWW-Authenticate: {}",
        missing.header("www-authenticate").unwrap_or_default()
    );

    step("4. The plan allows 5 requests a minute: keep calling until it says no");
    let mut limited = None;
    for n in 2..=7 {
        let r = send(
            "POST",
            &envoy.url("/v1/chat/completions"),
            &[("authorization", &bearer(&token))],
            Some(body),
        )?;
        println!("    request {n}: {}", r.status);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    if let Some(r) = &limited {
        println!("    <- {} {}", r.status, r.body);
        for name in [
            "retry-after",
            "ratelimit-policy",
            "ratelimit",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ] {
            println!("       {name}: {}", r.header(name).unwrap_or("-"));
        }
    }

    let ok =
        reply.status == 200 && refused.status == 403 && missing.status == 401 && limited.is_some();
    if std::env::var("DEMO_EXIT").is_ok_and(|v| v == "1") {
        if !ok {
            eprintln!("Envoy's log:\n{}", envoy.log());
            anyhow::bail!("the demo did not see the expected answers");
        }
        step("Done (DEMO_EXIT=1): stopping Envoy and the mock providers");
        return Ok(());
    }
    step("Everything keeps running. Try it yourself:");
    println!("    curl -s http://127.0.0.1:{}/v1/chat/completions -H \"Authorization: Bearer $(cat .demo/token)\" \\", envoy.port);
    println!("         -H 'content-type: application/json' -d '{body}'");
    println!("    curl -s http://127.0.0.1:{}/v1/models", envoy.port);
    println!(
        "    curl -s http://127.0.0.1:{}/stats | grep wasm",
        envoy.admin_port
    );
    println!("\nPress Ctrl-C to stop.");
    std::io::stdout().flush()?;
    // Ctrl-C ends the process; Envoy dies with it (PR_SET_PDEATHSIG) and the mocks are threads.
    loop {
        std::thread::park();
    }
}
