use super::*;
use crate::host::fake::FakeHost;
use crate::policy::Policy;
use crate::testing::{limit, Fixture, NOW};

fn worker(fx: &Fixture) -> Rc<Worker> {
    Worker::configured(fx.policy())
}

fn chat(token: &str, body: &str) -> FakeHost {
    FakeHost::request("POST", "/v1/chat/completions")
        .with_bearer(token)
        .with_header("content-type", "application/json")
        .with_body(body)
        .with_now(NOW + 1)
}

/// Runs headers then (if asked) the whole body in one piece. A request whose body passes
/// comes back as the `Forward` of the edits made at the headers.
fn run(worker: &Rc<Worker>, host: &FakeHost) -> Decision {
    let mut flow = RequestFlow::new(Rc::clone(worker));
    let has_body = host.body_len() > 0;
    match flow.on_request_headers(host, !has_body) {
        Decision::ReadBody(edits) => match flow.on_request_body(host, host.body_len(), true) {
            Decision::Continue => Decision::Forward(edits),
            other => other,
        },
        other => other,
    }
}

fn refusal(decision: Decision) -> Refusal {
    match decision {
        Decision::Refuse(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn edits(decision: Decision) -> HeaderEdits {
    match decision {
        Decision::Forward(e) => e,
        other => panic!("expected a forward, got {other:?}"),
    }
}

#[test]
fn unconfigured_worker_refuses_with_503() {
    let mut flow = RequestFlow::new(Worker::unconfigured());
    let r = refusal(flow.on_request_headers(&FakeHost::request("GET", "/v1/models"), true));
    assert_eq!((r.code, r.code.status()), (ErrorCode::NotConfigured, 503));
}

#[test]
fn chat_request_gets_the_provider_credential_and_its_body_only_authorizes_the_model() {
    let fx = Fixture::new();
    let w = worker(&fx);
    let host = chat(&fx.token(), r#"{"model":"gpt-4o-mini","messages":[]}"#);
    let mut flow = RequestFlow::new(Rc::clone(&w));
    let e = match flow.on_request_headers(&host, false) {
        Decision::ReadBody(edits) => edits,
        other => panic!("expected to read the body, got {other:?}"),
    };
    assert_eq!(
        e.value_of("authorization"),
        Some(&b"Bearer sk-upstream-openai"[..])
    );
    assert_eq!(
        e.value_of(crate::provider::CLUSTER_HEADER),
        Some(&b"openai_cluster"[..])
    );
    assert_eq!(e.value_of(":authority"), Some(&b"api.openai.test"[..]));
    assert_eq!(
        flow.on_request_body(&host, host.body_len(), true),
        Decision::Continue
    );

    let host = FakeHost::request("POST", "/v1/messages")
        .with_bearer(&fx.token())
        .with_body(r#"{"model":"claude-3-5-haiku","max_tokens":5}"#)
        .with_now(NOW);
    let e = edits(run(&w, &host));
    assert_eq!(e.value_of("x-api-key"), Some(&b"sk-ant-upstream"[..]));
    assert_eq!(e.value_of("anthropic-version"), Some(&b"2023-06-01"[..]));
    assert!(
        e.removes("authorization"),
        "the client's bearer token must not reach Anthropic"
    );
}

#[test]
fn client_internal_headers_are_stripped_and_client_anthropic_version_kept() {
    let fx = Fixture::new();
    let host = FakeHost::request("POST", "/v1/messages")
        .with_header("x-api-key", &fx.token())
        .with_header("anthropic-version", "2024-01-01")
        .with_header("x-tokenward-cluster", "attacker")
        .with_body(r#"{"model":"claude-3-opus"}"#)
        .with_now(NOW);
    let e = edits(run(&worker(&fx), &host));
    assert!(e.removes("x-tokenward-cluster"));
    assert_eq!(
        e.value_of("x-tokenward-cluster"),
        Some(&b"anthropic_cluster"[..])
    );
    assert_eq!(e.value_of("anthropic-version"), None);
    assert_eq!(e.value_of("x-api-key"), Some(&b"sk-ant-upstream"[..]));
}

#[test]
fn model_refusals() {
    let fx = Fixture::new();
    let w = worker(&fx);
    let r = refusal(run(&w, &chat(&fx.token(), r#"{"model":"o1-preview"}"#)));
    assert_eq!((r.code, r.code.status()), (ErrorCode::ModelNotAllowed, 403));
    assert!(r.message.contains("o1-preview"));
    let path = FakeHost::request("POST", "/v1beta/models/gpt-4o:generateContent")
        .with_bearer(&fx.token())
        .with_now(NOW);
    let r = refusal(run(&w, &path));
    assert_eq!((r.code, r.code.status()), (ErrorCode::ModelNotFound, 404));
    let r = refusal(run(&w, &chat(&fx.token(), r#"{"messages":[]}"#)));
    assert_eq!((r.code, r.code.status()), (ErrorCode::MissingModel, 400));
    let r = refusal(run(&w, &chat(&fx.token(), r#"{"model":"gpt-4o""#)));
    assert_eq!((r.code, r.code.status()), (ErrorCode::InvalidJson, 400));
    let r = refusal(run(&w, &chat(&fx.token(), "")));
    assert_eq!(r.code, ErrorCode::MissingModel);
}

#[test]
fn token_without_models_claim_may_use_no_model() {
    let fx = Fixture::new();
    let mut claims = fx.claims(60);
    claims.custom.models = None;
    let r = refusal(run(
        &worker(&fx),
        &chat(&fx.sign(claims), r#"{"model":"gpt-4o"}"#),
    ));
    assert_eq!(r.code, ErrorCode::ModelNotAllowed);
}

#[test]
fn body_limit_is_enforced_from_content_length_and_from_the_stream() {
    let fx = Fixture::new();
    let w = worker(&fx);
    let big = format!(r#"{{"model":"gpt-4o","pad":"{}"}}"#, "x".repeat(2000));
    let host = chat(&fx.token(), &big).with_header("content-length", &big.len().to_string());
    let r = refusal(RequestFlow::new(Rc::clone(&w)).on_request_headers(&host, false));
    assert_eq!((r.code, r.code.status()), (ErrorCode::RequestTooLarge, 413));

    // Chunked: no content-length, the limit is seen as the body grows.
    let host = chat(&fx.token(), &big);
    let mut flow = RequestFlow::new(Rc::clone(&w));
    assert!(matches!(
        flow.on_request_headers(&host, false),
        Decision::ReadBody(_)
    ));
    assert_eq!(
        flow.on_request_body(&host, 500, false),
        Decision::WaitForBody
    );
    let r = refusal(flow.on_request_body(&host, 1500, false));
    assert_eq!(r.code, ErrorCode::RequestTooLarge);
}

#[test]
fn scopes_are_required() {
    let fx = Fixture::new();
    let mut claims = fx.claims(60);
    claims.custom.scope = Some("embeddings".into());
    let r = refusal(run(
        &worker(&fx),
        &chat(&fx.sign(claims), r#"{"model":"gpt-4o"}"#),
    ));
    assert_eq!(
        (r.code, r.code.status()),
        (ErrorCode::InsufficientScope, 403)
    );
    assert_eq!(r.required_scope.as_deref(), Some("chat"));
}

#[test]
fn gemini_path_model_and_query_credential() {
    let mut fx = Fixture::new();
    let key = fx.add_api_key("svc", &["chat"], &["gemini-2*"]);
    let w = worker(&fx);
    let host = FakeHost::request(
        "POST",
        &format!("/v1beta/models/gemini-2.0-flash:generateContent?key={key}"),
    )
    .with_body("{}")
    .with_now(NOW);
    let e = edits(run(&w, &host));
    assert_eq!(
        e.value_of(":path"),
        Some(&b"/v1beta/models/gemini-2.0-flash:generateContent"[..])
    );
    assert_eq!(e.value_of("x-goog-api-key"), Some(&b"gemini-upstream"[..]));
    let host = FakeHost::request("POST", "/v1beta/models/gemini-1.5-pro:generateContent")
        .with_header("x-goog-api-key", &key)
        .with_now(NOW);
    assert_eq!(refusal(run(&w, &host)).code, ErrorCode::ModelNotAllowed);
}

#[test]
fn unknown_route_and_query_token_are_refused() {
    let fx = Fixture::new();
    let w = worker(&fx);
    let r = refusal(run(
        &w,
        &FakeHost::request("POST", "/v1/unknown")
            .with_bearer(&fx.token())
            .with_now(NOW),
    ));
    assert_eq!((r.code, r.code.status()), (ErrorCode::RouteNotFound, 404));
    let r = refusal(run(
        &w,
        &FakeHost::request("GET", "/v1/models?access_token=abc").with_now(NOW),
    ));
    assert_eq!((r.code, r.code.status()), (ErrorCode::TokenInUrl, 400));
}

#[test]
fn fixed_provider_route_without_model_forwards_at_headers() {
    let fx = Fixture::new();
    let mut flow = RequestFlow::new(worker(&fx));
    let host = FakeHost::request("GET", "/v1/models")
        .with_header("api-key", &fx.token())
        .with_now(NOW);
    let e = edits(flow.on_request_headers(&host, true));
    let host2 = FakeHost::request("GET", "/v1/models")
        .with_bearer(&fx.token())
        .with_now(NOW);
    let e2 = edits(RequestFlow::new(worker(&fx)).on_request_headers(&host2, true));
    assert!(
        !e2.removes("authorization"),
        "set replaces it; a removal would be a wasted host call"
    );
    assert!(e.removes("api-key"));
    assert_eq!(
        e.value_of("authorization"),
        Some(&b"Bearer sk-upstream-openai"[..])
    );
    // No body stage afterwards.
    assert_eq!(flow.on_request_body(&host, 0, true), Decision::Continue);
}

#[test]
fn the_cache_fills_once_per_token_and_a_new_worker_starts_empty() {
    let fx = Fixture::new();
    let w = worker(&fx);
    let host = FakeHost::request("GET", "/v1/models")
        .with_bearer(&fx.token())
        .with_now(NOW);
    for _ in 0..3 {
        edits(run(&w, &host));
    }
    assert_eq!(w.cached_credentials(), 1);
    assert_eq!(worker(&fx).cached_credentials(), 0);
}

#[test]
fn a_body_route_counts_as_forwarded_only_once_its_body_passed() {
    let fx = Fixture::new();
    let host = chat(&fx.token(), r#"{"model":"gpt-4o","messages":[]}"#);
    let mut flow = RequestFlow::new(worker(&fx));
    assert!(matches!(
        flow.on_request_headers(&host, false),
        Decision::ReadBody(_)
    ));
    assert_eq!(
        flow.subject(),
        None,
        "reset before the body: never forwarded"
    );
    assert_eq!(flow.on_done(&host), None);
    let mut flow = RequestFlow::new(worker(&fx));
    flow.on_request_headers(&host, false);
    assert_eq!(
        flow.on_request_body(&host, host.body_len(), true),
        Decision::Continue
    );
    assert_eq!(flow.subject(), Some("alice"));
}

fn plan(limits: Vec<crate::config::LimitConfig>) -> crate::config::PlanConfig {
    crate::testing::plan(limits, 50)
}

fn header<'a, N: AsRef<str>>(headers: &'a [(N, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.as_ref() == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_request_limit_refuses_at_the_body_with_429_and_headers() {
    use crate::config::Metric;
    use crate::window::Window;
    let mut fx = Fixture::new();
    fx.with_default_plan(plan(vec![limit(
        "rpm",
        Metric::Requests,
        Window::Minute,
        2,
    )]));
    let w = worker(&fx);
    let store = Rc::new(crate::quota::counter::fake::FakeStore::default());
    let host = chat(&fx.token(), r#"{"model":"gpt-4o","messages":[]}"#).with_store(&store);
    let mut flow = RequestFlow::new(Rc::clone(&w));
    assert!(
        matches!(flow.on_request_headers(&host, false), Decision::ReadBody(e) if e.removes("content-length"))
    );
    assert_eq!(
        flow.on_request_body(&host, host.body_len(), true),
        Decision::Continue
    );
    let ok = host.clone().with_response_header(":status", "200");
    let headers = flow.on_response_headers(&ok);
    assert_eq!(
        header(&headers, "x-ratelimit-remaining-requests"),
        Some("1")
    );
    assert!(matches!(run(&w, &host), Decision::Forward(_)));
    let r = refusal(run(&w, &host));
    assert_eq!(
        (r.code, r.code.status()),
        (ErrorCode::RateLimitExceeded, 429)
    );
    assert!(r
        .headers()
        .iter()
        .any(|(n, v)| n == "retry-after" && v == "59"));
    let mut flow = RequestFlow::new(Rc::clone(&w));
    flow.on_request_headers(&host, false);
    flow.on_request_body(&host, host.body_len(), true);
    assert_eq!(
        flow.take_events(),
        vec!["tokenward.quota.refused.standard.rpm".to_string()]
    );
}

#[test]
fn clamping_lowers_max_tokens_to_what_the_budget_leaves() {
    use crate::config::Metric;
    use crate::window::Window;
    let mut fx = Fixture::new();
    let mut clamped = plan(vec![limit("tpd", Metric::TotalTokens, Window::Day, 1000)]);
    clamped.clamp_max_tokens = true;
    fx.with_default_plan(clamped);
    let w = worker(&fx);
    let store = Rc::new(crate::quota::counter::fake::FakeStore::default());
    let body = r#"{"model":"gpt-4o","messages":[],"max_tokens":5000}"#;
    let host = chat(&fx.token(), body).with_store(&store);
    let input = (body.len() as u64).div_ceil(4);
    let Decision::ReplaceBody(rewritten) = run(&w, &host) else {
        panic!("the body is rewritten")
    };
    let sent: serde_json::Value = serde_json::from_slice(&rewritten).unwrap();
    assert_eq!(
        sent["max_tokens"],
        1000 - input,
        "the field the client used"
    );
    assert_eq!(sent["messages"], serde_json::json!([]));
    // The budget is now fully reserved: the next request is refused, not clamped to zero.
    let r = refusal(run(&w, &host));
    assert_eq!(r.code, ErrorCode::RateLimitExceeded);
}

#[test]
fn streaming_chat_is_asked_for_its_usage() {
    let fx = Fixture::new();
    let w = worker(&fx);
    let host = chat(
        &fx.token(),
        r#"{"model":"gpt-4o","stream":true,"messages":[]}"#,
    );
    let Decision::ReplaceBody(rewritten) = run(&w, &host) else {
        panic!("the body is rewritten")
    };
    let sent: serde_json::Value = serde_json::from_slice(&rewritten).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let asked = chat(
        &fx.token(),
        r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#,
    );
    assert!(
        matches!(run(&w, &asked), Decision::Forward(_)),
        "left alone"
    );
    let anthropic = FakeHost::request("POST", "/v1/messages")
        .with_bearer(&fx.token())
        .with_body(r#"{"model":"claude-3-5-haiku","stream":true,"max_tokens":5}"#)
        .with_now(NOW);
    assert!(
        matches!(run(&w, &anthropic), Decision::Forward(_)),
        "Anthropic always reports usage"
    );
}

#[test]
fn the_response_settles_the_reservation_to_the_real_usage() {
    use crate::config::Metric;
    use crate::window::Window;
    let mut fx = Fixture::new();
    fx.with_default_plan(plan(vec![
        limit("rpm", Metric::Requests, Window::Minute, 100),
        limit("tpd", Metric::TotalTokens, Window::Day, 100_000),
    ]));
    let w = worker(&fx);
    let store = Rc::new(crate::quota::counter::fake::FakeStore::default());
    let key = |name: &str, metric: &str, window: &str| {
        format!("tw:q:standard:{name}:{metric}:{window}:s:alice")
    };
    let host = chat(&fx.token(), r#"{"model":"gpt-4o","messages":[]}"#).with_store(&store);
    let respond = |status: &str, body: &str| {
        let response = host
            .clone()
            .with_response_header(":status", status)
            .with_response_header("content-type", "application/json")
            .with_response_chunk(body.as_bytes());
        let mut flow = RequestFlow::new(Rc::clone(&w));
        flow.on_request_headers(&response, false);
        flow.on_request_body(&response, response.body_len(), true);
        flow.on_response_headers(&response);
        flow.on_response_body(&response, body.len(), true)
    };
    let report = respond(
        "200",
        r#"{"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"#,
    )
    .unwrap();
    assert_eq!(report.usage.map(|u| u.total_tokens()), Some(42));
    assert_eq!(store.used(&key("tpd", "total_tokens", "day")), 42);
    // An error without usage gives the reservation back; the request still counts.
    respond("429", r#"{"error":{"message":"slow down"}}"#).unwrap();
    assert_eq!(store.used(&key("tpd", "total_tokens", "day")), 42);
    assert_eq!(store.used(&key("rpm", "requests", "minute")), 2);
    // A success that reported nothing keeps the reservation (body/4 + 50 default output).
    respond("200", "{}").unwrap();
    let reserved = (host.body_len() as u64).div_ceil(4) + 50;
    assert_eq!(
        store.used(&key("tpd", "total_tokens", "day")),
        42 + reserved
    );
}

#[test]
fn a_credential_naming_an_unknown_plan_is_refused() {
    let mut fx = Fixture::new();
    fx.with_default_plan(plan(vec![]));
    let mut claims = fx.claims(600);
    claims.custom.plan = Some("gold".into());
    let token = fx.sign(claims);
    let r = refusal(run(&worker(&fx), &chat(&token, r#"{"model":"gpt-4o"}"#)));
    assert_eq!((r.code, r.code.status()), (ErrorCode::UnknownPlan, 403));
}

/// A worker with the `standard` plan of these limits, and a shared store.
fn planned(
    limits: Vec<crate::config::LimitConfig>,
    adjust: impl FnOnce(&mut crate::config::PlanConfig),
) -> (Fixture, Rc<Worker>, Rc<crate::quota::counter::fake::FakeStore>) {
    let mut fx = Fixture::new();
    let mut p = plan(limits);
    adjust(&mut p);
    fx.with_default_plan(p);
    let w = worker(&fx);
    (fx, w, Rc::new(crate::quota::counter::fake::FakeStore::default()))
}

const TPD_KEY: &str = "tw:q:standard:tpd:total_tokens:day:s:alice";

#[test]
fn a_request_the_client_abandons_or_the_provider_fails_is_charged_its_reservation() {
    use crate::config::Metric;
    use crate::window::Window;
    let (fx, w, store) = planned(
        vec![limit("tpd", Metric::TotalTokens, Window::Day, 100_000)],
        |_| {},
    );
    let body = r#"{"model":"gpt-4o","messages":[],"max_tokens":300}"#;
    let host = chat(&fx.token(), body).with_store(&store);
    let reserved = (body.len() as u64).div_ceil(4) + 300;
    // Forwarded, then the client hangs up before any answer: the provider has the request.
    let mut flow = RequestFlow::new(Rc::clone(&w));
    flow.on_request_headers(&host, false);
    flow.on_request_body(&host, host.body_len(), true);
    assert!(flow.on_done(&host).is_some());
    assert_eq!(store.used(TPD_KEY), reserved);
    // A 502 without usage: the provider may have billed it too.
    let failed = host
        .clone()
        .with_response_header(":status", "502")
        .with_response_chunk(b"upstream connect error");
    let mut flow = RequestFlow::new(Rc::clone(&w));
    flow.on_request_headers(&failed, false);
    flow.on_request_body(&failed, failed.body_len(), true);
    flow.on_response_headers(&failed);
    flow.on_response_body(&failed, 22, true);
    assert_eq!(store.used(TPD_KEY), 2 * reserved);
}

#[test]
fn clamping_caps_a_request_that_sets_no_limit_and_reads_only_its_apis_fields() {
    use crate::config::Metric;
    use crate::window::Window;
    let (fx, w, store) = planned(
        vec![limit("tpd", Metric::TotalTokens, Window::Day, 100_000)],
        |p| p.clamp_max_tokens = true,
    );
    // Plenty of budget: the default reservation (50) is written, so the answer cannot
    // outgrow it.
    let host = chat(&fx.token(), r#"{"model":"gpt-4o","messages":[]}"#).with_store(&store);
    let Decision::ReplaceBody(rewritten) = run(&w, &host) else {
        panic!("the limit is written")
    };
    let sent: serde_json::Value = serde_json::from_slice(&rewritten).unwrap();
    assert_eq!(sent["max_completion_tokens"], 50);
    // A Responses-API field on a chat request is not a chat limit: the reservation follows
    // max_tokens (90), which fits, so the body goes out as it came.
    let body = r#"{"model":"gpt-4o","max_output_tokens":1,"max_tokens":90}"#;
    let host = chat(&fx.token(), body).with_store(&store);
    let before = store.used(TPD_KEY);
    assert!(matches!(run(&w, &host), Decision::Forward(_)));
    assert_eq!(
        store.used(TPD_KEY) - before,
        (body.len() as u64).div_ceil(4) + 90
    );
}

#[test]
fn a_limit_that_is_not_a_number_is_refused_under_a_plan() {
    use crate::config::Metric;
    use crate::window::Window;
    let (fx, w, store) = planned(
        vec![limit("tpd", Metric::TotalTokens, Window::Day, 100_000)],
        |_| {},
    );
    let host = chat(&fx.token(), r#"{"model":"gpt-4o","max_tokens":"90000"}"#).with_store(&store);
    let r = refusal(run(&w, &host));
    assert_eq!(r.code, ErrorCode::InvalidJson);
    assert!(r.message.contains("max_tokens"));
}

#[test]
fn an_endpoint_without_usage_reserves_no_tokens() {
    use crate::config::Metric;
    use crate::window::Window;
    let (fx, w, store) = planned(
        vec![
            limit("rpm", Metric::Requests, Window::Minute, 100),
            limit("tpd", Metric::TotalTokens, Window::Day, 100_000),
        ],
        |_| {},
    );
    // Anthropic's token counting is not a generation: nothing is metered or reserved.
    let host = FakeHost::request("POST", "/v1/messages/count_tokens")
        .with_bearer(&fx.token())
        .with_body(r#"{"model":"claude-3-5-haiku","messages":[]}"#)
        .with_now(NOW)
        .with_store(&store);
    assert!(matches!(run(&w, &host), Decision::Forward(_)));
    assert_eq!(store.used(TPD_KEY), 0);
    assert_eq!(
        store.used("tw:q:standard:rpm:requests:minute:s:alice"),
        1,
        "the request still counts"
    );
}

/// A worker on a document loaded the way the filter loads it (parts may be unavailable).
fn loaded_worker(json: &serde_json::Value) -> Rc<Worker> {
    Worker::configured(Policy::load(json.to_string().as_bytes(), &|_| None).unwrap())
}

#[test]
fn a_provider_that_cannot_load_answers_503_on_its_routes_and_revocations_still_apply() {
    let mut fx = Fixture::new();
    fx.config.providers[0].credential = crate::config::CredentialSource::Env("NOT_THERE".into());
    let token = fx.token();
    let w = loaded_worker(&serde_json::to_value(&fx.config).unwrap());
    let r = refusal(run(&w, &chat(&token, r#"{"model":"gpt-4o-mini"}"#)));
    assert_eq!(
        (r.code, r.code.status()),
        (ErrorCode::ProviderUnavailable, 503)
    );
    assert!(r.message.contains("openai"), "{}", r.message);
    let messages = FakeHost::request("POST", "/v1/messages")
        .with_bearer(&token)
        .with_body(r#"{"model":"claude-3-5-haiku","max_tokens":5}"#)
        .with_now(NOW + 1);
    edits(run(&w, &messages));
    // The same document with the token's subject revoked: 401, not 503.
    fx.config.revocations.subjects = vec!["alice".into()];
    let w = loaded_worker(&serde_json::to_value(&fx.config).unwrap());
    let r = refusal(run(&w, &chat(&token, r#"{"model":"gpt-4o-mini"}"#)));
    assert_eq!(r.code, ErrorCode::TokenRevoked);
    let r = refusal(run(&w, &messages));
    assert_eq!(r.code, ErrorCode::TokenRevoked);
}

#[test]
fn an_unreadable_route_answers_503_after_authentication() {
    let fx = Fixture::new();
    let mut json = serde_json::to_value(&fx.config).unwrap();
    json["routes"][0]["retry_budget"] = 3.into();
    let w = loaded_worker(&json);
    let r = refusal(run(&w, &chat(&fx.token(), r#"{"model":"gpt-4o-mini"}"#)));
    assert_eq!(
        (r.code, r.code.status()),
        (ErrorCode::RouteUnavailable, 503)
    );
    let r = refusal(run(&w, &chat("not-a-token", r#"{"model":"gpt-4o-mini"}"#)));
    assert_eq!(r.code.status(), 401);
}

#[test]
fn regression_a_copy_of_the_credential_in_a_cookie_or_other_header_is_removed() {
    let fx = Fixture::new();
    let token = fx.token();
    let host = FakeHost::request("GET", "/v1/models")
        .with_bearer(&token)
        .with_header("cookie", &format!("theme=dark; tw_session={token}"))
        .with_header("x-debug-token", &token)
        .with_header("x-request-id", "abc123")
        .with_now(NOW + 1);
    let e = edits(run(&worker(&fx), &host));
    assert!(e.remove_owned.contains(&"cookie".to_string()), "{e:?}");
    assert!(
        e.remove_owned.contains(&"x-debug-token".to_string()),
        "{e:?}"
    );
    assert!(!e.remove_owned.contains(&"x-request-id".to_string()));
}

#[test]
fn regression_a_copy_of_the_credential_in_the_url_is_refused() {
    let fx = Fixture::new();
    let token = fx.token();
    for path in [
        format!("/v1/models?state={token}"),
        format!("/v1/models/{token}"),
    ] {
        let host = FakeHost::request("GET", &path)
            .with_bearer(&token)
            .with_now(NOW + 1);
        let r = refusal(run(&worker(&fx), &host));
        assert_eq!(r.code, ErrorCode::TokenInUrl, "{path}");
    }
}

#[test]
fn regression_an_encoded_gemini_model_is_refused_before_matching() {
    let fx = Fixture::new();
    let host = FakeHost::request(
        "POST",
        "/v1beta/models/gemini-2.0-flash%3Agemini-2.5-pro:generateContent",
    )
    .with_header("x-goog-api-key", &fx.token())
    .with_body("{}")
    .with_now(NOW + 1);
    let r = refusal(run(&worker(&fx), &host));
    assert_eq!((r.code, r.code.status()), (ErrorCode::InvalidHeader, 400));
    assert!(r.message.contains("percent-encoded"), "{}", r.message);
}
