//! What the operator sees of the traffic: token usage per provider and model in Envoy's
//! stats, equal to what the providers reported, for JSON and streamed answers of all three
//! providers; refusals by code; and an access log line per request with subject, model and
//! tokens, and never a credential.

use tokenward_e2e::client::bearer;
use tokenward_e2e::mock_provider::{prompt_tokens, COMPLETION_TOKENS};

use tokenward_filter::config::PriceConfig;

use crate::gateway::{Gateway, Options};

#[test]
fn usage_stats_equal_the_providers_usage_for_json_and_streams() {
    // 1 and 2 micro-USD a token: the cost is easy to check.
    let gw = Gateway::start_with(Options::default(), |config, _| {
        config.prices.push(PriceConfig {
            model: "claude-*".into(),
            input: 1_000_000,
            output: 2_000_000,
            cached_input: None,
        });
    });
    let token = gw.token();
    let auth = bearer(&token);
    let chat = |stream: bool| {
        let extra = if stream {
            r#","stream":true,"stream_options":{"include_usage":true}"#
        } else {
            ""
        };
        format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"Count to {}"}}]{extra}}}"#,
            u8::from(stream)
        )
    };
    let messages = |stream: bool| {
        format!(
            r#"{{"model":"claude-3-5-haiku-latest","max_tokens":32,"stream":{stream},"messages":[{{"role":"user","content":"Hello there"}}]}}"#
        )
    };
    let gemini = r#"{"contents":[{"parts":[{"text":"Why is the sky blue?"}]}]}"#;
    let mut expected = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    let mut add = |key: &'static str, body: &str| {
        let e = expected.entry(key).or_default();
        e.0 += prompt_tokens(body.as_bytes());
        e.1 += COMPLETION_TOKENS;
    };
    for stream in [false, true] {
        let body = chat(stream);
        let reply = gw.send(
            "POST",
            "/v1/chat/completions",
            &[("authorization", &auth)],
            Some(&body),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        add("openai.gpt-4o-mini", &body);
        let body = messages(stream);
        let reply = gw.send(
            "POST",
            "/v1/messages",
            &[("x-api-key", token.as_bytes())],
            Some(&body),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        add("anthropic.claude-3-5-haiku-latest", &body);
        let method = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        let path = format!("/v1beta/models/gemini-2.0-flash:{method}");
        let reply = gw.send(
            "POST",
            &path,
            &[("x-goog-api-key", token.as_bytes())],
            Some(gemini),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        add("gemini.gemini-2_0-flash", gemini);
    }
    for (key, (input, output)) in &expected {
        let stat = |metric: &str| {
            gw.envoy
                .stat(&format!("wasmcustom.tokenward.usage.{key}.{metric}"))
        };
        assert_eq!(stat("responses"), 2, "{key}: a JSON and a streamed answer");
        assert_eq!(stat("input_tokens"), *input, "{key} input tokens");
        assert_eq!(stat("output_tokens"), *output, "{key} output tokens");
        assert_eq!(stat("total_tokens"), input + output, "{key} total tokens");
        let priced = key.starts_with("anthropic.");
        assert_eq!(
            stat("cost_micro_usd"),
            if priced { input + 2 * output } else { 0 },
            "{key} cost"
        );
    }
    assert_eq!(gw.envoy.stat("wasmcustom.tokenward.requests.forwarded"), 6);
    // What Prometheus scrapes: one metric per measure, provider and model as labels.
    let scraped = gw.envoy.prometheus();
    let (input, _) = expected["openai.gpt-4o-mini"];
    let series = format!(
        "tokenward_usage_input_tokens{{provider=\"openai\",model=\"gpt-4o-mini\"}} {input}"
    );
    assert!(
        scraped.lines().any(|l| l == series),
        "{series} not in:\n{}",
        scraped
            .lines()
            .filter(|l| l.contains("tokenward"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !scraped.contains("tokenward_usage_openai"),
        "the provider is a label, not part of the name"
    );
    // The filter asked for uncompressed answers so that it could read them.
    assert!(gw
        .all_received()
        .iter()
        .all(|r| r.header("accept-encoding").is_none()));

    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = gw.envoy.access_log();
    let line = log
        .lines()
        .find(|l| l.contains("/v1/messages"))
        .expect("an access log line for /v1/messages");
    assert!(line.contains("subject=alice"), "{line}");
    assert!(line.contains("model=claude-3-5-haiku-latest"), "{line}");
    assert!(
        line.contains(&format!("output_tokens={COMPLETION_TOKENS}")),
        "{line}"
    );
    let cost = line
        .split("cost_micro_usd=")
        .nth(1)
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(cost.is_some_and(|c| c > 2 * COMPLETION_TOKENS), "{line}");
}

#[test]
fn refusals_are_counted_by_code_and_logged_without_credentials() {
    let gw = Gateway::start();
    let token = gw.token();
    assert_eq!(
        gw.send("GET", &format!("/v1/models?key={token}"), &[], None)
            .status,
        400
    );
    assert_eq!(gw.send("GET", "/v1/models", &[], None).status, 401);
    assert_eq!(gw.send("GET", "/v1/models", &[], None).status, 401);
    assert_eq!(
        gw.envoy
            .stat("wasmcustom.tokenward.requests.refused.token_in_url"),
        1
    );
    assert_eq!(
        gw.envoy
            .stat("wasmcustom.tokenward.requests.refused.missing_credential"),
        2
    );
    // Refused after authentication: the access log names who, and for which model.
    let limited = gw.mint(tokenward_e2e::setup::TokenSpec {
        models: Some(vec!["gpt-4o*".into()]),
        ..Default::default()
    });
    let refused = gw.send(
        "POST",
        "/v1/chat/completions",
        &[("authorization", &bearer(&limited))],
        Some(r#"{"model":"o1-preview","messages":[]}"#),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(gw.envoy.stat("wasmcustom.tokenward.requests.forwarded"), 0);
    // Prometheus sees one refusal metric with the code as a label.
    assert!(
        gw.envoy
            .prometheus()
            .lines()
            .any(|l| l == r#"tokenward_requests_refused{code="missing_credential"} 2"#),
        "{}",
        gw.envoy.prometheus()
    );
    // Give the access log a moment: it is written when each stream ends.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = gw.envoy.access_log();
    assert_eq!(log.lines().count(), 4, "{log}");
    let line = log.lines().find(|l| l.contains(" 403 ")).unwrap();
    assert!(
        line.contains("subject=alice") && line.contains("model=o1-preview"),
        "{line}"
    );
    assert!(!log.contains(&token), "a credential reached the access log");
    gw.assert_log_clean(&[&token]);
}
