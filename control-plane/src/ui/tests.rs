//! The dashboard through the router, as a browser would use it: sign in, pages, forms with
//! and without the CSRF token, a read-only operator, escaping.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::plane::{ApiKeyRequest, Revocation};
use crate::state::ServerState;
use std::sync::Arc;

use crate::admin::tests::NOW;

struct Dashboard {
    app: axum::Router,
    state: Arc<ServerState>,
    admin_key: String,
}

/// The admin API's router (the dashboard included) over a fresh control plane.
fn dashboard() -> Dashboard {
    let (app, state, admin_key) = crate::admin::tests::app();
    Dashboard {
        app,
        state,
        admin_key,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

async fn send(app: &axum::Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &axum::Router, path: &str, cookie: Option<&str>) -> Answer {
    let mut request = Request::builder().uri(path);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

async fn post(
    app: &axum::Router,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let body = serde_urlencoded::to_string(form).unwrap();
    send(app, request.body(Body::from(body)).unwrap()).await
}

/// Signs in with `credential`; the cookie to send back.
async fn sign_in(app: &axum::Router, credential: &str) -> String {
    let answer = post(app, "/ui/login", None, &[("credential", credential)]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let set_cookie = answer.headers["set-cookie"].to_str().unwrap().to_string();
    set_cookie.split(';').next().unwrap().to_string()
}

/// The CSRF token the page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn a_page_without_a_session_sends_the_browser_to_sign_in() {
    let d = dashboard();
    let answer = get(&d.app, "/ui/usage", None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers["location"], "/ui/login");
    let login = get(&d.app, "/ui/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.text.contains("type=\"password\""));
    assert!(login.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(login.headers["x-frame-options"], "DENY");
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_opens_every_page() {
    let d = dashboard();
    let answer = post(&d.app, "/ui/login", None, &[("credential", &d.admin_key)]).await;
    let set_cookie = answer.headers["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/ui"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    assert!(
        !set_cookie.contains(&d.admin_key),
        "the credential never leaves in a cookie"
    );
    let cookie = set_cookie.split(';').next().unwrap();
    for page in [
        "/ui/keys",
        "/ui/usage",
        "/ui/fleet",
        "/ui/signing-keys",
        "/ui/audit",
        "/ui/alerts",
    ] {
        let answer = get(&d.app, page, Some(cookie)).await;
        assert_eq!(answer.status, StatusCode::OK, "{page}: {}", answer.text);
        assert!(answer.text.contains("Sign out"), "{page}");
    }
    let audit = get(&d.app, "/ui/audit?action=ui.", Some(cookie)).await;
    assert!(audit.text.contains("ui.sign_in"));
}

#[tokio::test]
async fn under_tls_the_cookie_is_secure_and_host_prefixed() {
    let d = dashboard();
    d.state
        .tls
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let answer = post(&d.app, "/ui/login", None, &[("credential", &d.admin_key)]).await;
    let set_cookie = answer.headers["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.starts_with("__Host-tokenward_session="),
        "{set_cookie}"
    );
    for attribute in ["; Path=/;", "; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap();
    assert_eq!(
        get(&d.app, "/ui/keys", Some(cookie)).await.status,
        StatusCode::OK
    );
    // The name without the prefix is any host's to set: not a session under TLS.
    let unprefixed = cookie.trim_start_matches("__Host-");
    assert_eq!(
        get(&d.app, "/ui/keys", Some(unprefixed)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_credential_that_is_not_an_admin_one_is_refused_at_sign_in() {
    let d = dashboard();
    let user = d
        .state
        .plane
        .create_api_key(
            &ApiKeyRequest {
                subject: "app".into(),
                scopes: vec!["chat".into()],
                ..ApiKeyRequest::default()
            },
            NOW,
        )
        .unwrap();
    let answer = post(&d.app, "/ui/login", None, &[("credential", &user.key)]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.headers.get("set-cookie").is_none());
    let wrong = post(&d.app, "/ui/login", None, &[("credential", "tw_not-a-key")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("not valid"));
    // A valid key without an admin scope reads exactly as one that does not exist: the page
    // does not confirm a guess.
    assert_eq!(answer.text, wrong.text);
}

/// The session row of a cookie (`tokenward_session=<id>`), as the store keeps it.
fn session_row(d: &Dashboard, cookie: &str) -> Option<crate::store::UiSession> {
    let id = cookie.split_once('=').unwrap().1;
    let hash = crate::crypto::hex(&hmac_sha256::Hash::hash(id.as_bytes()));
    d.state.plane.store().ui_session(&hash).unwrap()
}

#[tokio::test]
async fn a_session_keeps_who_its_credential_is_never_the_credential_and_a_new_sign_in_replaces_it()
{
    let d = dashboard();
    let first = sign_in(&d.app, &d.admin_key).await;
    let row = session_row(&d, &first).unwrap();
    let admin = d.state.plane.api_keys(None, None).unwrap();
    assert!(row.credential.contains(&admin[0].id), "{}", row.credential);
    assert!(
        !row.credential.contains(&d.admin_key),
        "the database and the master key must not yield the credential"
    );
    // The same browser signs in again: the session it still had is ended, not left behind.
    let answer = post(
        &d.app,
        "/ui/login",
        Some(&first),
        &[("credential", &d.admin_key)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let second = answer.headers["set-cookie"].to_str().unwrap();
    let second = second.split(';').next().unwrap();
    assert_ne!(first, second);
    assert!(session_row(&d, &first).is_none());
    assert_eq!(
        get(&d.app, "/ui/keys", Some(&first)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        get(&d.app, "/ui/keys", Some(second)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_token_session_ends_when_the_token_or_its_subject_is_revoked() {
    let d = dashboard();
    let mint = |subject: &str| {
        d.state
            .plane
            .mint_token(
                &crate::plane::TokenRequest {
                    subject: subject.into(),
                    scopes: vec!["admin:read".into()],
                    ttl_seconds: Some(600),
                    ..crate::plane::TokenRequest::default()
                },
                NOW,
            )
            .unwrap()
    };
    let token = mint("ops-token");
    let cookie = sign_in(&d.app, &token.token).await;
    let row = session_row(&d, &cookie).unwrap();
    assert!(row.credential.contains(&token.jti));
    assert!(!row.credential.contains(&token.token));
    assert_eq!(row.expires_at, NOW + 600, "no longer than the token");
    assert_eq!(
        get(&d.app, "/ui/usage", Some(&cookie)).await.status,
        StatusCode::OK
    );
    d.state
        .plane
        .revoke(
            &Revocation::Jti {
                jti: token.jti.clone(),
                expires_at: None,
            },
            NOW,
        )
        .unwrap();
    assert_eq!(
        get(&d.app, "/ui/usage", Some(&cookie)).await.status,
        StatusCode::SEE_OTHER,
        "a revoked token's session ends"
    );
    let other = mint("ops-other");
    let cookie = sign_in(&d.app, &other.token).await;
    d.state
        .plane
        .revoke(&Revocation::Subject("ops-other".into()), NOW)
        .unwrap();
    assert_eq!(
        get(&d.app, "/ui/usage", Some(&cookie)).await.status,
        StatusCode::SEE_OTHER,
        "a revoked subject's session ends"
    );
}

#[tokio::test]
async fn a_request_with_two_session_cookies_is_not_signed_in() {
    let d = dashboard();
    let cookie = sign_in(&d.app, &d.admin_key).await;
    let planted = format!("tokenward_session={}", "a".repeat(64));
    for header in [
        format!("{planted}; {cookie}"),
        format!("{cookie}; {planted}"),
        format!("{cookie}; {cookie}"),
    ] {
        let answer = get(&d.app, "/ui/keys", Some(&header)).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{header}");
        assert_eq!(answer.headers["location"], "/ui/login");
    }
    // Two Cookie headers count alike.
    let request = Request::builder()
        .uri("/ui/keys")
        .header("cookie", &cookie)
        .header("cookie", &planted)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&d.app, request).await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        get(&d.app, "/ui/keys", Some(&format!("other=1; {cookie}")))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn create_a_key_shows_it_once_and_revoke_needs_the_csrf_token() {
    let d = dashboard();
    let cookie = sign_in(&d.app, &d.admin_key).await;
    let page = get(&d.app, "/ui/keys", Some(&cookie)).await;
    let csrf = csrf_of(&page.text);
    let created = post(
        &d.app,
        "/ui/keys",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("subject", "team-a"),
            ("scopes", "chat"),
            ("models", "gpt-4o*"),
        ],
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let key = d
        .state
        .plane
        .api_keys(Some("team-a"), None)
        .unwrap()
        .remove(0);
    assert_eq!(key.models, vec!["gpt-4o*".to_string()]);
    let at = created.text.find("value=\"tw_").unwrap() + "value=\"".len();
    let secret = &created.text[at..created.text[at..].find('"').unwrap() + at];
    assert!(
        d.state.plane.authenticate(secret, NOW).is_ok(),
        "the key shown works"
    );
    let listed = get(&d.app, "/ui/keys", Some(&cookie)).await;
    assert!(listed.text.contains(&key.id));
    assert!(!listed.text.contains(secret), "never shown again");

    // Without the token (a form from another site), nothing happens.
    let forged = post(
        &d.app,
        "/ui/keys/revoke",
        Some(&cookie),
        &[("csrf", &"0".repeat(64)), ("id", &key.id)],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(d.state.plane.api_keys(Some("team-a"), None).unwrap()[0]
        .revoked_at
        .is_none());
    let confirm = get(
        &d.app,
        &format!("/ui/keys/revoke?id={}", key.id),
        Some(&cookie),
    )
    .await;
    assert!(confirm.text.contains("Revoke key"));
    let revoked = post(
        &d.app,
        "/ui/keys/revoke",
        Some(&cookie),
        &[("csrf", &csrf), ("id", &key.id)],
    )
    .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    assert!(
        d.state.plane.authenticate(secret, NOW).is_err(),
        "refused once revoked"
    );
}

#[tokio::test]
async fn rotating_a_key_shows_the_new_one_and_revokes_the_old() {
    let d = dashboard();
    let old = d
        .state
        .plane
        .create_api_key(
            &ApiKeyRequest {
                subject: "team-b".into(),
                scopes: vec!["chat".into()],
                models: vec!["*".into()],
                ..ApiKeyRequest::default()
            },
            NOW,
        )
        .unwrap();
    let cookie = sign_in(&d.app, &d.admin_key).await;
    let csrf = csrf_of(&get(&d.app, "/ui/keys", Some(&cookie)).await.text);
    let rotated = post(
        &d.app,
        "/ui/keys/rotate",
        Some(&cookie),
        &[("csrf", &csrf), ("id", &old.id)],
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    assert!(d.state.plane.authenticate(&old.key, NOW).is_err());
    let keys = d.state.plane.api_keys(Some("team-b"), None).unwrap();
    let new = keys.iter().find(|k| k.id != old.id).unwrap();
    assert_eq!(new.scopes, old.record.scopes);
    assert!(rotated.text.contains(&new.id));
}

#[tokio::test]
async fn a_read_only_operator_sees_no_actions_and_cannot_act() {
    let d = dashboard();
    let reader = d
        .state
        .plane
        .create_api_key(
            &ApiKeyRequest {
                subject: "auditor".into(),
                scopes: vec!["admin:read".into()],
                ..ApiKeyRequest::default()
            },
            NOW,
        )
        .unwrap();
    let cookie = sign_in(&d.app, &reader.key).await;
    let page = get(&d.app, "/ui/keys", Some(&cookie)).await;
    assert!(!page.text.contains("Create an API key"));
    assert!(!page.text.contains("/ui/keys/revoke?id="));
    let csrf = csrf_of(&page.text);
    let refused = post(
        &d.app,
        "/ui/keys",
        Some(&cookie),
        &[("csrf", &csrf), ("subject", "x")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.text.contains("admin:write"));
    assert!(d.state.plane.api_keys(Some("x"), None).unwrap().is_empty());
}

#[tokio::test]
async fn revoking_the_admin_credential_ends_its_session_and_signing_out_ends_it_too() {
    let d = dashboard();
    let second = d
        .state
        .plane
        .create_api_key(
            &ApiKeyRequest {
                subject: "ops".into(),
                scopes: vec!["admin:read".into(), "admin:write".into()],
                ..ApiKeyRequest::default()
            },
            NOW,
        )
        .unwrap();
    let cookie = sign_in(&d.app, &second.key).await;
    assert_eq!(
        get(&d.app, "/ui/keys", Some(&cookie)).await.status,
        StatusCode::OK
    );
    d.state
        .plane
        .revoke(&Revocation::ApiKey(second.id.clone()), NOW)
        .unwrap();
    let after = get(&d.app, "/ui/keys", Some(&cookie)).await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "a revoked credential's session ends"
    );

    let cookie = sign_in(&d.app, &d.admin_key).await;
    let csrf = csrf_of(&get(&d.app, "/ui/keys", Some(&cookie)).await.text);
    let out = post(&d.app, "/ui/logout", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        get(&d.app, "/ui/keys", Some(&cookie)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn what_a_client_named_is_escaped_on_every_page() {
    let d = dashboard();
    d.state
        .plane
        .create_api_key(
            &ApiKeyRequest {
                subject: "<script>alert(1)</script>".into(),
                scopes: vec!["chat".into()],
                ..ApiKeyRequest::default()
            },
            NOW,
        )
        .unwrap();
    let cookie = sign_in(&d.app, &d.admin_key).await;
    for page in ["/ui/keys", "/ui/audit", "/ui/keys?q=%3Cscript%3E"] {
        let answer = get(&d.app, page, Some(&cookie)).await;
        assert!(!answer.text.contains("<script>"), "{page}");
        assert!(answer.text.contains("&lt;script&gt;"), "{page}");
    }
}

#[tokio::test]
async fn the_usage_page_sums_what_envoys_reported_and_exports_it_as_csv() {
    use tokenward_filter::sync::{SyncReport, UsageEntry};
    let d = dashboard();
    let entry = |subject: &str, model: &str, requests: u64, tokens: u64| {
        serde_json::to_value(UsageEntry {
            subject: subject.into(),
            tenant: Some("acme".into()),
            plan: None,
            credential: Some(format!("key-{subject}")),
            provider: "openai".into(),
            model: Some(model.into()),
            requests,
            input_tokens: tokens,
            output_tokens: tokens,
            cached_input_tokens: 0,
            cost_micro_usd: 1500,
        })
        .unwrap()
    };
    d.state
        .plane
        .record_usage(
            &serde_json::from_value::<SyncReport>(serde_json::json!({
                "node": "envoy-1", "boot": "b", "seq": 1,
                "entries": [entry("alice", "gpt-4o", 3, 100), entry("bob", "gpt-4o-mini", 1, 7)],
            }))
            .unwrap(),
            NOW,
        )
        .unwrap();
    let cookie = sign_in(&d.app, &d.admin_key).await;
    let page = get(&d.app, "/ui/usage?by=subject&metric=tokens", Some(&cookie)).await;
    assert!(
        page.text.contains("id=\"total-requests\">4<"),
        "{}",
        page.text
    );
    assert!(page.text.contains("id=\"total-tokens\">214<"));
    assert!(page.text.contains("<svg class=\"chart\""));
    let alice = page.text.find(">alice<").unwrap();
    let bob = page.text.find(">bob<").unwrap();
    assert!(
        alice < bob,
        "largest first (equal cost: more requests first)"
    );
    let narrowed = get(
        &d.app,
        "/ui/usage?by=model&model=gpt-4o-mini",
        Some(&cookie),
    )
    .await;
    assert!(narrowed.text.contains("id=\"total-requests\">1<"));
    let csv = get(&d.app, "/ui/usage.csv?subject=alice", Some(&cookie)).await;
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.text);
    assert!(
        lines[1].ends_with(",alice,acme,,key-alice,openai,gpt-4o,3,100,100,0,1500"),
        "{}",
        lines[1]
    );
    assert!(get(&d.app, "/ui/usage.csv", None).await.status == StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_form_posted_from_another_origin_is_refused_even_with_the_token() {
    let d = dashboard();
    let cookie = sign_in(&d.app, &d.admin_key).await;
    let csrf = csrf_of(&get(&d.app, "/ui/keys", Some(&cookie)).await.text);
    let body = serde_urlencoded::to_string([("csrf", csrf.as_str()), ("subject", "evil")]).unwrap();
    for origin in ["https://evil.example", "null"] {
        let request = Request::builder()
            .method("POST")
            .uri("/ui/keys")
            .header("host", "cp.test:8080")
            .header("origin", origin)
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body.clone()))
            .unwrap();
        assert_eq!(
            send(&d.app, request).await.status,
            StatusCode::FORBIDDEN,
            "{origin}"
        );
    }
    let request = Request::builder()
        .method("POST")
        .uri("/ui/keys")
        .header("host", "cp.test:8080")
        .header("origin", "http://cp.test:8080")
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(send(&d.app, request).await.status, StatusCode::OK);
    assert_eq!(d.state.plane.api_keys(Some("evil"), None).unwrap().len(), 1);
}

#[tokio::test]
async fn a_sign_in_posted_from_another_site_is_refused() {
    let d = dashboard();
    let body = serde_urlencoded::to_string([("credential", d.admin_key.as_str())]).unwrap();
    let request = Request::builder()
        .method("POST")
        .uri("/ui/login")
        .header("host", "cp.test:8080")
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let answer = send(&d.app, request).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn the_keys_pager_keeps_a_search_with_url_characters_whole() {
    let d = dashboard();
    for _ in 0..51 {
        d.state
            .plane
            .create_api_key(
                &ApiKeyRequest {
                    subject: "team&page=9#x".into(),
                    scopes: vec!["chat".into()],
                    ..ApiKeyRequest::default()
                },
                NOW,
            )
            .unwrap();
    }
    let cookie = sign_in(&d.app, &d.admin_key).await;
    let page = get(&d.app, "/ui/keys?q=team%26page%3D9%23x", Some(&cookie)).await;
    assert!(page.text.contains("page 1 of 2"), "{}", page.text);
    assert!(
        page.text
            .contains("href=\"/ui/keys?page=1&amp;q=team%26page%3D9%23x\""),
        "{}",
        page.text
    );
    let next = get(
        &d.app,
        "/ui/keys?page=1&q=team%26page%3D9%23x",
        Some(&cookie),
    )
    .await;
    assert!(next.text.contains("page 2 of 2"), "{}", next.text);
}
