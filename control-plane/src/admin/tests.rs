use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use jwt_simple::reexports::ct_codecs::Encoder;
use tower::ServiceExt;

use super::*;
use crate::crypto::MasterKey;
use crate::plane::{ControlPlane, InitSettings};
use crate::store::SqliteStore;

pub(crate) const NOW: u64 = 1_800_000_000;

/// A router over a fresh control plane, and its first admin key.
pub(crate) fn app() -> (Router, Arc<ServerState>, String) {
    let plane = ControlPlane::new(
        SqliteStore::in_memory().unwrap(),
        MasterKey::generate().unwrap(),
        "test",
    );
    let (_, admin) = plane
        .init(
            &InitSettings {
                issuer: "https://cp.test".into(),
                audiences: vec!["gw".into()],
                alg: Alg::EdDSA,
            },
            NOW,
        )
        .unwrap();
    let state = Arc::new(ServerState::new(plane, Box::new(|| NOW)));
    (router(Arc::clone(&state)), state, admin.key)
}

pub(super) async fn call(
    app: &Router,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(auth) = auth {
        request = request.header("authorization", format!("Bearer {auth}"));
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    answer(app, request).await
}

/// Sends `request` through the router; the status, headers and JSON body (Null if not JSON).
pub(super) async fn answer(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn token_endpoint(
    app: &Router,
    form: &str,
    basic: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder()
        .method("POST")
        .uri("/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(basic) = basic {
        request = request.header("authorization", format!("Basic {basic}"));
    }
    answer(app, request.body(Body::from(form.to_string())).unwrap()).await
}

#[tokio::test]
async fn admin_calls_need_a_credential_with_the_right_scope() {
    let (app, state, admin) = app();
    let (status, headers, body) = call(&app, "GET", "/admin/v1/keys", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(body["error"]["code"], "missing_credential");
    let (status, _, body) = call(&app, "GET", "/admin/v1/keys", Some("not.a.jwt"), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token"))
    );
    let (status, _, keys) = call(&app, "GET", "/admin/v1/keys", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys[0]["state"], "active");
    // A read-only credential reads and may not write.
    let (status, _, reader) = call(
        &app,
        "POST",
        "/admin/v1/apikeys",
        Some(&admin),
        Some(json!({"subject": "auditor", "scopes": ["admin:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let reader = reader["key"].as_str().unwrap().to_string();
    assert_eq!(
        call(&app, "GET", "/admin/v1/audit", Some(&reader), None)
            .await
            .0,
        StatusCode::OK
    );
    let (status, _, body) = call(
        &app,
        "POST",
        "/admin/v1/tokens",
        Some(&reader),
        Some(json!({"subject": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    // A gateway credential without admin scopes is no admin.
    let (_, _, user) = call(
        &app,
        "POST",
        "/admin/v1/tokens",
        Some(&admin),
        Some(json!({"subject": "alice", "scopes": ["chat"]})),
    )
    .await;
    let user = user["token"].as_str().unwrap().to_string();
    assert_eq!(
        call(&app, "GET", "/admin/v1/keys", Some(&user), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // Revoked admins are out at once.
    let (status, _, _) = call(
        &app,
        "POST",
        "/admin/v1/revocations",
        Some(&admin),
        Some(json!({"subject": "auditor"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(&app, "GET", "/admin/v1/audit", Some(&reader), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // The audit log names who did it, and holds no secret.
    let (_, _, log) = call(&app, "GET", "/admin/v1/audit", Some(&admin), None).await;
    let text = log.to_string();
    assert!(
        text.contains("\"actor\":\"admin\"") && text.contains("revoke.subject"),
        "{text}"
    );
    assert!(!text.contains(&reader) && !text.contains(&user) && !text.contains(&admin));
    drop(state);
}

#[tokio::test]
async fn the_admin_api_configures_what_the_gateway_enforces() {
    let (app, state, admin) = app();
    let put = |path: &str, body: Value| {
        let app = app.clone();
        let admin = admin.clone();
        let path = path.to_string();
        async move { call(&app, "PUT", &path, Some(&admin), Some(body)).await }
    };
    // A generated credential: tests carry no key-shaped literals.
    let credential = format!(
        "provider-credential-{}",
        crate::crypto::random_hex(12).unwrap()
    );
    let (status, _, saved) = put("/admin/v1/providers/openai", json!({"style": "openai", "authority": "api.openai.com", "credential": {"value": credential}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&saved["status"], &saved["credential"]),
        (&json!("available"), &json!({"sealed": true}))
    );
    assert!(saved.get("warning").is_none());
    let route = json!({"name": "chat", "path_prefix": "/v1/chat/completions", "methods": ["POST"], "required_scopes": ["chat"], "model_source": "body", "provider": "openai"});
    assert_eq!(
        put("/admin/v1/routes/chat", route).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, _, body) = put(
        "/admin/v1/routes/bad",
        json!({"name": "bad", "path_prefix": "/x", "provider": "ghost"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown provider"));
    let plan =
        json!({"limits": [{"name": "rpm", "metric": "requests", "window": "minute", "limit": 60}]});
    assert_eq!(
        put("/admin/v1/plans/standard", plan).await.0,
        StatusCode::NO_CONTENT
    );
    // Spend-spike detection rides on the plan; a multiple that would fire on noise is refused.
    let spike = json!({"multiple": 10, "metric": "total_tokens", "min_baseline": 1000, "action": "suspend"});
    let watched = json!({"limits": [], "spike": spike});
    assert_eq!(
        put("/admin/v1/plans/watched", watched).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, _, shown) = call(&app, "GET", "/admin/v1/plans/watched", Some(&admin), None).await;
    assert_eq!(shown["spike"], spike, "{shown}");
    let noisy =
        json!({"limits": [], "spike": {"multiple": 1, "metric": "requests", "min_baseline": 5}});
    let (status, _, body) = put("/admin/v1/plans/watched", noisy).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("multiple"));
    let (status, _, config) = call(&app, "GET", "/admin/v1/config", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["routes"][0]["name"], "chat");
    assert_eq!(config["providers"][0]["credential"]["inline"], "(sealed)");
    assert!(!config.to_string().contains(&credential), "never returned");
    let rendered = state.plane.render(NOW).unwrap();
    assert_eq!(rendered.plans.len(), 2);
}

#[tokio::test]
async fn the_token_endpoint_trades_an_api_key_for_a_short_lived_jwt() {
    let (app, state, admin) = app();
    let (_, _, created) = call(&app, "POST", "/admin/v1/apikeys", Some(&admin), Some(json!({"subject": "svc", "tenant": "acme", "scopes": ["chat", "embeddings"], "models": ["gpt-4o*"]}))).await;
    let (id, key) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let (status, headers, body) = token_endpoint(
        &app,
        &format!("grant_type=client_credentials&client_secret={key}&scope=chat"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], crate::plane::TOKEN_ENDPOINT_TTL);
    let jwt = body["access_token"].as_str().unwrap();
    let identity = state
        .plane
        .authenticate(jwt, NOW + 1)
        .map_err(|_| ())
        .unwrap();
    assert_eq!(
        (identity.subject(), identity.grants.tenant.as_deref()),
        ("svc", Some("acme"))
    );
    assert_eq!(identity.grants.scopes, ["chat"], "only what was asked");
    // HTTP Basic with the key id as client_id.
    let basic = jwt_simple::prelude::Base64::encode_to_string(format!("{id}:{key}")).unwrap();
    assert_eq!(
        token_endpoint(&app, "grant_type=client_credentials", Some(&basic))
            .await
            .0,
        StatusCode::OK
    );
    let wrong = jwt_simple::prelude::Base64::encode_to_string(format!("key-other:{key}")).unwrap();
    let (status, headers, body) =
        token_endpoint(&app, "grant_type=client_credentials", Some(&wrong)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, body) = token_endpoint(
        &app,
        &format!("grant_type=client_credentials&client_secret={key}&scope=admin:write"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let (status, _, body) = token_endpoint(
        &app,
        &format!("grant_type=password&client_secret={key}"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (status, _, body) = token_endpoint(
        &app,
        "grant_type=client_credentials&client_secret=tw_nope",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    // A revoked key gets nothing.
    call(
        &app,
        "POST",
        "/admin/v1/revocations",
        Some(&admin),
        Some(json!({"api_key": id})),
    )
    .await;
    let (status, _, _) = token_endpoint(
        &app,
        &format!("grant_type=client_credentials&client_secret={key}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_jwks_and_the_openapi_document_are_public_and_complete() {
    let (app, _, _) = app();
    let (status, _, jwks) = call(&app, "GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert!(jwks["keys"][0].get("d").is_none(), "public halves only");
    let (status, _, doc) = call(&app, "GET", "/admin/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/admin/v1/keys",
        "/admin/v1/keys/rotate",
        "/admin/v1/tokens",
        "/admin/v1/apikeys",
        "/admin/v1/apikeys/{id}",
        "/admin/v1/revocations",
        "/admin/v1/providers",
        "/admin/v1/providers/{name}",
        "/admin/v1/routes/{name}",
        "/admin/v1/plans/{name}",
        "/admin/v1/prices",
        "/admin/v1/prices/{model}",
        "/admin/v1/config",
        "/admin/v1/audit",
        "/oauth/token",
        "/.well-known/jwks.json",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    for path in [
        "/admin/v1/providers/{name}",
        "/admin/v1/plans/{name}",
        "/admin/v1/prices/{model}",
    ] {
        assert!(
            paths[path]["delete"]["responses"]["409"].is_object(),
            "{path}: a removal refused while something uses it is documented"
        );
    }
    let parameters = |path: &str, method: &str| -> Vec<String> {
        paths[path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        parameters("/admin/v1/providers/{name}", "delete"),
        ["name", "force"]
    );
    assert_eq!(parameters("/admin/v1/tokens", "get"), ["subject", "tenant"]);
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().unwrap() {
            // Every path parameter is declared.
            for name in path.split('{').skip(1).filter_map(|p| p.split('}').next()) {
                assert!(
                    parameters(path, method).iter().any(|p| p == name),
                    "{method} {path}: {name} declared"
                );
            }
            let responses = operation["responses"].as_object().unwrap();
            if operation.get("security").is_some() {
                for status in ["401", "403", "500"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
            }
            if let Some(body) = operation.get("requestBody") {
                let (_, media) = body["content"].as_object().unwrap().iter().next().unwrap();
                let schema = &media["schema"];
                let schema = match schema["$ref"].as_str() {
                    Some(name) => &doc["components"]["schemas"][name.rsplit('/').next().unwrap()],
                    None => schema,
                };
                assert!(
                    schema.get("properties").is_some() || schema.get("oneOf").is_some(),
                    "{method} {path}: the request body has a schema: {schema}"
                );
                assert!(responses.contains_key("400"), "{method} {path}: 400");
            }
        }
    }
    // The schemas are the handlers' own types: a route's carries its fields, a plan's its limits.
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["PlanConfig"]["properties"]["limits"].is_object());
    assert!(
        schemas["SpikeConfig"]["properties"]["min_baseline"].is_object(),
        "{}",
        schemas["SpikeConfig"]
    );
    assert_eq!(schemas["MintBody"]["required"], json!(["subject"]));
    let route = &paths["/admin/v1/routes/{name}"]["put"]["requestBody"]["content"]
        ["application/json"]["schema"];
    assert!(route["properties"]["path_prefix"].is_object(), "{route}");
    assert!(
        route["properties"].get("name").is_none(),
        "the path names the route"
    );
}

/// A router whose state knows the Wasm VM's environment, as under `serve --xds-listen`.
fn app_pushing_with(env_keys: &[&str]) -> (Router, Arc<ServerState>, String) {
    let (app, state, admin) = app();
    *state.vm_env_keys.lock().unwrap() = Some(env_keys.iter().map(|k| k.to_string()).collect());
    (app, state, admin)
}

#[tokio::test]
async fn a_provider_whose_variable_envoy_is_not_given_is_saved_with_a_warning_and_listed_unavailable(
) {
    let (app, state, admin) = app_pushing_with(&["OPENAI_API_KEY"]);
    let (status, _, saved) = call(
        &app,
        "PUT",
        "/admin/v1/providers/x",
        Some(&admin),
        Some(json!({"style": "openai", "authority": "api.x.test", "credential": {"env": "NOT_THERE"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "saved all the same: {saved}");
    assert_eq!(saved["status"], "unavailable");
    let warning = saved["warning"].as_str().unwrap();
    assert!(
        warning.contains("\"NOT_THERE\"") && warning.contains("--env-key: OPENAI_API_KEY"),
        "{warning}"
    );
    call(
        &app,
        "PUT",
        "/admin/v1/providers/openai",
        Some(&admin),
        Some(json!({"style": "openai", "authority": "api.openai.com", "credential": {"env": "OPENAI_API_KEY"}})),
    )
    .await;
    let (status, _, listed) = call(&app, "GET", "/admin/v1/providers", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["status"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [("openai", "available"), ("x", "unavailable")]
    );
    assert_eq!(listed[1]["credential"], json!({"env": "NOT_THERE"}));
    assert!(listed[1]["reason"].as_str().unwrap().contains("NOT_THERE"));

    // An Envoy that reports a provider it could not load (its environment lacks the
    // variable) makes it unavailable there.
    {
        let mut proxies = state.proxies.lock().unwrap();
        let gw = proxies.entry("gw-1".into()).or_default();
        gw.connected = true;
        let mut reported = crate::model::ReportedStats::default();
        reported.unavailable.insert(crate::model::ConfigPart {
            kind: "provider".into(),
            name: "openai".into(),
        });
        gw.reported = Some(reported);
    }
    let (_, _, listed) = call(&app, "GET", "/admin/v1/providers", Some(&admin), None).await;
    assert_eq!(listed[0]["status"], "unavailable", "{listed}");
    assert_eq!(listed[0]["unavailable_in"], json!(["gw-1"]));
    let (_, _, proxies) = call(&app, "GET", "/admin/v1/proxies", Some(&admin), None).await;
    assert_eq!(
        proxies["gw-1"]["reported"]["unavailable"],
        json!([{"kind": "provider", "name": "openai"}])
    );
}

#[tokio::test]
async fn without_ads_an_environment_credential_is_listed_unknown() {
    let (app, _, admin) = app();
    call(
        &app,
        "PUT",
        "/admin/v1/providers/x",
        Some(&admin),
        Some(json!({"style": "openai", "authority": "api.x.test", "credential": {"env": "ANY"}})),
    )
    .await;
    let (_, _, listed) = call(&app, "GET", "/admin/v1/providers", Some(&admin), None).await;
    assert_eq!(listed[0]["status"], "unknown", "{listed}");
}

#[tokio::test]
async fn removing_what_something_still_names_is_a_conflict_unless_forced() {
    let (app, state, admin) = app_pushing_with(&["OPENAI_API_KEY"]);
    let send = |method: &'static str, path: &'static str, body: Option<Value>| {
        let (app, admin) = (app.clone(), admin.clone());
        async move { call(&app, method, path, Some(&admin), body).await }
    };
    send("PUT", "/admin/v1/providers/openai", Some(json!({"style": "openai", "authority": "api.openai.com", "credential": {"env": "OPENAI_API_KEY"}}))).await;
    send(
        "PUT",
        "/admin/v1/routes/chat",
        Some(json!({"name": "chat", "path_prefix": "/v1/chat/completions", "provider": "openai"})),
    )
    .await;
    send(
        "PUT",
        "/admin/v1/prices",
        Some(json!({"model": "meta/llama*", "input": 1, "output": 2})),
    )
    .await;
    state
        .changed
        .store(false, std::sync::atomic::Ordering::SeqCst);

    let (status, _, body) = send("DELETE", "/admin/v1/providers/openai", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "in_use");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("route \"chat\""));
    let (status, _, body) = send("DELETE", "/admin/v1/providers/openai?force=true", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"removed": {"kind": "provider", "name": "openai"}, "routes": ["chat"], "revoked_api_keys": []})
    );
    assert!(
        state.changed.load(std::sync::atomic::Ordering::SeqCst),
        "the xDS loop renders again"
    );
    let (_, _, config) = send("GET", "/admin/v1/config", None).await;
    assert_eq!(
        (config["providers"].clone(), config["routes"].clone()),
        (json!([]), json!([]))
    );
    let (status, _, body) = send("DELETE", "/admin/v1/routes/chat", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    // A model pattern with a slash, percent-encoded in the path.
    let (status, _, body) = send("DELETE", "/admin/v1/prices/meta%2Fllama*", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["removed"]["name"], "meta/llama*");

    // A plan an API key names.
    send("PUT", "/admin/v1/plans/gold", Some(json!({"limits": []}))).await;
    let (_, _, key) = send(
        "POST",
        "/admin/v1/apikeys",
        Some(json!({"subject": "svc", "plan": "gold"})),
    )
    .await;
    let (status, _, _) = send("DELETE", "/admin/v1/plans/gold", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, body) = send("DELETE", "/admin/v1/plans/gold?force=true", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked_api_keys"], json!([key["id"]]));
    // Removals are written by the caller, audited.
    let (_, _, log) = send("GET", "/admin/v1/audit", None).await;
    let text = log.to_string();
    for action in [
        "provider.remove",
        "route.remove",
        "price.remove",
        "plan.remove",
    ] {
        assert!(text.contains(action), "{action}: {text}");
    }
    assert!(text.contains("\"actor\":\"admin\""));
    // Removing needs admin:write.
    let (_, _, reader) = send(
        "POST",
        "/admin/v1/apikeys",
        Some(json!({"subject": "auditor", "scopes": ["admin:read"]})),
    )
    .await;
    let (status, _, _) = call(
        &app,
        "DELETE",
        "/admin/v1/routes/x",
        Some(reader["key"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_subject_revocation_can_be_lifted_and_the_lifting_is_audited() {
    let (app, _state, admin) = app();
    let (status, _, minted) = call(
        &app,
        "POST",
        "/admin/v1/tokens",
        Some(&admin),
        Some(json!({"subject": "ops", "scopes": ["admin:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    let ops = minted["token"].as_str().unwrap().to_string();
    let keys = |app: &Router, who: &str| {
        let (app, who) = (app.clone(), who.to_string());
        async move {
            call(&app, "GET", "/admin/v1/keys", Some(&who), None)
                .await
                .0
        }
    };
    assert_eq!(keys(&app, &ops).await, StatusCode::OK);
    let (status, _, _) = call(
        &app,
        "POST",
        "/admin/v1/revocations",
        Some(&admin),
        Some(json!({"subject": "ops"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&app, &ops).await, StatusCode::UNAUTHORIZED);

    let lift = "/admin/v1/revocations/subjects/ops";
    let (status, _, body) = call(&app, "DELETE", lift, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unrevoked"]["subject"], "ops");
    // Refused only for its subject, the token works again at once.
    assert_eq!(keys(&app, &ops).await, StatusCode::OK);
    let (status, _, body) = call(&app, "DELETE", lift, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, _, log) = call(&app, "GET", "/admin/v1/audit", Some(&admin), None).await;
    assert!(log.to_string().contains("unrevoke.subject"), "{log}");
}

/// Sends a raw body with a content type.
async fn send_raw(
    app: &Router,
    method: &str,
    path: &str,
    auth: Option<&str>,
    content_type: &str,
    body: &str,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    answer(app, request.body(Body::from(body.to_string())).unwrap()).await
}

#[tokio::test]
async fn every_error_is_json_authentication_comes_before_the_body_and_the_last_admin_stays() {
    let (app, state, admin) = app();
    let bearer = format!("Bearer {admin}");
    // No credential: 401, whatever is wrong with the body.
    for (content_type, body) in [("text/plain", "hello"), ("application/json", "{not json")] {
        let (status, _, json) =
            send_raw(&app, "POST", "/admin/v1/tokens", None, content_type, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
        assert_eq!(json["error"]["code"], "missing_credential");
    }
    // With one, the body's faults, as JSON.
    let (status, _, json) = send_raw(
        &app,
        "POST",
        "/admin/v1/tokens",
        Some(&bearer),
        "text/plain",
        "x",
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{json}");
    assert_eq!(json["error"]["code"], "unsupported_media_type");
    let (status, _, json) = send_raw(
        &app,
        "POST",
        "/admin/v1/tokens",
        Some(&bearer),
        "application/json",
        r#"{"subject": 7}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"]["code"], "invalid_json");
    // The router's own answers are JSON too.
    let (status, _, json) = call(&app, "GET", "/admin/v1/nothing", Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"]["code"], "not_found");
    let (status, headers, json) = call(&app, "PATCH", "/admin/v1/keys", Some(&admin), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json["error"]["code"], "method_not_allowed");
    assert!(headers.contains_key("allow"));
    let (status, _, json) = call(
        &app,
        "GET",
        "/admin/v1/audit?limit=many",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"]["code"], "invalid_request");
    // The scheme is case-insensitive, as at the gateway.
    let lower = format!("bearer {admin}");
    let (status, _, _) = send_raw(
        &app,
        "GET",
        "/admin/v1/keys",
        Some(&lower),
        "text/plain",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The only admin key cannot be revoked, by id or by its subject.
    let id = state
        .plane
        .store()
        .api_keys()
        .unwrap()
        .into_iter()
        .find(|k| k.scopes.iter().any(|s| s == "admin:write"))
        .unwrap()
        .id;
    let (status, _, json) = call(
        &app,
        "POST",
        "/admin/v1/revocations",
        Some(&admin),
        Some(json!({"api_key": id})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    assert!(json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("last admin"));
    let (status, _, _) = call(
        &app,
        "POST",
        "/admin/v1/revocations",
        Some(&admin),
        Some(json!({"subject": "admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // With a second one it can.
    let (status, _, _) = call(
        &app,
        "POST",
        "/admin/v1/apikeys",
        Some(&admin),
        Some(json!({"subject": "ops", "scopes": ["admin:read", "admin:write"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, json) = call(
        &app,
        "POST",
        "/admin/v1/revocations",
        Some(&admin),
        Some(json!({"api_key": id})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["revoked"], 1, "{json}");
}

#[tokio::test]
async fn the_admin_api_lists_every_resource() {
    let (app, _state, admin) = app();
    let post = |path: &'static str, body: Value| {
        let (app, admin) = (app.clone(), admin.clone());
        async move { call(&app, "POST", path, Some(&admin), Some(body)).await }
    };
    let (_, _, created) = post(
        "/admin/v1/apikeys",
        json!({"subject": "svc", "tenant": "acme"}),
    )
    .await;
    post("/admin/v1/tokens", json!({"subject": "alice"})).await;
    post("/admin/v1/revocations", json!({"subject": "mallory"})).await;
    let get = |path: &'static str| {
        let (app, admin) = (app.clone(), admin.clone());
        async move {
            let (status, _, body) = call(&app, "GET", path, Some(&admin), None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            body
        }
    };
    let keys = get("/admin/v1/apikeys?tenant=acme").await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["id"], created["id"]);
    assert_eq!(keys[0]["status"], "active");
    assert!(keys[0].get("sha256").is_none());
    let tokens = get("/admin/v1/tokens?subject=alice").await;
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
    assert_eq!(
        get("/admin/v1/revocations").await["subjects"],
        json!(["mallory"])
    );
    assert!(get("/admin/v1/routes").await.is_array());
    assert!(get("/admin/v1/plans").await["plans"].is_object());
    assert!(get("/admin/v1/prices").await.is_array());
    // Reading needs admin:read like every other read.
    let (status, _, _) = call(&app, "GET", "/admin/v1/apikeys", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_admin_api_shows_one_entry_of_each_kind() {
    let (app, _state, admin) = app();
    let (_, _, key) = call(
        &app,
        "POST",
        "/admin/v1/apikeys",
        Some(&admin),
        Some(json!({"subject": "svc"})),
    )
    .await;
    let (_, _, token) = call(
        &app,
        "POST",
        "/admin/v1/tokens",
        Some(&admin),
        Some(json!({"subject": "alice"})),
    )
    .await;
    let get = |path: String| {
        let (app, admin) = (app.clone(), admin.clone());
        async move { call(&app, "GET", &path, Some(&admin), None).await }
    };
    let (status, _, one) = get(format!("/admin/v1/apikeys/{}", key["id"].as_str().unwrap())).await;
    assert_eq!(
        (status, one["subject"].as_str()),
        (StatusCode::OK, Some("svc")),
        "{one}"
    );
    let (status, _, one) = get(format!(
        "/admin/v1/tokens/{}",
        token["jti"].as_str().unwrap()
    ))
    .await;
    assert_eq!(
        (status, one["subject"].as_str()),
        (StatusCode::OK, Some("alice")),
        "{one}"
    );
    for path in [
        "/admin/v1/apikeys/nope",
        "/admin/v1/tokens/nope",
        "/admin/v1/providers/nope",
        "/admin/v1/routes/nope",
        "/admin/v1/plans/nope",
        "/admin/v1/prices/nope",
    ] {
        let (status, _, body) = get(path.to_string()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

/// Found by the schema-driven fuzzer (tests/e2e/openapi.rs): what the OpenAPI document
/// promises is what the handlers do.
#[tokio::test]
async fn bodies_are_read_as_the_openapi_document_describes_them() {
    let (app, _, admin) = app();
    // An array is not an object, though serde would read a struct from one.
    let (status, _, json) = call(
        &app,
        "POST",
        "/admin/v1/keys/rotate",
        Some(&admin),
        Some(json!([null, null])),
    )
    .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    // JSON Schema's integer takes 60.0.
    let (status, _, json) = call(
        &app,
        "POST",
        "/admin/v1/keys/rotate",
        Some(&admin),
        Some(json!({"overlap_seconds": 60.0})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["activate_at"], NOW + 60);
    // Bounded where an unbounded value would overflow a time or the database.
    let (status, _, json) = call(
        &app,
        "POST",
        "/admin/v1/keys/rotate",
        Some(&admin),
        Some(json!({"overlap_seconds": u64::MAX})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    let (status, _, json) = call(
        &app,
        "POST",
        "/admin/v1/apikeys",
        Some(&admin),
        Some(json!({"subject": "a", "expires_at": 9_223_372_036_854_775_808_u64})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(
        json["error"]["message"].as_str().unwrap().contains("10000"),
        "{json}"
    );
    // Nothing revoked under an empty name.
    let (status, _, _) = call(
        &app,
        "POST",
        "/admin/v1/revocations",
        Some(&admin),
        Some(json!({"tenant": ""})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A route's body may leave its name to the path.
    call(&app, "PUT", "/admin/v1/providers/openai", Some(&admin), Some(json!({"style": "openai", "authority": "api.openai.com", "credential": {"env": "OPENAI_API_KEY"}}))).await;
    let (status, _, json) = call(
        &app,
        "PUT",
        "/admin/v1/routes/chat",
        Some(&admin),
        Some(json!({"path_prefix": "/v1/chat", "provider": "openai"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{json}");
    let (status, _, json) = call(
        &app,
        "PUT",
        "/admin/v1/routes/chat",
        Some(&admin),
        Some(json!({"name": "other", "path_prefix": "/v1/chat", "provider": "openai"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    // The token endpoint answers a body it cannot read in RFC 6749's shape.
    let (status, _, json) = call(
        &app,
        "POST",
        "/oauth/token",
        None,
        Some(json!({"grant_type": "client_credentials"})),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[tokio::test]
async fn an_api_key_is_revoked_through_the_revocations_and_stays_listed_as_revoked() {
    let (app, _, admin) = app();
    let (_, _, created) = call(
        &app,
        "POST",
        "/admin/v1/apikeys",
        Some(&admin),
        Some(json!({"subject": "bob"})),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let (status, _, json) = call(
        &app,
        "POST",
        "/admin/v1/revocations",
        Some(&admin),
        Some(json!({"api_key": id})),
    )
    .await;
    assert_eq!(
        (status, json["revoked"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, _, json) = call(
        &app,
        "GET",
        &format!("/admin/v1/apikeys/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("revoked"))
    );
    let (status, _, _) = call(
        &app,
        "POST",
        "/admin/v1/revocations",
        Some(&admin),
        Some(json!({"api_key": "key-nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(
        &app,
        "POST",
        "/admin/v1/revocations",
        Some(&admin),
        Some(json!({"api_key": id, "expires_at": 5})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The old DELETE is gone: 405, with what the path allows.
    let (status, headers, _) = call(
        &app,
        "DELETE",
        &format!("/admin/v1/apikeys/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(headers.contains_key("allow"));
}
