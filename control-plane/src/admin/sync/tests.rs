use axum::body::Body;
use axum::http::Request;
use tokenward_filter::sync::{SyncReport, UsageEntry, SIGNATURE_HEADER};

use super::super::tests::{answer, app, call, NOW};
use super::*;

/// The configuration the render loop would publish.
fn publish(state: &ServerState) -> String {
    let config = state.plane.render(NOW).unwrap();
    let signed = state.plane.sign_config(&config, 3, NOW).unwrap();
    let version = signed.version.clone();
    state.synced.send_replace(Some(Arc::new(signed)));
    version
}

fn proxy_credential(state: &ServerState) -> String {
    state
        .plane
        .create_proxy_credential("mesh", NOW)
        .unwrap()
        .key
}

fn poll(credential: &str, known: Option<&str>) -> Request<Body> {
    let mut request = Request::builder()
        .uri("/sync/v1/config?wait=0")
        .header("authorization", format!("Bearer {credential}"));
    if let Some(known) = known {
        request = request.header("if-none-match", format!("\"{known}\""));
    }
    request.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_proxy_credential_pulls_the_signed_configuration_and_nothing_else() {
    let (app, state, admin) = app();
    let proxy = proxy_credential(&state);
    let version = publish(&state);
    let (status, headers, body) = answer(&app, poll(&proxy, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["etag"], format!("\"{version}\"").as_str());
    assert_eq!(headers[REVISION_HEADER], "3");
    assert!(!headers[SIGNATURE_HEADER].is_empty());
    assert_eq!(body["version"], version.as_str());
    // The filters never get the proxy credential: it opens no route.
    assert!(body["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| !k["scopes"].to_string().contains("tokenward:sync")));
    // Unchanged: 304 once the wait is over.
    let (status, _, _) = answer(&app, poll(&proxy, Some(&version))).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    // An admin key is no proxy credential, and a proxy credential is no admin key.
    let (status, _, body) = answer(&app, poll(&admin, None)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    let (status, _, _) = call(&app, "GET", "/admin/v1/keys", Some(&proxy), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = answer(
        &app,
        Request::builder()
            .uri("/sync/v1/config")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_poll_is_answered_as_soon_as_the_configuration_changes() {
    let (app, state, _) = app();
    let proxy = proxy_credential(&state);
    let version = publish(&state);
    let waiting = tokio::spawn({
        let app = app.clone();
        async move {
            let request = Request::builder()
                .uri("/sync/v1/config?wait=30")
                .header("authorization", format!("Bearer {proxy}"))
                .header("if-none-match", format!("\"{version}\""))
                .body(Body::empty())
                .unwrap();
            answer(&app, request).await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    state
        .plane
        .revoke(&crate::plane::Revocation::Subject("mallory".into()), NOW)
        .unwrap();
    let changed = publish(&state);
    let (status, headers, _) = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("answered before the wait ran out")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["etag"], format!("\"{changed}\"").as_str());
}

fn report(seq: u64, requests: u64) -> Value {
    let entry = UsageEntry {
        subject: "alice".into(),
        tenant: Some("acme".into()),
        plan: None,
        credential: Some("jti-1".into()),
        provider: "openai".into(),
        model: Some("gpt-4o-mini".into()),
        requests,
        input_tokens: 10 * requests,
        output_tokens: 5 * requests,
        cached_input_tokens: 0,
        cost_micro_usd: 7 * requests,
    };
    json!({"node": "envoy-a", "boot": "1", "seq": seq, "pull": true, "config_version": "v1", "entries": [entry]})
}

#[tokio::test]
async fn a_report_sent_twice_is_counted_once() {
    let (app, state, _) = app();
    let proxy = proxy_credential(&state);
    let (status, _, body) = call(
        &app,
        "POST",
        "/sync/v1/usage",
        Some(&proxy),
        Some(report(1, 3)),
    )
    .await;
    assert_eq!(
        (status, body["taken"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, _, body) = call(
        &app,
        "POST",
        "/sync/v1/usage",
        Some(&proxy),
        Some(report(1, 3)),
    )
    .await;
    assert_eq!(
        (status, body["taken"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    call(
        &app,
        "POST",
        "/sync/v1/usage",
        Some(&proxy),
        Some(report(2, 1)),
    )
    .await;
    let usage = state.plane.usage(0).unwrap();
    assert_eq!(usage.len(), 1);
    let e = &usage[0].entry;
    assert_eq!(
        (
            e.requests,
            e.input_tokens,
            e.output_tokens,
            e.cost_micro_usd
        ),
        (4, 40, 20, 28)
    );
    // A pull-mode Envoy shows in the fleet with what it runs.
    let fleet = state.fleet();
    let proxy_status = &fleet.iter().find(|p| p.node == "envoy-a").unwrap().status;
    assert_eq!(proxy_status.acked["sync"], "v1");
    // Malformed: refused with 400, nothing counted.
    let (status, _, _) = call(
        &app,
        "POST",
        "/sync/v1/usage",
        Some(&proxy),
        Some(json!({"node": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_usage_ledger_is_filtered_and_summed_over_the_admin_api() {
    let (app, state, admin) = app();
    let proxy = proxy_credential(&state);
    call(
        &app,
        "POST",
        "/sync/v1/usage",
        Some(&proxy),
        Some(report(1, 3)),
    )
    .await;
    let mut other = report(2, 2);
    other["entries"][0]["subject"] = json!("bob");
    other["entries"][0]["model"] = json!("claude-3-5-haiku");
    call(&app, "POST", "/sync/v1/usage", Some(&proxy), Some(other)).await;
    let (status, _, rows) = call(&app, "GET", "/admin/v1/usage?since=0", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["hour"], NOW - NOW % 3600);
    let (_, _, alice) = call(
        &app,
        "GET",
        "/admin/v1/usage?since=0&subject=alice",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(alice.as_array().unwrap().len(), 1);
    assert_eq!(alice[0]["requests"], 3);
    let (_, _, by_tenant) = call(
        &app,
        "GET",
        "/admin/v1/usage?since=0&by=tenant",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        by_tenant,
        json!([{"by": "tenant", "value": "acme", "requests": 5, "input_tokens": 50, "output_tokens": 25, "cached_input_tokens": 0, "cost_micro_usd": 35}])
    );
    let (status, _, _) = call(&app, "GET", "/admin/v1/usage?by=colour", Some(&admin), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Usage is admin:read; a proxy credential reports it, never reads it.
    let (status, _, _) = call(&app, "GET", "/admin/v1/usage", Some(&proxy), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[test]
fn the_ledger_keeps_the_retention_setting_of_days_and_the_prune_job_drops_the_rest() {
    let (_, state, _) = app();
    let plane = &state.plane;
    let old = SyncReport {
        entries: vec![UsageEntry {
            subject: "alice".into(),
            tenant: None,
            plan: None,
            credential: None,
            provider: "openai".into(),
            model: None,
            requests: 1,
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            cost_micro_usd: 0,
        }],
        ..SyncReport::new("n", "b", 1)
    };
    plane.record_usage(&old, NOW - 10 * 86_400).unwrap();
    plane
        .record_usage(
            &SyncReport {
                seq: 2,
                ..old.clone()
            },
            NOW,
        )
        .unwrap();
    plane.set_setting("usage_retention_days", 7, NOW).unwrap();
    assert_eq!(plane.usage(0).unwrap().len(), 2);
    plane.prune(NOW).unwrap();
    let kept = plane.usage(0).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].hour, NOW - NOW % 3600);
    assert!(plane.set_setting("usage_retention_days", 0, NOW).is_err());
}

#[tokio::test]
async fn a_proxy_credential_is_not_exchanged_for_a_token() {
    let (app, state, _) = app();
    let proxy = proxy_credential(&state);
    let request = Request::builder()
        .method("POST")
        .uri("/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "grant_type=client_credentials&client_secret={proxy}"
        )))
        .unwrap();
    let (status, _, body) = answer(&app, request).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
}

#[tokio::test]
async fn a_report_of_fleet_counters_is_answered_with_allowances_and_quota_shows_the_sum() {
    let (app, state, admin) = app();
    let proxy = proxy_credential(&state);
    let mut plan = tokenward_filter::testing::plan(
        vec![tokenward_filter::testing::limit(
            "rpm",
            tokenward_filter::config::Metric::Requests,
            tokenward_filter::window::Window::Minute,
            100,
        )],
        0,
    );
    plan.unreachable = tokenward_filter::config::Unreachable::FailClosed;
    state.plane.put_plan("team", plan, NOW).unwrap();
    let minute = NOW - NOW % 60;
    let key = "tw:q:team:rpm:requests:minute:s:alice";
    let counters = |node: &str, used: u64| {
        json!({"node": node, "boot": "1", "seq": 1, "counters": [
            {"key": key, "window_start": minute, "used": used, "denied": 0, "ceiling": 50}
        ]})
    };
    let (status, _, body) = call(
        &app,
        "POST",
        "/sync/v1/usage",
        Some(&proxy),
        Some(counters("envoy-a", 30)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Alone in the fleet: everything left is envoy-a's.
    assert_eq!(body["allowances"]["fleet_size"], 1);
    assert_eq!(
        body["allowances"]["grants"],
        json!([{"key": key, "window_start": minute, "ceiling": 100, "share_ppm": 1_000_000}])
    );
    // A second Envoy: what envoy-a may count to is set aside for it.
    let (_, _, body) = call(
        &app,
        "POST",
        "/sync/v1/usage",
        Some(&proxy),
        Some(counters("envoy-b", 10)),
    )
    .await;
    assert_eq!(body["allowances"]["fleet_size"], 2);
    assert_eq!(body["allowances"]["grants"][0]["ceiling"], 10);
    let (status, _, body) = call(
        &app,
        "GET",
        "/admin/v1/quota?subject=alice",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["plan"], "team");
    assert_eq!(body[0]["used"], 40);
    assert_eq!(body[0]["remaining"], 60);
    assert_eq!(body[0]["proxies"], 2);
    assert_eq!(body[0]["resets_at"], minute + 60);
    // Without a subject or tenant: every counter.
    let (status, _, body) = call(&app, "GET", "/admin/v1/quota", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().map(Vec::len), Some(1));
    let (_, _, body) = call(
        &app,
        "GET",
        "/admin/v1/quota?subject=bob",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(body, json!([]));
    // The proxy credential reads no quota.
    let (status, _, _) = call(
        &app,
        "GET",
        "/admin/v1/quota?subject=alice",
        Some(&proxy),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_reported_block_is_an_alert_and_an_audit_entry_once_however_often_it_comes() {
    let (app, state, admin) = app();
    let proxy = proxy_credential(&state);
    let mut body = report(1, 1);
    body["blocks"] = json!([{
        "kind": "address", "value": "192.0.2.66", "failures": 20,
        "blocked_at": NOW - 5, "until": NOW + 295
    }]);
    for _ in 0..2 {
        let (status, _, answer) = call(
            &app,
            "POST",
            "/sync/v1/usage",
            Some(&proxy),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let alerts = state.plane.alert_events(10).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].key, "guard:address:192.0.2.66");
    let (status, _, audit) = call(&app, "GET", "/admin/v1/audit", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let blocked: Vec<_> = audit
        .as_array()
        .or_else(|| audit["entries"].as_array())
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "guard.blocked")
        .collect();
    assert_eq!(blocked.len(), 1, "{audit}");
    assert_eq!(blocked[0]["target"], "address 192.0.2.66");
    // A block of another shape is refused with the report, as any malformed report.
    body["seq"] = json!(2);
    body["blocks"][0]["kind"] = json!("planet");
    let (status, _, _) = call(&app, "POST", "/sync/v1/usage", Some(&proxy), Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
