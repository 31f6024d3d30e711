use super::*;

#[test]
fn every_code_is_distinct_and_snake_case() {
    let mut seen = std::collections::HashSet::new();
    for code in ErrorCode::ALL {
        assert!(seen.insert(code.code()), "duplicate code {}", code.code());
        assert!(code
            .code()
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_'));
    }
}

#[test]
fn body_has_the_openai_shape() {
    let refusal = Refusal::new(ErrorCode::InvalidToken, "token signature is invalid");
    let body: serde_json::Value = serde_json::from_str(&refusal.body()).unwrap();
    assert_eq!(body["error"]["code"], "invalid_token");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(body["error"]["message"], "token signature is invalid");
    assert!(body["error"]["param"].is_null());
}

#[test]
fn unauthorized_carries_a_bearer_challenge() {
    let missing = Refusal::new(ErrorCode::MissingCredential, "no credential");
    assert!(missing.headers().contains(&(
        "www-authenticate".to_string(),
        "Bearer realm=\"tokenward\"".to_string()
    )));
    let expired = Refusal::new(ErrorCode::TokenExpired, "token has \"expired\"");
    let challenge = expired
        .headers()
        .into_iter()
        .find(|(k, _)| k == "www-authenticate");
    assert_eq!(
        challenge.unwrap().1,
        "Bearer realm=\"tokenward\", error=\"invalid_token\", error_description=\"token has 'expired'\""
    );
}

#[test]
fn insufficient_scope_names_the_required_scope() {
    let refusal = Refusal::new(ErrorCode::InsufficientScope, "missing scope")
        .with_required_scope("chat embeddings".into());
    let (_, challenge) = refusal
        .headers()
        .into_iter()
        .find(|(k, _)| k == "www-authenticate")
        .unwrap();
    assert!(challenge.contains("error=\"insufficient_scope\""));
    assert!(challenge.ends_with("scope=\"chat embeddings\""));
    assert_eq!(refusal.code.status(), 403);
}

#[test]
fn not_configured_is_503_without_challenge() {
    let refusal = Refusal::new(ErrorCode::NotConfigured, "no configuration");
    assert_eq!(refusal.code.status(), 503);
    assert!(refusal
        .headers()
        .iter()
        .all(|(k, _)| k != "www-authenticate"));
}

#[test]
fn each_style_gives_its_sdks_shape_with_our_code_and_message() {
    let refusal = Refusal::new(ErrorCode::RateLimitExceeded, "slow down");
    let openai: serde_json::Value = serde_json::from_str(&refusal.body()).unwrap();
    assert_eq!(
        openai,
        serde_json::json!({"error": {"message": "slow down", "type": "rate_limit_error",
            "param": null, "code": "rate_limit_exceeded"}})
    );
    let anthropic: serde_json::Value =
        serde_json::from_str(&refusal.clone().in_style(ErrorStyle::Anthropic).body()).unwrap();
    assert_eq!(
        anthropic,
        serde_json::json!({"type": "error", "error": {"type": "rate_limit_error",
            "message": "slow down", "code": "rate_limit_exceeded",
            "details": {"error_code": "rate_limit_exceeded"}}})
    );
    let google: serde_json::Value =
        serde_json::from_str(&refusal.in_style(ErrorStyle::Google).body()).unwrap();
    assert_eq!(google["error"]["code"], 429);
    assert_eq!(google["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(google["error"]["message"], "slow down");
    assert_eq!(
        google["error"]["details"][0]["reason"],
        "rate_limit_exceeded"
    );
    assert_eq!(google["error"]["details"][0]["domain"], "tokenward");
}

/// The bodies are written by hand (`json::write`): byte for byte what serde_json wrote for
/// the structs they replaced, escapes included.
#[test]
fn bodies_are_written_exactly_as_before() {
    let refusal = Refusal::new(ErrorCode::RateLimitExceeded, "a \"quoted\"\nline\u{1}é");
    let message = r#""a \"quoted\"\nline\u0001é""#;
    assert_eq!(
        refusal.body(),
        format!(
            r#"{{"error":{{"message":{message},"type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}}}"#
        )
    );
    assert_eq!(
        refusal.clone().in_style(ErrorStyle::Anthropic).body(),
        format!(
            r#"{{"type":"error","error":{{"type":"rate_limit_error","message":{message},"code":"rate_limit_exceeded","details":{{"error_code":"rate_limit_exceeded"}}}}}}"#
        )
    );
    assert_eq!(
        refusal.in_style(ErrorStyle::Google).body(),
        format!(
            r#"{{"error":{{"code":429,"message":{message},"status":"RESOURCE_EXHAUSTED","details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"rate_limit_exceeded","domain":"tokenward"}}]}}}}"#
        )
    );
}
