use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::config::Metric;
use crate::quota::counter::fake::FakeStore;
use crate::host::fake::FakeHost;
use crate::testing::{limit, plan, Fixture, NOW};
use crate::window::Window;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[]}"#;
const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;

fn session(fx: &Fixture) -> Session {
    Session::new(
        Worker::configured(fx.policy()),
        Rc::new(RefCell::default()),
        None,
    )
}

/// A fixture whose every credential has a plan of `rpm` requests a minute.
fn limited(rpm: u64) -> Fixture {
    let mut fx = Fixture::new();
    fx.with_default_plan(plan(
        vec![limit("rpm", Metric::Requests, Window::Minute, rpm)],
        50,
    ));
    fx
}

fn chat(fx: &Fixture, body: &str, store: &Rc<FakeStore>) -> FakeHost {
    FakeHost::request("POST", "/v1/chat/completions")
        .with_bearer(&fx.token())
        .with_header("content-type", "application/json")
        .with_header("content-length", &body.len().to_string())
        .with_body(body)
        .with_now(NOW + 1)
        .with_store(store)
}

fn models(fx: &Fixture, store: &Rc<FakeStore>) -> FakeHost {
    FakeHost::request("GET", "/v1/models")
        .with_bearer(&fx.token())
        .with_now(NOW + 1)
        .with_store(store)
}

/// Runs a body route's request callbacks: headers, then the whole body at once.
fn send(s: &mut Session, host: &FakeHost) -> (Step, Step) {
    let head = s.on_request_headers(host, false);
    (head, s.on_request_body(host, host.body_len(), true))
}

fn has(ops: &[String], line: &str) -> bool {
    ops.iter().any(|op| op == line)
}

#[test]
fn a_chat_request_is_swapped_metered_and_counted_through_the_host() {
    let fx = Fixture::new();
    let store = Rc::default();
    let mut s = session(&fx);
    let host = chat(&fx, CHAT, &store);
    assert_eq!(send(&mut s, &host), (Step::Continue, Step::Continue));
    let ops = host.take_ops();
    assert!(
        has(&ops, "set authorization: Bearer sk-upstream-openai"),
        "{ops:?}"
    );
    assert!(has(&ops, "remove content-length"), "{ops:?}");
    assert!(!ops.iter().any(|op| op.contains(&fx.token())), "{ops:?}");

    let response = host
        .clone()
        .with_response_header(":status", "200")
        .with_response_header("content-type", "application/json")
        .with_response_chunk(ANSWER.as_bytes());
    assert_eq!(s.on_response_headers(&response), Step::Continue);
    assert_eq!(response.take_ops(), vec!["read response headers"]);
    assert_eq!(
        s.on_response_body(&response, ANSWER.len(), true),
        Step::Continue
    );
    let ops = response.take_ops();
    for line in [
        "count tokenward.usage.openai.gpt-4o-mini.responses 1",
        "count tokenward.usage.openai.gpt-4o-mini.input_tokens 11",
        "count tokenward.usage.openai.gpt-4o-mini.output_tokens 7",
        "property tokenward_subject=alice",
        "property tokenward_model=gpt-4o-mini",
        "property tokenward_input_tokens=11",
        "property tokenward_output_tokens=7",
    ] {
        assert!(has(&ops, line), "{line} not in {ops:?}");
    }
    s.on_log(&response);
    assert_eq!(
        response.take_ops(),
        vec!["count tokenward.requests.forwarded 1"]
    );
}

#[test]
fn a_refusal_is_a_local_reply_the_request_stays_paused_and_nothing_else_is_done() {
    let fx = Fixture::new();
    let mut s = session(&fx);
    let host = FakeHost::request("GET", "/v1/models").with_now(NOW + 1);
    assert_eq!(s.on_request_headers(&host, true), Step::Pause);
    let ops = host.take_ops();
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(
        ops[0],
        "count tokenward.requests.refused.missing_credential 1"
    );
    assert!(ops[1].starts_with("reply 401 {\"error\":"), "{ops:?}");

    let response = host.clone().with_response_header(":status", "401");
    assert_eq!(s.on_response_headers(&response), Step::Continue);
    assert_eq!(s.on_response_body(&response, 0, true), Step::Continue);
    s.on_log(&response);
    assert_eq!(response.take_ops(), Vec::<String>::new());
}

#[test]
fn a_refusal_whose_reply_cannot_be_sent_still_holds_the_request() {
    let fx = Fixture::new();
    let mut s = session(&fx);
    let host = FakeHost::request("GET", "/v1/models")
        .with_now(NOW + 1)
        .failing("send_local_response");
    assert_eq!(s.on_request_headers(&host, true), Step::Pause);
}

#[test]
fn a_failed_header_rewrite_answers_500_and_gives_the_quota_back() {
    let fx = limited(1);
    let store = Rc::default();
    let mut s = session(&fx);
    let broken = models(&fx, &store).failing("replace_request_header");
    assert_eq!(s.on_request_headers(&broken, true), Step::Pause);
    let ops = broken.take_ops();
    let reply = ops.iter().find(|op| op.starts_with("reply ")).unwrap();
    assert!(reply.starts_with("reply 500 "), "{reply}");
    assert!(reply.contains("could not be prepared"), "{reply}");
    s.on_log(&broken);
    assert_eq!(broken.take_ops(), Vec::<String>::new());

    // The one request a minute was given back: the next one goes on.
    let mut next = session(&fx);
    let host = models(&fx, &store);
    assert_eq!(next.on_request_headers(&host, true), Step::Continue);
}

#[test]
fn a_failed_body_rewrite_answers_500_and_gives_the_quota_back() {
    let fx = limited(1);
    let store = Rc::default();
    let stream = r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
    let mut s = session(&fx);
    let broken = chat(&fx, stream, &store).failing("replace_request_body");
    assert_eq!(send(&mut s, &broken), (Step::Continue, Step::Pause));
    let ops = broken.take_ops();
    assert!(
        has(&ops, "count tokenward.requests.refused.internal_error 1"),
        "{ops:?}"
    );
    assert!(
        ops.last().is_some_and(|op| op.starts_with("reply 500 ")),
        "{ops:?}"
    );

    let mut next = session(&fx);
    let host = chat(&fx, stream, &store);
    assert_eq!(send(&mut next, &host), (Step::Continue, Step::Continue));
    let ops = host.take_ops();
    let body = ops.iter().find(|op| op.starts_with("body ")).unwrap();
    assert!(body.contains(r#""include_usage":true"#), "{body}");
}

#[test]
fn the_client_gets_its_plans_rate_limit_headers_in_place_of_the_providers() {
    let fx = limited(5);
    let store = Rc::default();
    let mut s = session(&fx);
    let host = chat(&fx, CHAT, &store);
    send(&mut s, &host);
    let response = host
        .clone()
        .with_response_header(":status", "200")
        .with_response_header("content-type", "application/json")
        .with_response_header("x-ratelimit-remaining-requests", "9999")
        .with_response_header("x-request-id", "r1");
    response.take_ops();
    assert_eq!(s.on_response_headers(&response), Step::Continue);
    let ops = response.take_ops();
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(ops[0], "read response headers");
    let written = &ops[1];
    assert!(
        written.starts_with(
            "response headers :status=200 content-type=application/json x-request-id=r1 "
        ),
        "{written}"
    );
    assert!(
        written.contains(" x-ratelimit-remaining-requests=4"),
        "{written}"
    );
    assert!(!written.contains("9999"), "{written}");
}

#[test]
fn rate_limit_headers_are_set_one_by_one_where_the_response_is_not_read() {
    let fx = limited(5);
    let store = Rc::default();
    let mut s = session(&fx);
    // A model list reports no usage: its response headers are not read.
    let host = models(&fx, &store);
    assert_eq!(s.on_request_headers(&host, true), Step::Continue);
    host.take_ops();
    assert_eq!(s.on_response_headers(&host), Step::Continue);
    let ops = host.take_ops();
    assert!(
        has(&ops, "response header x-ratelimit-remaining-requests=4"),
        "{ops:?}"
    );
    assert!(!has(&ops, "read response headers"), "{ops:?}");

    // A metered answer whose headers cannot be read gets them the same way.
    let mut s = session(&fx);
    let host = chat(&fx, CHAT, &store);
    send(&mut s, &host);
    let unreadable = host.clone().failing("response_headers");
    unreadable.take_ops();
    assert_eq!(s.on_response_headers(&unreadable), Step::Continue);
    let ops = unreadable.take_ops();
    assert!(
        has(&ops, "response header x-ratelimit-remaining-requests=3"),
        "{ops:?}"
    );
}

#[test]
fn a_body_route_lets_its_headers_pass_and_holds_the_body_until_it_is_whole() {
    let fx = Fixture::new();
    let store = Rc::default();
    let mut s = session(&fx);
    let host = chat(&fx, CHAT, &store);
    assert_eq!(s.on_request_headers(&host, false), Step::Continue);
    assert_eq!(s.on_request_body(&host, 10, false), Step::Pause);
    // Trailers end the body: the request goes on with what was buffered.
    let whole = host.clone();
    assert_eq!(
        s.on_request_body(&whole, host.body_len(), false),
        Step::Pause
    );
    assert_eq!(s.on_request_trailers(&whole), Step::Continue);
    s.on_log(&whole);
    assert!(has(
        &whole.take_ops(),
        "count tokenward.requests.forwarded 1"
    ));
}

#[test]
fn a_refusal_after_authentication_names_its_subject_and_model_for_the_access_log() {
    let fx = Fixture::new();
    let store = Rc::default();
    let mut s = session(&fx);
    let host = chat(&fx, r#"{"model":"o1-preview","messages":[]}"#, &store);
    assert_eq!(send(&mut s, &host), (Step::Continue, Step::Pause));
    let ops = host.take_ops();
    assert!(
        has(&ops, "count tokenward.requests.refused.model_not_allowed 1"),
        "{ops:?}"
    );
    assert!(has(&ops, "property tokenward_subject=alice"), "{ops:?}");
    assert!(has(&ops, "property tokenward_model=o1-preview"), "{ops:?}");
}

#[test]
fn a_stream_gets_no_usage_chunk_it_did_not_ask_for_and_is_still_counted() {
    let stream = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
        "data: [DONE]\n\n"
    );
    let fx = Fixture::new();
    for (body, hidden) in [
        (r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#, true),
        (
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":false},"messages":[]}"#,
            true,
        ),
        (
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#,
            false,
        ),
    ] {
        let store = Rc::default();
        let mut s = session(&fx);
        let host = chat(&fx, body, &store);
        send(&mut s, &host);
        let response = host
            .clone()
            .with_response_header(":status", "200")
            .with_response_header("content-type", "text/event-stream")
            .with_response_header("content-length", &stream.len().to_string())
            .with_response_chunk(stream.as_bytes());
        s.on_response_headers(&response);
        let headers = response.take_ops();
        // A body that changes cannot keep the provider's length.
        let set = headers.iter().find(|op| op.starts_with("response headers "));
        assert_eq!(set.is_some(), hidden, "{body}: {headers:?}");
        assert!(set.is_none_or(|op| !op.contains("content-length")), "{headers:?}");
        s.on_response_body(&response, stream.len(), true);
        let ops = response.take_ops();
        let rewritten = ops.iter().find(|op| op.starts_with("response body "));
        if hidden {
            let rewritten = rewritten.unwrap_or_else(|| panic!("{body}: {ops:?}"));
            assert!(!rewritten.contains("\"choices\":[]"), "{rewritten}");
            assert!(rewritten.ends_with("data: [DONE]\n\n"), "{rewritten}");
        } else {
            assert!(rewritten.is_none(), "{body}: asked for, it stays: {ops:?}");
        }
        // Counted either way.
        assert!(
            has(&ops, "count tokenward.usage.openai.gpt-4o-mini.output_tokens 1"),
            "{ops:?}"
        );
    }
}

#[test]
fn a_failed_rewrite_answers_500_in_the_error_shape_of_the_routes_provider() {
    let fx = Fixture::new();
    let store = Rc::default();
    let mut s = session(&fx);
    let body = r#"{"model":"claude-3-5-haiku-latest","max_tokens":16,"messages":[]}"#;
    let broken = FakeHost::request("POST", "/v1/messages")
        .with_header("x-api-key", &fx.token())
        .with_header("content-type", "application/json")
        .with_header("content-length", &body.len().to_string())
        .with_body(body)
        .with_now(NOW + 1)
        .with_store(&store)
        .failing("replace_request_header");
    let _ = send(&mut s, &broken);
    let ops = broken.take_ops();
    let reply = ops.iter().find(|op| op.starts_with("reply ")).unwrap();
    // Anthropic's SDK reads `{"type":"error","error":{"type":"api_error",…}}`.
    assert!(reply.starts_with("reply 500 {\"type\":\"error\""), "{reply}");
    assert!(reply.contains("\"api_error\""), "{reply}");
    assert!(reply.contains("could not be prepared"), "{reply}");
}

/// Every host call of one metered exchange, with or without a usage ledger.
fn exchange_ops(fx: &Fixture, ledger: Option<Rc<RefCell<crate::sync::UsageLedger>>>) -> Vec<String> {
    let store = Rc::default();
    let mut s = Session::new(Worker::configured(fx.policy()), Rc::new(RefCell::default()), ledger);
    let host = chat(fx, CHAT, &store);
    send(&mut s, &host);
    let response = host
        .clone()
        .with_response_header(":status", "200")
        .with_response_header("content-type", "application/json")
        .with_response_chunk(ANSWER.as_bytes());
    s.on_response_headers(&response);
    s.on_response_body(&response, ANSWER.len(), true);
    s.on_log(&response);
    let mut ops = host.take_ops();
    ops.extend(response.take_ops());
    ops
}

#[test]
fn usage_reporting_adds_no_host_call_to_a_request() {
    let fx = Fixture::new();
    let ledger = Rc::new(RefCell::new(crate::sync::UsageLedger::default()));
    assert_eq!(
        exchange_ops(&fx, None),
        exchange_ops(&fx, Some(Rc::clone(&ledger)))
    );
    // What the exchange used is in the worker's ledger, for the channel's timer.
    let store = FakeStore::default();
    ledger.borrow_mut().flush(&store).unwrap();
    let entries = crate::sync::ledger::take_outbox(&store).unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(
        (e.subject.as_str(), e.tenant.as_deref(), e.credential.as_deref(), e.model.as_deref()),
        ("alice", Some("acme"), Some("jti-1"), Some("gpt-4o-mini"))
    );
    assert_eq!((e.requests, e.input_tokens, e.output_tokens), (1, 11, 7));
}

/// The host calls one request makes, by callback: `Host` reads, `HostOps` calls (stats are
/// batched in the worker, not host calls) and shared-data reads and writes.
fn host_calls(host: &FakeHost, store: &FakeStore, before: (u32, u32)) -> Vec<String> {
    let mut calls: Vec<String> = host.take_reads().into_iter().map(str::to_string).collect();
    calls.extend(host.take_ops().into_iter().filter(|op| !op.starts_with("count ")));
    calls.extend((before.0..store.reads()).map(|_| "shared data get".to_string()));
    calls.extend((before.1..store.writes()).map(|_| "shared data cas".to_string()));
    calls
}

#[test]
fn a_cached_token_under_a_quota_plan_costs_this_many_host_calls() {
    // The benchmark's hot path with quotas: a request limit counted, a token limit read,
    // rate-limit headers on the answer. A change that adds a host call here fails this test:
    // each is a crossing out of the VM on every request.
    let mut fx = Fixture::new();
    fx.with_default_plan(plan(
        vec![
            limit("rpm", Metric::Requests, Window::Minute, 1_000_000),
            limit("tpd", Metric::TotalTokens, Window::Day, 1_000_000_000),
        ],
        50,
    ));
    let store: Rc<FakeStore> = Rc::default();
    let worker = Worker::configured(fx.policy());
    let new_session = || Session::new(Rc::clone(&worker), Rc::new(RefCell::default()), None);
    let token = fx.token();
    let request = || {
        FakeHost::request("GET", "/v1/models")
            .with_bearer(&token)
            .with_now(NOW + 1)
            .with_store(&store)
    };
    new_session().on_request_headers(&request(), true);
    let mut s = new_session();
    let host = request();
    let before = (store.reads(), store.writes());
    assert_eq!(s.on_request_headers(&host, true), Step::Continue);
    assert_eq!(
        host_calls(&host, &store, before),
        [
            "request_headers",
            "now_unix_seconds",
            // The provider's credential, its host and the cluster Envoy routes to.
            "set authorization: Bearer sk-upstream-openai",
            "set :authority: api.openai.test",
            "set x-tokenward-cluster: openai_cluster",
            // One key holds both limits: one read, one compare-and-set.
            "shared data get",
            "shared data cas",
        ]
    );
    let response = host.clone().with_response_header(":status", "200");
    let before = (store.reads(), store.writes());
    assert_eq!(s.on_response_headers(&response), Step::Continue);
    s.on_log(&response);
    let calls = host_calls(&response, &store, before);
    // The clock, then the rate-limit headers, one call each: this answer's headers are not
    // otherwise read (a metered answer reads them once and sets them all in one call).
    assert_eq!(calls[0], "now_unix_seconds");
    let headers: Vec<&str> = calls[1..]
        .iter()
        .map(|c| c.trim_start_matches("response header ").split('=').next().unwrap_or(""))
        .collect();
    assert_eq!(
        headers,
        [
            "ratelimit-policy",
            "ratelimit",
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ]
    );
    assert_eq!((store.reads(), store.writes()), before, "no shared data after admission");
}

#[test]
fn a_near_limit_plan_far_from_its_limits_costs_no_host_call_on_the_answer() {
    let mut fx = Fixture::new();
    let mut near = plan(
        vec![
            limit("rpm", Metric::Requests, Window::Minute, 10),
            limit("tpd", Metric::TotalTokens, Window::Day, 1_000_000_000),
        ],
        50,
    );
    near.rate_limit_headers = crate::config::RateLimitHeaders::NearLimit;
    fx.with_default_plan(near);
    let store: Rc<FakeStore> = Rc::default();
    let worker = Worker::configured(fx.policy());
    let token = fx.token();
    let mut answers = Vec::new();
    for _ in 0..9 {
        let mut s = Session::new(Rc::clone(&worker), Rc::new(RefCell::default()), None);
        let host = FakeHost::request("GET", "/v1/models")
            .with_bearer(&token)
            .with_now(NOW + 1)
            .with_store(&store);
        assert_eq!(s.on_request_headers(&host, true), Step::Continue);
        host.take_reads();
        host.take_ops();
        let response = host.clone().with_response_header(":status", "200");
        assert_eq!(s.on_response_headers(&response), Step::Continue);
        answers.push(host_calls(&response, &store, (store.reads(), store.writes())));
    }
    // Seven answers leave more than a fifth of the 10 requests a minute: nothing to write,
    // not even the clock. The eighth leaves 2, and the client hears it.
    for calls in &answers[..7] {
        assert!(calls.is_empty(), "{calls:?}");
    }
    for calls in &answers[7..] {
        assert_eq!(calls[0], "now_unix_seconds");
        assert!(
            calls.iter().any(|c| c.starts_with("response header x-ratelimit-remaining-requests")),
            "{calls:?}"
        );
    }
}
