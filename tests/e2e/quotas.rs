//! Quotas in a real Envoy: exact admission under concurrency across workers, tokens counted
//! to the providers' own usage for every provider in JSON and streams, what a client is told
//! (429 and rate-limit headers), counters that outlive a config update, shadow mode, and the
//! budget clamp.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokenward_e2e::client::{bearer, Reply};
use tokenward_e2e::setup::{gateway_config, ProviderSecrets, SigningKey, TokenSpec};
use tokenward_filter::config::{LimitConfig, Metric, PlanConfig, RateLimitHeaders};
use tokenward_filter::testing::{limit, with_default_plan};
use tokenward_filter::window::Window;

use crate::gateway::{Gateway, Options};

fn plan(limits: Vec<LimitConfig>) -> PlanConfig {
    tokenward_filter::testing::plan(limits, 64)
}

/// Every quota test runs four Envoy workers: counts live in shared data, whichever worker
/// (and VM) a request lands on.
fn four_workers() -> Options {
    Options {
        concurrency: 4,
        ..Options::default()
    }
}

fn today() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Window::Day.start(now)
}

fn models(gw: &Gateway, token: &str) -> Reply {
    gw.send(
        "GET",
        "/v1/models",
        &[("authorization", &bearer(token))],
        None,
    )
}

#[test]
fn many_clients_on_four_workers_get_exactly_the_limit_admitted() {
    const LIMIT: usize = 25;
    let gw = Arc::new(Gateway::start_with(four_workers(), |config, _| {
        with_default_plan(
            config,
            plan(vec![limit(
                "rpd",
                Metric::Requests,
                Window::Day,
                LIMIT as u64,
            )]),
        );
    }));
    // A run that straddles midnight UTC starts a new window halfway; run it again then,
    // as a fresh subject.
    for attempt in 0..2 {
        let day = today();
        let token = gw.mint(TokenSpec {
            subject: format!("crowd-{attempt}"),
            ..TokenSpec::default()
        });
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let gw = Arc::clone(&gw);
                let token = token.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .map(|_| gw.chat(&token, "gpt-4o-mini"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let replies: Vec<Reply> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        if today() != day {
            gw.providers["openai"].clear();
            continue;
        }
        let admitted = replies.iter().filter(|r| r.status == 200).count();
        let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
        assert_eq!(
            admitted, LIMIT,
            "exactly the limit, however the workers raced"
        );
        assert_eq!(refused.len(), 80 - LIMIT, "every other request refused");
        assert_eq!(
            gw.received("openai").len(),
            LIMIT,
            "the provider saw exactly the admitted requests"
        );
        for reply in refused {
            assert_eq!(reply.error_code().as_deref(), Some("rate_limit_exceeded"));
            assert!(reply.header("retry-after").is_some());
            assert_eq!(reply.header("x-ratelimit-remaining-requests"), Some("0"));
        }
        assert_eq!(
            gw.envoy
                .stat("wasmcustom.tokenward.quota.refused.standard.rpd"),
            (80 - LIMIT) as u64
        );
        assert_eq!(
            gw.envoy
                .stat("wasmcustom.tokenward.requests.refused.rate_limit_exceeded"),
            (80 - LIMIT) as u64
        );
        gw.assert_log_clean(&[&token]);
        return;
    }
    panic!("two runs in a row straddled midnight UTC");
}

#[test]
fn tokens_counted_equal_the_providers_usage_for_every_provider_json_and_stream() {
    const BUDGET: u64 = 1_000_000;
    let gw = Gateway::start_with(four_workers(), |config, _| {
        with_default_plan(
            config,
            plan(vec![
                limit("tpd", Metric::TotalTokens, Window::Day, BUDGET),
                limit("input", Metric::InputTokens, Window::Day, BUDGET),
                limit("output", Metric::OutputTokens, Window::Day, BUDGET),
            ]),
        );
    });
    let day = today();
    let token = gw.token();
    let auth = bearer(&token);
    let send = |path: &str, headers: &[(&str, &[u8])], body: &str| {
        let reply = gw.send("POST", path, headers, Some(body));
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert!(
            reply.header("x-ratelimit-remaining-tokens").is_some(),
            "success carries the rate-limit headers"
        );
        reply
    };
    for stream in [false, true] {
        // No stream_options: the filter turns include_usage on so the stream can be counted,
        // and takes the usage-only chunk out of what the client gets.
        let reply = send(
            "/v1/chat/completions",
            &[("authorization", &auth)],
            &format!(
                r#"{{"model":"gpt-4o-mini","stream":{stream},"messages":[{{"role":"user","content":"Count to three"}}]}}"#
            ),
        );
        if stream {
            // Counted all the same (below), but the client gets the stream it asked for:
            // no usage-only chunk, and still the end of the stream.
            assert!(
                !reply.body.contains(r#""choices":[]"#) && reply.body.contains("data: [DONE]"),
                "the client sees a usage chunk it did not ask for: {}",
                reply.body
            );
        }
        send(
            "/v1/messages",
            &[("x-api-key", token.as_bytes())],
            &format!(
                r#"{{"model":"claude-3-5-haiku-latest","max_tokens":32,"stream":{stream},"messages":[{{"role":"user","content":"Hello there"}}]}}"#
            ),
        );
        let method = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        send(
            &format!("/v1beta/models/gemini-2.0-flash:{method}"),
            &[("x-goog-api-key", token.as_bytes())],
            r#"{"contents":[{"parts":[{"text":"Why is the sky blue?"}]}]}"#,
        );
    }
    send(
        "/v1/embeddings",
        &[("authorization", &auth)],
        r#"{"model":"text-embedding-3-small","input":"a sentence to embed"}"#,
    );
    let received = gw.all_received();
    assert_eq!(received.len(), 7);
    let chat_stream = received
        .iter()
        .find(|r| {
            r.path == "/v1/chat/completions" && r.body.windows(13).any(|w| w == b"\"stream\":true")
        })
        .unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&chat_stream.body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(
        chat_stream.header("content-length"),
        Some(chat_stream.body.len().to_string()),
        "the rewritten body went out with its own length"
    );
    let (input, output) = received
        .iter()
        .map(|r| r.reported_usage.expect("every answer reported usage"))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    // A request that uses no tokens reserves none: its headers show the settled counts.
    let reply = models(&gw, &token);
    assert_eq!(reply.status, 200);
    if today() != day {
        return; // The counts started afresh at midnight UTC; nothing left to compare.
    }
    assert_eq!(
        reply.header("x-ratelimit-remaining-tokens"),
        Some((BUDGET - input - output).to_string().as_str()),
        "total tokens counted = the providers' usage ({input} in, {output} out)"
    );
    let ratelimit = reply.header("ratelimit").unwrap();
    assert!(
        ratelimit.contains(&format!("\"input\";r={}", BUDGET - input))
            && ratelimit.contains(&format!("\"output\";r={}", BUDGET - output)),
        "{ratelimit}"
    );
}

#[test]
fn a_429_and_a_success_tell_the_client_the_limits() {
    let gw = Gateway::start_with(four_workers(), |config, _| {
        with_default_plan(
            config,
            plan(vec![
                limit("rpm", Metric::Requests, Window::Minute, 1000),
                limit("rpd", Metric::Requests, Window::Day, 2),
            ]),
        );
    });
    let token = gw.token();
    let ok = gw.chat(&token, "gpt-4o");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(
        ok.headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-ratelimit-"))
            .count(),
        3,
        "the provider's own x-ratelimit headers are replaced, not joined"
    );
    assert_eq!(ok.header("x-ratelimit-remaining-requests"), Some("1"));
    assert!(ok
        .header("x-ratelimit-reset-requests")
        .unwrap()
        .ends_with('s'));
    assert_eq!(
        ok.header("ratelimit-policy"),
        Some("\"rpm\";q=1000;w=60, \"rpd\";q=2;w=86400")
    );
    assert!(ok.header("ratelimit").unwrap().contains("\"rpd\";r=1;t="));
    assert_eq!(ok.header("retry-after"), None);
    assert_eq!(gw.chat(&token, "gpt-4o").status, 200);
    let refused = gw.chat(&token, "gpt-4o");
    assert_eq!(refused.status, 429);
    let json = refused.json();
    assert_eq!(json["error"]["code"], "rate_limit_exceeded");
    assert_eq!(json["error"]["type"], "rate_limit_error");
    assert!(json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\"rpd\""));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("0"));
    assert!(refused
        .header("ratelimit")
        .unwrap()
        .contains("\"rpd\";r=0;t="));
    assert_eq!(gw.received("openai").len(), 2);
}

#[test]
fn a_near_limit_plan_tells_the_client_only_near_the_limit_and_never_shows_the_providers() {
    let gw = Gateway::start_with(four_workers(), |config, _| {
        let mut near = plan(vec![limit("rpd", Metric::Requests, Window::Day, 5)]);
        near.rate_limit_headers = RateLimitHeaders::NearLimit;
        with_default_plan(config, near);
    });
    let token = gw.token();
    let limit_headers = |reply: &Reply| -> Vec<(String, String)> {
        reply
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-ratelimit-") || n.starts_with("ratelimit"))
            .cloned()
            .collect()
    };
    // 5 a day. The model list (not read by the filter) leaves 4: none of ours on it.
    let listed = models(&gw, &token);
    assert_eq!(listed.status, 200);
    assert_eq!(limit_headers(&listed), [], "far from the limit");
    // The next two leave 3 and 2, more than a fifth: no rate-limit header at all, neither the
    // plan's nor the provider's (which sends its own on chat answers).
    for _ in 0..2 {
        let reply = gw.chat(&token, "gpt-4o");
        assert_eq!(reply.status, 200);
        assert_eq!(limit_headers(&reply), [], "far from the limit");
    }
    // A fifth left, then none: the client hears it, from the plan only.
    for remaining in ["1", "0"] {
        let near = gw.chat(&token, "gpt-4o");
        assert_eq!(near.status, 200);
        assert_eq!(
            near.header("x-ratelimit-remaining-requests"),
            Some(remaining)
        );
        assert_eq!(near.header("x-ratelimit-limit-requests"), Some("5"));
        let current = near.header("ratelimit").unwrap();
        assert!(
            current.contains(&format!("\"rpd\";r={remaining};t=")),
            "{current}"
        );
        assert_eq!(limit_headers(&near).len(), 5, "{:?}", limit_headers(&near));
    }
    let refused = gw.chat(&token, "gpt-4o");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("0"));
    assert!(refused.header("retry-after").is_some());
    assert_eq!(
        gw.received("openai").len(),
        5,
        "the refused request never left"
    );
}

#[test]
fn counters_survive_a_config_update() {
    let key = SigningKey::generate("k1");
    let secrets = ProviderSecrets::generate();
    let mut config = gateway_config(&[&key], &secrets);
    with_default_plan(
        &mut config,
        plan(vec![limit("rpd", Metric::Requests, Window::Day, 3)]),
    );
    let json = serde_json::to_string(&config).unwrap();
    let mut gw = Gateway::start_raw(
        Options {
            updatable: true,
            ..four_workers()
        },
        Some(&json),
        key,
        secrets,
    );
    let day = today();
    let token = gw.token();
    let statuses = |gw: &Gateway, n: usize| -> Vec<u16> {
        (0..n).map(|_| gw.chat(&token, "gpt-4o").status).collect()
    };
    assert_eq!(statuses(&gw, 4), [200, 200, 200, 429]);
    // A new version that raises the limit: the three already counted stay counted.
    config.version = Some("raised-limit".into());
    config.plans.get_mut("standard").unwrap().limits[0].limit = 5;
    gw.update_config(&config);
    assert!(gw
        .envoy
        .log()
        .contains("configuration raised-limit applied"));
    if today() != day {
        return; // Midnight UTC reset the counts between the two halves.
    }
    assert_eq!(statuses(&gw, 3), [200, 200, 429]);
    assert_eq!(gw.received("openai").len(), 5);
}

#[test]
fn shadow_mode_refuses_nothing_and_counts_everything() {
    let gw = Gateway::start_with(four_workers(), |config, _| {
        let mut shadow = plan(vec![limit("rpd", Metric::Requests, Window::Day, 2)]);
        shadow.shadow = true;
        with_default_plan(config, shadow);
    });
    let token = gw.token();
    for _ in 0..5 {
        let reply = gw.chat(&token, "gpt-4o");
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply.header("x-ratelimit-remaining-requests"),
            Some("9999"),
            "clients see what they would without a plan: the provider's own headers"
        );
    }
    assert_eq!(gw.received("openai").len(), 5);
    assert_eq!(
        gw.envoy
            .stat("wasmcustom.tokenward.quota.shadow_exceeded.standard.rpd"),
        3,
        "the three requests past the limit were counted as over it"
    );
}

#[test]
fn a_budget_clamps_max_tokens_and_then_refuses() {
    let gw = Gateway::start_with(four_workers(), |config, _| {
        let mut clamped = plan(vec![limit("tpd", Metric::TotalTokens, Window::Day, 400)]);
        clamped.clamp_max_tokens = true;
        with_default_plan(config, clamped);
    });
    let token = gw.token();
    let body = r#"{"model":"claude-3-5-haiku-latest","max_tokens":4096,"messages":[{"role":"user","content":"Write a long story"}]}"#;
    let reply = gw.send(
        "POST",
        "/v1/messages",
        &[("x-api-key", token.as_bytes())],
        Some(body),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent: serde_json::Value =
        serde_json::from_slice(&gw.received("anthropic")[0].body).unwrap();
    let clamped = sent["max_tokens"].as_u64().unwrap();
    assert_eq!(
        clamped,
        400 - (body.len() as u64).div_ceil(4),
        "max_tokens lowered to what the budget leaves after the prompt"
    );
    assert_eq!(sent["messages"][0]["content"], "Write a long story");
    // The answer used far less; what is left is spent by a few more requests.
    let mut last = reply;
    for _ in 0..20 {
        last = gw.send(
            "POST",
            "/v1/messages",
            &[("x-api-key", token.as_bytes())],
            Some(body),
        );
        if last.status == 429 {
            break;
        }
    }
    assert_eq!(last.status, 429, "the budget runs out");
    assert_eq!(last.error_code().as_deref(), Some("rate_limit_exceeded"));
}
