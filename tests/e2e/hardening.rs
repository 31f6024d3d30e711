//! Regressions from the outside attack run, each as a client sees it through a real Envoy:
//! body rewrites that keep the client's bytes at any depth, credentials hidden in encoded
//! query parameters, copies of a credential in other headers, encoded Gemini models, and a
//! second, empty `Authorization`.

use tokenward_e2e::client::bearer;

use crate::gateway::Gateway;

#[test]
fn regression_a_rewritten_body_reaches_the_provider_byte_for_byte_at_any_depth() {
    let gw = Gateway::start();
    let token = gw.token();
    // A streaming chat gets `stream_options.include_usage` added, so it is rewritten.
    let body = format!(
        r#"{{ "seed": 12345678901234567890123, "model": "gpt-4o-mini", "stream": true,
  "zeta": 0.10000000000000001, "alpha": 1, "messages": [{{"role": "user", "content": "hi"}}],
  "metadata": {{"nested": {}0{}}} }}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    let reply = gw.send(
        "POST",
        "/v1/chat/completions",
        &[("authorization", &bearer(&token))],
        Some(&body),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let received = gw.received("openai");
    let sent = String::from_utf8(received[0].body.clone()).unwrap();
    let expected = format!(
        "{},\"stream_options\":{{\"include_usage\":true}}}}",
        &body[..body.len() - 1]
    );
    assert_eq!(sent, expected);
    assert_eq!(
        received[0].header("content-length"),
        Some(expected.len().to_string())
    );
}

#[test]
fn regression_a_credential_behind_an_encoded_query_name_or_equals_is_refused() {
    let gw = Gateway::start();
    let token = gw.token();
    for query in [
        format!("key%3D{token}"),
        format!("%6Bey={token}"),
        format!("key%253D{token}"),
        format!("alt=sse;key={token}"),
    ] {
        let reply = gw.send("GET", &format!("/v1/models?{query}"), &[], None);
        assert_eq!(
            (reply.status, reply.error_code().as_deref()),
            (400, Some("token_in_url")),
            "{query}: {}",
            reply.body
        );
    }
    // A copy under any other name, next to the credential in its header.
    let reply = gw.send(
        "GET",
        &format!("/v1/models?state={token}"),
        &[("authorization", &bearer(&token))],
        None,
    );
    assert_eq!(reply.error_code().as_deref(), Some("token_in_url"));
    assert!(gw.all_received().is_empty());
    gw.assert_log_clean(&[&token]);
}

#[test]
fn regression_a_copy_of_the_token_in_a_cookie_or_another_header_never_reaches_the_provider() {
    let gw = Gateway::start();
    let token = gw.token();
    let cookie = format!("theme=dark; tw_session={token}");
    let reply = gw.send(
        "GET",
        "/v1/models",
        &[
            ("authorization", &bearer(&token)),
            ("cookie", cookie.as_bytes()),
            ("x-debug-token", token.as_bytes()),
            ("x-request-tag", b"kept"),
        ],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let received = gw.received("openai");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("cookie"), None);
    assert_eq!(received[0].header("x-debug-token"), None);
    assert_eq!(received[0].header("x-request-tag").as_deref(), Some("kept"));
    gw.assert_never_forwarded(&token);
}

#[test]
fn regression_an_encoded_gemini_model_is_refused_not_matched() {
    let gw = Gateway::start();
    let token = gw.token();
    let reply = gw.send(
        "POST",
        "/v1beta/models/gemini-2.0-flash%3Agemini-2.5-pro:generateContent",
        &[("x-goog-api-key", token.as_bytes())],
        Some(r#"{"contents":[]}"#),
    );
    assert_eq!(
        (reply.status, reply.error_code().as_deref()),
        (400, Some("invalid_header")),
        "{}",
        reply.body
    );
    assert!(gw.all_received().is_empty());
}

#[test]
fn regression_a_second_authorization_in_any_form_is_ambiguous_or_never_seen() {
    let gw = Gateway::start();
    let token = gw.token();
    for second in [
        &b"Bearer"[..],
        b"Bearer ",
        b"Basic dXNlcjpwYXNz",
        b"Bearer x",
    ] {
        let reply = gw.send(
            "GET",
            "/v1/models",
            &[
                ("authorization", &bearer(&token)),
                ("authorization", second),
            ],
            None,
        );
        assert_eq!(
            (reply.status, reply.error_code().as_deref()),
            (400, Some("ambiguous_credential")),
            "second {:?}: {}",
            String::from_utf8_lossy(second),
            reply.body
        );
    }
    assert!(gw.all_received().is_empty());
    // Envoy joins a repeated Authorization into one value before any filter runs and drops
    // an empty one there: neither the filter nor the provider can see it, so the request is
    // as unambiguous as if it had not been sent. The provider gets exactly one Authorization,
    // its own.
    for second in [&b""[..], b" "] {
        let reply = gw.send(
            "GET",
            "/v1/models",
            &[
                ("authorization", &bearer(&token)),
                ("authorization", second),
            ],
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let received = gw.received("openai");
        let last = received.last().unwrap();
        assert_eq!(last.header_count("authorization"), 1);
        assert_eq!(
            last.header("authorization"),
            Some(format!("Bearer {}", gw.secrets.get("openai")))
        );
    }
    gw.assert_never_forwarded(&token);
}
