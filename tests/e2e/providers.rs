//! A valid credential reaches the right provider, with that provider's credential in its own
//! style, and nothing of the client's credential.

use tokenward_e2e::client::bearer;
use tokenward_e2e::mock_provider::{prompt_tokens, COMPLETION_TOKENS};
use tokenward_e2e::setup::add_api_key;

use crate::gateway::{Gateway, Options};

#[test]
fn jwt_reaches_openai_with_the_provider_bearer_and_without_the_client_token() {
    let gw = Gateway::start();
    let token = gw.token();
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
    let reply = gw.send(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &bearer(&token)),
            ("x-tokenward-cluster", b"gemini"),
        ],
        Some(body),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json = reply.json();
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "Hello from the mock provider"
    );
    assert_eq!(
        json["usage"]["prompt_tokens"],
        prompt_tokens(body.as_bytes())
    );
    assert_eq!(json["usage"]["completion_tokens"], COMPLETION_TOKENS);

    let received = gw.received("openai");
    assert_eq!(received.len(), 1, "exactly one request reaches OpenAI");
    let r = &received[0];
    assert_eq!(
        r.header("authorization").unwrap(),
        format!("Bearer {}", gw.secrets.get("openai"))
    );
    assert_eq!(r.header_count("authorization"), 1);
    assert_eq!(r.header("host").as_deref(), Some("api.openai.com"));
    assert_eq!(
        r.header("x-tokenward-cluster"),
        None,
        "the routing header stays inside Envoy"
    );
    assert_eq!(r.body, body.as_bytes(), "the body is forwarded untouched");
    assert!(
        gw.received("gemini").is_empty(),
        "a client-sent x-tokenward-cluster must not pick the upstream"
    );
    gw.assert_never_forwarded(&token);
    gw.assert_log_clean(&[&token]);
}

#[test]
fn anthropic_sdk_style_request_gets_x_api_key_and_version() {
    let gw = Gateway::start();
    let token = gw.token();
    let body = r#"{"model":"claude-3-5-haiku-latest","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}"#;
    // The Anthropic SDK sends its key in x-api-key; with a tokenward token there, it just works.
    let reply = gw.send(
        "POST",
        "/v1/messages",
        &[("x-api-key", token.as_bytes())],
        Some(body),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["usage"]["output_tokens"], COMPLETION_TOKENS);
    let r = &gw.received("anthropic")[0];
    assert_eq!(r.header("x-api-key").unwrap(), gw.secrets.get("anthropic"));
    assert_eq!(r.header("anthropic-version").as_deref(), Some("2023-06-01"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("host").as_deref(), Some("api.anthropic.com"));
    gw.assert_never_forwarded(&token);
}

#[test]
fn gemini_streaming_with_an_api_key_in_x_goog_api_key() {
    let mut key = String::new();
    let gw = Gateway::start_with(Options::default(), |config, _| {
        key = add_api_key(
            config,
            "svc-key",
            "batch-service",
            &["chat"],
            &["gemini-2.*"],
        );
    });
    let reply = gw.send(
        "POST",
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", key.as_bytes())],
        Some(r#"{"contents":[{"parts":[{"text":"Hi"}]}]}"#),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        reply.body.matches("data: ").count(),
        3,
        "every SSE event passes through"
    );
    assert!(reply.body.contains("usageMetadata"));
    let r = &gw.received("gemini")[0];
    assert_eq!(
        r.header("x-goog-api-key").unwrap(),
        gw.secrets.get("gemini")
    );
    assert_eq!(
        r.path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
    gw.assert_never_forwarded(&key);
    // The same key may not use a model outside its list.
    let refused = gw.send(
        "POST",
        "/v1beta/models/gemini-1.5-pro:generateContent",
        &[("x-goog-api-key", key.as_bytes())],
        Some("{}"),
    );
    assert_eq!(
        (refused.status, refused.error_code().as_deref()),
        (403, Some("model_not_allowed"))
    );
}

#[test]
fn every_gemini_call_a_google_sdk_makes_under_v1_and_v1beta_reaches_gemini() {
    let gw = Gateway::start();
    let token = gw.token();
    let mut sent = Vec::new();
    for version in ["v1", "v1beta"] {
        for (method, body) in [
            (
                "generateContent",
                r#"{"contents":[{"parts":[{"text":"Hi"}]}]}"#,
            ),
            ("countTokens", r#"{"contents":[{"parts":[{"text":"Hi"}]}]}"#),
            ("embedContent", r#"{"content":{"parts":[{"text":"Hi"}]}}"#),
            ("batchEmbedContents", r#"{"requests":[]}"#),
        ] {
            let path = format!("/{version}/models/gemini-2.0-flash:{method}");
            let reply = gw.send(
                "POST",
                &path,
                &[("x-goog-api-key", token.as_bytes())],
                Some(body),
            );
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            sent.push(path);
        }
    }
    let received: Vec<String> = gw
        .received("gemini")
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(received, sent, "each call reached Gemini as it was sent");
    assert!(gw
        .received("gemini")
        .iter()
        .all(|r| r.header("x-goog-api-key").as_deref() == Some(gw.secrets.get("gemini"))));
    gw.assert_never_forwarded(&token);
    // Generations are metered under either version.
    assert_eq!(
        gw.envoy
            .stat("wasmcustom.tokenward.usage.gemini.gemini-2_0-flash.responses"),
        2
    );
}

#[test]
fn a_model_listing_goes_to_the_provider_whose_sdk_asked() {
    let gw = Gateway::start();
    let token = gw.token();
    let bearer = tokenward_e2e::client::bearer(&token);
    let list = |path: &str, headers: &[(&str, &[u8])]| {
        let reply = gw.send("GET", path, headers, None);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        reply.json()
    };
    // OpenAI's SDK: a bearer token.
    let openai = list("/v1/models", &[("authorization", &bearer)]);
    assert_eq!(openai["object"], "list");
    // Anthropic's: x-api-key and its version header.
    let anthropic = list(
        "/v1/models",
        &[
            ("x-api-key", token.as_bytes()),
            ("anthropic-version", b"2023-06-01"),
        ],
    );
    assert_eq!(anthropic["data"][0]["type"], "model", "{anthropic}");
    // Google's, under /v1 and /v1beta.
    for path in ["/v1/models", "/v1beta/models"] {
        let gemini = list(path, &[("x-goog-api-key", token.as_bytes())]);
        assert!(gemini["models"].is_array(), "{path}: {gemini}");
    }
    assert_eq!(gw.received("openai").len(), 1);
    assert_eq!(gw.received("anthropic").len(), 1);
    assert_eq!(gw.received("gemini").len(), 2);
    gw.assert_never_forwarded(&token);
}

#[test]
fn api_key_as_bearer_and_azure_style_header_reach_openai() {
    let mut key = String::new();
    let gw = Gateway::start_with(Options::default(), |config, _| {
        key = add_api_key(config, "ci-key", "ci", &["chat", "models"], &["gpt-4o*"]);
    });
    let reply = gw.chat(&key, "gpt-4o");
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Azure OpenAI SDKs send `api-key`.
    let reply = gw.send("GET", "/v1/models", &[("api-key", key.as_bytes())], None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let received = gw.received("openai");
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!(
            r.header("authorization").unwrap(),
            format!("Bearer {}", gw.secrets.get("openai"))
        );
        assert_eq!(r.header("api-key"), None);
    }
    gw.assert_never_forwarded(&key);
    gw.assert_log_clean(&[&key]);
}

#[test]
fn query_credential_is_moved_out_of_the_url_where_a_route_allows_it() {
    let mut key = String::new();
    let gw = Gateway::start_with(Options::default(), |config, _| {
        key = add_api_key(config, "legacy", "legacy-app", &["chat"], &["gemini-*"]);
        config
            .routes
            .iter_mut()
            .find(|r| r.name == "gemini-generate")
            .unwrap()
            .allow_query_credential = true;
    });
    let reply = gw.send(
        "POST",
        &format!("/v1beta/models/gemini-2.0-flash:generateContent?key={key}"),
        &[],
        Some(r#"{"contents":[]}"#),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["usageMetadata"]["candidatesTokenCount"],
        COMPLETION_TOKENS
    );
    let r = &gw.received("gemini")[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    gw.assert_never_forwarded(&key);
}

#[test]
fn openai_and_anthropic_streams_pass_through_event_by_event() {
    let gw = Gateway::start();
    let token = gw.token();
    let body = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}"#;
    let reply = gw.send(
        "POST",
        "/v1/chat/completions",
        &[("authorization", &bearer(&token))],
        Some(body),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let events: Vec<&str> = reply.body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let usage = events
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e.strip_prefix("data: ")?).ok())
        .find(|v| v["usage"].is_object())
        .expect("the usage chunk arrives");
    assert_eq!(usage["usage"]["completion_tokens"], COMPLETION_TOKENS);

    let body = r#"{"model":"claude-3-5-sonnet-latest","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;
    let reply = gw.send(
        "POST",
        "/v1/messages",
        &[("x-api-key", token.as_bytes())],
        Some(body),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let names: Vec<&str> = reply
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.contains(&"message_delta"));
    assert_eq!(
        gw.received("anthropic")[0].header("x-api-key").unwrap(),
        gw.secrets.get("anthropic")
    );
    gw.assert_never_forwarded(&token);
}
