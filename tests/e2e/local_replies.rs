//! Refusals Envoy makes itself — a request it cannot parse, headers too large, a provider that
//! is down or silent — reach the client in the filter's JSON shape (the shipped
//! `local_reply_config`), while the filter's own refusals pass that mapping byte for byte.
//! Sent raw over TCP: no HTTP client library sends a NUL in a header.

use std::net::{SocketAddr, TcpListener};

use serde::Deserialize;
use serde_yaml::Value;
use tokenward_e2e::client::{self, bearer, Reply};
use tokenward_e2e::envoy::EnvoyConfig;
use tokenward_e2e::setup::SigningKey;
use tokenward_filter::config::Config;

use crate::gateway::{Gateway, Options};

/// Asserts the OpenAI error shape the filter's refusals have, with `status` and `code`.
fn assert_json_refusal(what: &str, reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{what}: {}",
        reply.body
    );
    let json: serde_json::Value = serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {:?}", reply.body));
    let error = json["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no error object: {}", reply.body));
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"], "{what}");
    assert_eq!(error["code"], code, "{what}: {}", reply.body);
    assert!(error["param"].is_null(), "{what}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what} has a message"
    );
    assert!(
        error["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("_error")),
        "{what} has an OpenAI error type: {}",
        reply.body
    );
}

/// A loopback address nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn post(path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: gw\r\n{headers}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn envoys_own_refusals_have_the_filters_json_shape() {
    let down = closed_port();
    // Accepts connections and never answers: a provider that hangs.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let gw = Gateway::start_with(
        Options {
            patch_envoy: Some(Box::new(move |config: EnvoyConfig| {
                config
                    .with_upstream("openai", down)
                    .unwrap()
                    .with_upstream("anthropic", silent_addr)
                    .unwrap()
                    .with_route_timeout("1s")
                    .unwrap()
            })),
            ..Options::default()
        },
        |_, _| {},
    );
    let port = gw.envoy.port;
    let token = gw.token();
    let raw = |what: &str, request: &[u8]| {
        client::send_raw(port, request).unwrap_or_else(|e| panic!("{what}: {e:#}"))
    };

    let cases: [(&str, Vec<u8>, u16, &str); 7] = [
        (
            "a NUL in a header",
            b"GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-note: a\0b\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "a path that is not UTF-8",
            b"GET /v1/\xc3\x28models HTTP/1.1\r\nhost: gw\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "60 KB of headers",
            [
                &b"GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-big: "[..],
                &vec![b'a'; 60 * 1024],
                b"\r\n\r\n",
            ]
            .concat(),
            431,
            "request_header_too_large",
        ),
        (
            "an encoded slash in the path",
            b"GET /v1/chat%2Fcompletions HTTP/1.1\r\nhost: gw\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "a transfer-encoding Envoy does not implement",
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: gzip\r\n\r\n"
                .to_vec(),
            501,
            "not_implemented",
        ),
        (
            // Any other status Envoy answers with keeps its status and gets a generic code.
            "HTTP/1.0",
            b"GET /v1/models HTTP/1.0\r\n\r\n".to_vec(),
            426,
            "bad_request",
        ),
        (
            "an unknown path (the filter's own refusal)",
            post(
                "/v1/audio/speech",
                &format!("authorization: Bearer {token}\r\n"),
                "{}",
            ),
            404,
            "route_not_found",
        ),
    ];
    for (what, request, status, code) in &cases {
        let reply = raw(what, request);
        assert_json_refusal(what, &reply, *status, code);
    }

    let chat = r#"{"model":"gpt-4o","messages":[]}"#;
    let reply = raw(
        "a provider that is down",
        &post(
            "/v1/chat/completions",
            &format!("authorization: Bearer {token}\r\n"),
            chat,
        ),
    );
    assert_json_refusal(
        "a provider that is down",
        &reply,
        503,
        "upstream_unavailable",
    );
    let messages = r#"{"model":"claude-3-5-haiku-latest","max_tokens":16,"messages":[]}"#;
    let reply = raw(
        "a provider that does not answer",
        &post("/v1/messages", &format!("x-api-key: {token}\r\n"), messages),
    );
    assert_json_refusal(
        "a provider that does not answer",
        &reply,
        504,
        "upstream_timeout",
    );
    drop(silent);

    // Envoy's reason stays in the access log for the operator (flushed every 50 ms).
    let names =
        |log: &str, flag: &str| log.lines().any(|l| l.split(' ').any(|field| field == flag));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut log = gw.envoy.access_log();
    while !["DPE", "UF", "UT"].iter().all(|f| names(&log, f)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the access log names DPE, UF and UT:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        log = gw.envoy.access_log();
    }
    gw.assert_log_clean(&[&token]);
}

#[test]
fn the_filters_own_refusals_pass_the_mapping_byte_for_byte() {
    // The same filter configuration behind the shipped Envoy config and behind one without
    // the mapping: every refusal of the filter must be the same in both.
    fn customize(config: &mut Config, _: &SigningKey) {
        config.routes[0].max_body_bytes = 64;
    }
    let mapped = Gateway::start_with(Options::default(), customize);
    let unmapped = Gateway::start_with(
        Options {
            patch_envoy: Some(Box::new(|config: EnvoyConfig| {
                config.without_local_reply_config().unwrap()
            })),
            ..Options::default()
        },
        customize,
    );
    let chat = "/v1/chat/completions";
    let seen = |gw: &Gateway| {
        let token = gw.token();
        let auth = bearer(&token);
        let big = format!(
            r#"{{"model":"gpt-4o","messages":[],"x":"{}"}}"#,
            "x".repeat(100)
        );
        let replies = vec![
            gw.send("POST", chat, &[], Some("{}")),
            gw.send(
                "POST",
                chat,
                &[("authorization", b"Bearer not.a.jwt")],
                Some("{}"),
            ),
            gw.send("GET", "/v1/models", &[("x-api-key", b"\xc3\x28")], None),
            gw.send("GET", &format!("/v1/models?key={token}"), &[], None),
            gw.send(
                "POST",
                "/v1/audio/speech",
                &[("authorization", &auth)],
                None,
            ),
            gw.send(
                "POST",
                chat,
                &[("authorization", &auth)],
                Some(r#"{"model":"#),
            ),
            gw.send("POST", chat, &[("authorization", &auth)], Some(&big)),
        ];
        replies
            .into_iter()
            .map(|mut reply| {
                reply.headers.retain(|(name, _)| name != "date");
                reply.headers.sort();
                reply
            })
            .collect::<Vec<_>>()
    };
    let (with_mapping, without) = (seen(&mapped), seen(&unmapped));
    let codes: Vec<_> = with_mapping.iter().map(Reply::error_code).collect();
    assert_eq!(
        codes,
        [
            "missing_credential",
            "invalid_token",
            "invalid_header",
            "token_in_url",
            "route_not_found",
            "invalid_json",
            "request_too_large"
        ]
        .map(|c| Some(c.to_string())),
        "the cases are the filter's refusals"
    );
    for (a, b) in with_mapping.iter().zip(&without) {
        assert_eq!(
            (a.status, &a.headers, &a.body),
            (b.status, &b.headers, &b.body),
            "the mapping changed a refusal of the filter"
        );
    }
}

/// The `local_reply_config` of a YAML file, wherever it sits: a field, or the value of a
/// JSON patch that adds it (Envoy Gateway).
fn local_reply_config(path: &str) -> Value {
    fn find(value: &Value) -> Option<&Value> {
        match value {
            Value::Mapping(map) => map
                .get("local_reply_config")
                .or_else(|| {
                    let patched = map.get("path").and_then(Value::as_str);
                    patched
                        .is_some_and(|p| p.ends_with("/local_reply_config"))
                        .then(|| map.get("value"))
                        .flatten()
                })
                .or_else(|| map.values().find_map(find)),
            Value::Sequence(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    let text = std::fs::read_to_string(tokenward_e2e::repo_root().join(path)).unwrap();
    let mut found = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).unwrap();
        if let Some(config) = find(&value) {
            found.push(config.clone());
        }
    }
    assert_eq!(found.len(), 1, "{path} has one local_reply_config");
    found.remove(0)
}

#[test]
fn every_shipped_envoy_config_maps_envoys_refusals_alike_and_the_docs_list_their_codes() {
    let shipped = local_reply_config("envoy/envoy.yaml");
    for path in [
        "envoy/envoy-xds.yaml",
        "examples/istio/local-reply.yaml",
        "examples/envoy-gateway/local-reply.yaml",
    ] {
        assert_eq!(
            local_reply_config(path),
            shipped,
            "{path} maps Envoy's refusals as envoy/envoy.yaml does"
        );
    }
    let docs = std::fs::read_to_string(tokenward_e2e::repo_root().join("docs/config.md")).unwrap();
    let section = docs
        .split_once("## Envoy's own refusals")
        .map(|(_, rest)| rest)
        .expect("docs/config.md has a section on Envoy's own refusals");
    let mappers = shipped["mappers"].as_sequence().unwrap();
    let mut codes = 0;
    for mapper in mappers {
        let Some(body) =
            mapper["body_format_override"]["text_format_source"]["inline_string"].as_str()
        else {
            continue;
        };
        assert_eq!(
            mapper["body_format_override"]["content_type"], "application/json",
            "{body}"
        );
        // The shape is fixed text: valid JSON once Envoy's status is in.
        let json: serde_json::Value =
            serde_json::from_str(&body.replace("%RESPONSE_CODE%", "599")).unwrap();
        let code = json["error"]["code"].as_str().unwrap();
        assert!(
            section.contains(&format!("`{code}`")),
            "docs/config.md lists {code}"
        );
        codes += 1;
    }
    assert!(codes >= 10, "{codes} mapped codes");
}
