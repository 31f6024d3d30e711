//! Every refusal a client can provoke, with its status, its stable code, the OpenAI error
//! shape and (for 401) the bearer challenge. Nothing refused reaches a provider.

use tokenward_e2e::client::{bearer, Reply};
use tokenward_e2e::setup::{add_api_key, TokenSpec};
use tokenward_filter::config::{
    CredentialSource, LimitConfig, LimitScope, Metric, PriceConfig, RouteConfig,
};
use tokenward_filter::error::ErrorCode;
use tokenward_filter::window::Window;

use crate::gateway::{Gateway, Options};

/// A refusal with `status` and `code`, in the error shape of the route's provider: OpenAI's
/// (`error.param` present), Anthropic's (`"type":"error"`) or Google's (`error.status`).
fn assert_refusal(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{code}: {}", reply.body);
    let json = reply.json();
    assert_eq!(reply.error_code().as_deref(), Some(code), "{}", reply.body);
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{code} has a message"
    );
    if json["type"] == "error" {
        assert!(
            json["error"]["type"].is_string(),
            "{code} has an Anthropic type"
        );
    } else if json["error"]["status"].is_string() {
        assert_eq!(
            json["error"]["code"], status,
            "{code}: Google's code is the status"
        );
    } else {
        assert!(json["error"]["type"].is_string(), "{code} has a type");
        assert!(
            json["error"].as_object().unwrap().contains_key("param"),
            "{code} has the OpenAI shape"
        );
    }
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{code}"
    );
    if status == 401 {
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|c| c.starts_with("Bearer realm=\"tokenward\"")),
            "{code}"
        );
    }
}

#[test]
fn every_client_visible_error_code_with_its_status() {
    let mut api_key = String::new();
    let gw = Gateway::start_with(Options::default(), |config, _| {
        api_key = add_api_key(config, "k", "svc", &["chat"], &["gpt-*"]);
        config.revocations.subjects.push("revoked-user".into());
        config.routes[0].max_body_bytes = 2048;
        let plan = |limit: LimitConfig| tokenward_filter::testing::plan(vec![limit], 1024);
        config.plans.insert(
            "one-a-day".into(),
            plan(LimitConfig {
                name: "rpd".into(),
                metric: Metric::Requests,
                window: Window::Day,
                limit: 1,
                per: LimitScope::Subject,
            }),
        );
        config.plans.insert(
            "tiny-budget".into(),
            plan(LimitConfig {
                name: "usd".into(),
                metric: Metric::CostMicroUsd,
                window: Window::Month,
                limit: 100,
                per: LimitScope::Tenant,
            }),
        );
        config.prices.push(PriceConfig {
            model: "gpt-4o*".into(),
            input: 1_000_000,
            output: 1_000_000,
            cached_input: None,
        });
        // Parts this Envoy cannot load: each refuses only its own requests.
        let mut keyless = config.providers[0].clone();
        keyless.name = "keyless".into();
        keyless.cluster = "keyless".into();
        keyless.credential = CredentialSource::Env("NOT_IN_THIS_ENVOY".into());
        config.providers.push(keyless);
        let template = config.routes[0].clone();
        let route = |name: &str, prefix: &str, provider: &str| RouteConfig {
            name: name.into(),
            path_prefix: prefix.into(),
            provider: Some(provider.into()),
            ..template.clone()
        };
        let keyless_route = route("keyless", "/v1/keyless/", "keyless");
        let broken_route = route("broken", "/v1/broken/", "nobody");
        config.routes.insert(0, keyless_route);
        config.routes.insert(0, broken_route);
        config.plans.insert(
            "not a plan name".into(),
            plan(LimitConfig {
                name: "rpd".into(),
                metric: Metric::Requests,
                window: Window::Day,
                limit: 1,
                per: LimitScope::Subject,
            }),
        );
    });
    let token = gw.token();
    let auth = bearer(&token);
    let chat = "/v1/chat/completions";
    let ok_body = r#"{"model":"gpt-4o","messages":[]}"#;
    let mut covered = Vec::new();
    let mut check = |reply: Reply, code: ErrorCode| {
        assert_refusal(&reply, code.status(), code.code());
        covered.push(code);
    };

    check(
        gw.send(
            "POST",
            "/v1/audio/speech",
            &[("authorization", &auth)],
            Some(ok_body),
        ),
        ErrorCode::RouteNotFound,
    );
    check(
        gw.send("GET", &format!("/v1/models?key={token}"), &[], None),
        ErrorCode::TokenInUrl,
    );
    check(
        gw.send(
            "GET",
            "/v1/models",
            &[
                ("authorization", &auth),
                ("x-goog-api-key", token.as_bytes()),
            ],
            None,
        ),
        ErrorCode::AmbiguousCredential,
    );
    check(
        gw.send("GET", "/v1/models", &[("x-api-key", b"\xc3\x28")], None),
        ErrorCode::InvalidHeader,
    );
    check(
        gw.send("GET", "/v1/models", &[], None),
        ErrorCode::MissingCredential,
    );
    check(
        gw.send(
            "GET",
            "/v1/models",
            &[("authorization", b"Bearer not.a.jwt")],
            None,
        ),
        ErrorCode::InvalidToken,
    );
    let expired = gw.mint(TokenSpec {
        issued_offset: -7200,
        lifetime: 3600,
        ..TokenSpec::default()
    });
    check(gw.chat(&expired, "gpt-4o"), ErrorCode::TokenExpired);
    let revoked = gw.mint(TokenSpec {
        subject: "revoked-user".into(),
        ..TokenSpec::default()
    });
    check(gw.chat(&revoked, "gpt-4o"), ErrorCode::TokenRevoked);
    let mut typo = api_key.clone();
    typo.replace_range(5..6, if &typo[5..6] == "A" { "B" } else { "A" });
    check(gw.chat(&typo, "gpt-4o"), ErrorCode::InvalidApiKey);
    let no_chat = gw.mint(TokenSpec {
        scopes: vec!["models".into()],
        ..TokenSpec::default()
    });
    check(gw.chat(&no_chat, "gpt-4o"), ErrorCode::InsufficientScope);
    let mini_only = gw.mint(TokenSpec {
        models: Some(vec!["gpt-4o-mini".into()]),
        ..TokenSpec::default()
    });
    check(gw.chat(&mini_only, "gpt-4o"), ErrorCode::ModelNotAllowed);
    check(
        gw.send(
            "POST",
            chat,
            &[("authorization", &auth)],
            Some(r#"{"messages":[]}"#),
        ),
        ErrorCode::MissingModel,
    );
    check(
        gw.send(
            "POST",
            "/v1beta/models/gpt-4o:generateContent",
            &[("x-goog-api-key", token.as_bytes())],
            Some("{}"),
        ),
        ErrorCode::ModelNotFound,
    );
    check(
        gw.send(
            "POST",
            chat,
            &[("authorization", &auth)],
            Some(r#"{"model":"gpt-4o","#),
        ),
        ErrorCode::InvalidJson,
    );
    let big = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(4096)
    );
    check(
        gw.send("POST", chat, &[("authorization", &auth)], Some(&big)),
        ErrorCode::RequestTooLarge,
    );

    let planned = |plan: &str| {
        gw.mint(TokenSpec {
            subject: format!("user-of-{plan}"),
            plan: Some(plan.into()),
            ..TokenSpec::default()
        })
    };
    check(gw.chat(&planned("gold"), "gpt-4o"), ErrorCode::UnknownPlan);
    check(
        gw.chat(&planned("not a plan name"), "gpt-4o"),
        ErrorCode::PlanUnavailable,
    );
    check(
        gw.send(
            "POST",
            "/v1/keyless/chat",
            &[("authorization", &auth)],
            Some(ok_body),
        ),
        ErrorCode::ProviderUnavailable,
    );
    check(
        gw.send(
            "POST",
            "/v1/broken/chat",
            &[("authorization", &auth)],
            Some(ok_body),
        ),
        ErrorCode::RouteUnavailable,
    );
    let one_a_day = planned("one-a-day");
    assert_eq!(gw.chat(&one_a_day, "gpt-4o").status, 200);
    let reply = gw.chat(&one_a_day, "gpt-4o");
    assert!(reply.header("retry-after").is_some());
    check(reply, ErrorCode::RateLimitExceeded);
    // 1 micro-USD a token: the reservation alone (1024 output tokens) is over 100.
    check(
        gw.chat(&planned("tiny-budget"), "gpt-4o"),
        ErrorCode::BudgetExceeded,
    );
    check(
        gw.chat(&planned("tiny-budget"), "o3-mini"),
        ErrorCode::ModelNotPriced,
    );
    let forwarded = gw.all_received();
    assert_eq!(
        forwarded.len(),
        1,
        "only the one allowed request was forwarded"
    );
    for r in &forwarded {
        assert!(!r.contains(&one_a_day));
    }

    // The challenge names what a 403 for scope lacks.
    let reply = gw.chat(&no_chat, "gpt-4o");
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"chat\""),
        "{challenge}"
    );

    assert_eq!(
        gw.all_received().len(),
        1,
        "a refused request reached a provider"
    );
    gw.assert_log_clean(&[&token, &api_key, &expired, &revoked]);

    // not_configured is covered in config.rs (it needs an Envoy without configuration),
    // quota_unavailable in fleet_quotas.rs (it needs a control plane that goes away),
    // temporarily_blocked in guard.rs (it needs a burst of failures);
    // internal_error is only sent when Envoy refuses a host call, which no client can cause.
    let untested: Vec<_> = ErrorCode::ALL
        .iter()
        .filter(|c| {
            !covered.contains(c)
                && !matches!(
                    c,
                    ErrorCode::NotConfigured
                        | ErrorCode::InternalError
                        | ErrorCode::QuotaUnavailable
                        | ErrorCode::TemporarilyBlocked
                )
        })
        .collect();
    assert!(
        untested.is_empty(),
        "codes without an end-to-end case: {untested:?}"
    );
}

#[test]
fn chunked_body_over_the_limit_is_refused_with_413() {
    // Without content-length the filter sees the limit crossed while the body streams in.
    let gw = Gateway::start_with(Options::default(), |config, _| {
        config.routes[0].max_body_bytes = 1024
    });
    let token = gw.token();
    let big = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "y".repeat(64 * 1024)
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .into_bytes()
        .chunks(4096)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let body = reqwest::blocking::Body::new(ChunkReader {
        chunks: chunks.into_iter(),
        current: Vec::new(),
    });
    let response = tokenward_e2e::client::client()
        .post(gw.envoy.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let json: serde_json::Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    assert_eq!(json["error"]["code"], "request_too_large");
    assert!(gw.all_received().is_empty());
}

/// A reader of unknown length, so reqwest sends the body chunked.
struct ChunkReader {
    chunks: std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>,
    current: Vec<u8>,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.current.is_empty() {
            match self.chunks.next() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.drain(..n);
        Ok(n)
    }
}

#[test]
fn a_refusal_comes_in_the_error_shape_of_the_routes_provider() {
    let gw = Gateway::start();
    let refused = |path: &str| gw.send("POST", path, &[], Some("{}"));

    let openai = refused("/v1/chat/completions");
    assert_refusal(&openai, 401, "missing_credential");
    assert_eq!(openai.json()["error"]["type"], "authentication_error");

    // What Anthropic's SDKs read: {"type":"error","error":{"type","message"}}.
    let anthropic = refused("/v1/messages");
    assert_refusal(&anthropic, 401, "missing_credential");
    let json = anthropic.json();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "authentication_error");

    // What Google's SDKs read: {"error":{"code","message","status"}}.
    let gemini = refused("/v1beta/models/gemini-2.0-flash:generateContent");
    assert_refusal(&gemini, 401, "missing_credential");
    let json = gemini.json();
    assert_eq!(json["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(
        json["error"]["details"][0]["@type"],
        "type.googleapis.com/google.rpc.ErrorInfo"
    );
    // A path no route serves has no provider: OpenAI's shape.
    assert_refusal(&refused("/v2/nothing"), 404, "route_not_found");
    assert!(gw.all_received().is_empty());
}
