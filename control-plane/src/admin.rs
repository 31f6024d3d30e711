//! The control plane's HTTP API (axum): the JWKS, the OAuth 2.0 token endpoint, and the admin
//! REST API with its OpenAPI document. Handlers are thin: authenticate, call `ControlPlane`,
//! shape the answer. Admin calls need a tokenward credential (JWT or API key), verified
//! exactly as the gateway verifies one, with `admin:read` or `admin:write`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Form, Json, Router};
use jwt_simple::reexports::ct_codecs::Decoder;
use serde::Deserialize;
use serde_json::{json, Value};
use tokenward_filter::config::{
    CredentialSource, PlanConfig, PriceConfig, ProviderConfig, ProviderStyle, RouteConfig,
};

use crate::model::Alg;
use crate::plane::{
    ApiKeyRequest, AuthError, ControlPlane, OAuthError, PlaneError, ProviderSecret, Revocation,
    TokenRequest, SCOPE_ADMIN_READ, SCOPE_ADMIN_WRITE,
};
use crate::state::ServerState;
use crate::store::{SqliteStore, Store};

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth/token", post(oauth_token))
        .route("/admin/v1/openapi.json", get(openapi))
        .route("/admin/v1/keys", get(list_keys))
        .route("/admin/v1/keys/rotate", post(rotate_key))
        .route("/admin/v1/tokens", post(mint_token))
        .route("/admin/v1/apikeys", post(create_api_key))
        .route("/admin/v1/apikeys/{id}", delete(revoke_api_key))
        .route("/admin/v1/revocations", post(revoke))
        .route("/admin/v1/providers", get(list_providers))
        .route(
            "/admin/v1/providers/{name}",
            put(put_provider).delete(remove_provider),
        )
        .route(
            "/admin/v1/routes/{name}",
            put(put_route).delete(remove_route),
        )
        .route("/admin/v1/plans/{name}", put(put_plan).delete(remove_plan))
        .route("/admin/v1/prices", put(put_price))
        .route("/admin/v1/prices/{model}", delete(remove_price))
        .route("/admin/v1/config", get(get_config))
        .route("/admin/v1/audit", get(audit))
        .route("/admin/v1/proxies", get(proxies))
        .with_state(state)
}

/// An error in the OpenAI shape the gateway uses too.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": error_type(self.status), "param": null, "code": self.code}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer realm=\"tokenward-admin\""),
            );
        }
        response
    }
}

fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

impl From<PlaneError> for ApiError {
    fn from(error: PlaneError) -> Self {
        match &error {
            PlaneError::Invalid(_) | PlaneError::Rejected(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                error.to_string(),
            ),
            PlaneError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            PlaneError::NotInitialised
            | PlaneError::AlreadyInitialised
            | PlaneError::NoActiveKey => {
                ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
            }
            PlaneError::InUse(_) => {
                ApiError::new(StatusCode::CONFLICT, "in_use", error.to_string())
            }
            PlaneError::Store(_) | PlaneError::Crypto(_) | PlaneError::Signing(_) => {
                tracing::error!(%error, "admin API: the request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the control plane could not complete the request",
                )
            }
        }
    }
}

/// Runs a handler's work (SQLite, signing, rendering) on the blocking pool, off the async
/// threads that accept connections and serve ADS.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the control plane could not complete the request",
        ))
    })
}

/// The control plane, for calls that need no caller (JWKS, the token endpoint).
fn lock(state: &ServerState) -> Result<&ControlPlane<SqliteStore>, ApiError> {
    Ok(&state.plane)
}

/// The caller, if its credential is valid and carries `scope`; the audit log names it.
fn authorize(
    state: &ServerState,
    headers: &HeaderMap,
    scope: &str,
) -> Result<ControlPlane<SqliteStore>, ApiError> {
    let credential = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_credential",
                "send Authorization: Bearer <tokenward credential with admin scopes>",
            )
        })?;
    let identity = state
        .plane
        .authenticate(credential, (state.clock)())
        .map_err(|e| match e {
            AuthError::Refused(refusal) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                refusal.code.code(),
                refusal.message,
            ),
            AuthError::Plane(error) => ApiError::from(error),
        })?;
    // Write implies read.
    let allowed = identity.has_scope(scope)
        || (scope == SCOPE_ADMIN_READ && identity.has_scope(SCOPE_ADMIN_WRITE));
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this call needs the scope {scope:?}"),
        ));
    }
    if scope == SCOPE_ADMIN_WRITE {
        // Set before the change: the xDS loop renders at least once after it (and the
        // store's revision moves with the commit itself).
        state
            .changed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    Ok(state.plane.acting_as(&identity.subject))
}

async fn jwks(State(state): State<Arc<ServerState>>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = lock(&state)?;
        Ok(Json(
            serde_json::to_value(plane.jwks((state.clock)())?).unwrap_or_default(),
        ))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

/// RFC 6749 §5.2 error: 401 with a Basic challenge for a bad client, 400 otherwise.
fn oauth_error(error: OAuthError) -> Response {
    let (status, code, description) = match error {
        OAuthError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
        OAuthError::InvalidClient => (
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the client secret is not a valid API key".to_string(),
        ),
        OAuthError::InvalidScope(s) => (
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!("the client may not request the scope {s:?}"),
        ),
        OAuthError::UnsupportedGrantType => (
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported".to_string(),
        ),
        OAuthError::Server(d) => {
            tracing::error!(error = %d, "token endpoint: no token issued");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be issued".to_string(),
            )
        }
    };
    let mut response = (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response();
    response.headers_mut().insert(
        "cache-control",
        axum::http::HeaderValue::from_static("no-store"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Basic realm=\"tokenward\""),
        );
    }
    response
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1) or the form body, not both.
fn client_credentials(
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<(Option<String>, String), OAuthError> {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    match (basic, &form.client_secret) {
        (Some(_), Some(_)) => Err(OAuthError::InvalidRequest(
            "use one client authentication method".into(),
        )),
        (Some(encoded), None) => {
            let decoded = jwt_simple::prelude::Base64::decode_to_vec(encoded.trim(), None)
                .map_err(|_| OAuthError::InvalidClient)?;
            let text = String::from_utf8(decoded).map_err(|_| OAuthError::InvalidClient)?;
            let (id, secret) = text.split_once(':').ok_or(OAuthError::InvalidClient)?;
            Ok(((!id.is_empty()).then(|| id.to_string()), secret.to_string()))
        }
        (None, Some(secret)) => Ok((form.client_id.clone(), secret.clone())),
        (None, None) => Err(OAuthError::InvalidClient),
    }
}

async fn oauth_token(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    blocking(move || Ok(exchange(&state, &headers, &form)))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn exchange(state: &ServerState, headers: &HeaderMap, form: &TokenForm) -> Response {
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(match form.grant_type {
            None => OAuthError::InvalidRequest("grant_type is required".into()),
            Some(_) => OAuthError::UnsupportedGrantType,
        });
    }
    let (client_id, secret) = match client_credentials(headers, form) {
        Ok(c) => c,
        Err(e) => return oauth_error(e),
    };
    let scopes = form.scope.as_ref().map(|s| {
        s.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    let now = (state.clock)();
    let minted = match lock(state) {
        Ok(plane) => plane.exchange_api_key(client_id.as_deref(), &secret, scopes, now),
        Err(e) => return e.into_response(),
    };
    match minted {
        Ok(token) => {
            let mut response = Json(json!({
                "access_token": token.token,
                "token_type": "Bearer",
                "expires_in": token.expires_at.saturating_sub(now),
            }))
            .into_response();
            response.headers_mut().insert(
                "cache-control",
                axum::http::HeaderValue::from_static("no-store"),
            );
            response
        }
        Err(e) => oauth_error(e),
    }
}

async fn list_keys(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let keys = plane.key_states((state.clock)())?;
        Ok(Json(Value::Array(
            keys.iter()
                .map(|(k, s)| json!({"kid": k.kid, "alg": k.alg.as_str(), "state": s, "activate_at": k.activate_at, "retired_at": k.retired_at, "publish_until": k.publish_until}))
                .collect(),
        )))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    alg: Option<String>,
    overlap_seconds: Option<u64>,
}

async fn rotate_key(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Option<Json<RotateBody>>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let body = body.map(|Json(b)| b).unwrap_or_default();
        let alg = match body.alg.as_deref() {
            None => Alg::EdDSA,
            Some(text) => Alg::parse(text).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "alg is EdDSA or ES256",
                )
            })?,
        };
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let key = plane.rotate_key(alg, body.overlap_seconds, (state.clock)())?;
        Ok(Json(
            json!({"kid": key.kid, "activate_at": key.activate_at}),
        ))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBody {
    subject: String,
    tenant: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    models: Option<Vec<String>>,
    plan: Option<String>,
    ttl_seconds: Option<u64>,
}

async fn mint_token(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Json(body): Json<MintBody>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let minted = plane.mint_token(
            &TokenRequest {
                subject: body.subject,
                tenant: body.tenant,
                scopes: body.scopes,
                models: body.models,
                plan: body.plan,
                ttl_seconds: body.ttl_seconds,
            },
            (state.clock)(),
        )?;
        Ok(Json(serde_json::to_value(minted).unwrap_or_default()))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyBody {
    subject: String,
    tenant: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    plan: Option<String>,
    expires_at: Option<u64>,
}

async fn create_api_key(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Json(body): Json<ApiKeyBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let created = plane.create_api_key(
            &ApiKeyRequest {
                subject: body.subject,
                tenant: body.tenant,
                scopes: body.scopes,
                models: body.models,
                plan: body.plan,
                expires_at: body.expires_at,
            },
            (state.clock)(),
        )?;
        Ok((
            StatusCode::CREATED,
            Json(json!({"id": created.id, "key": created.key})),
        ))
    })
    .await
}

async fn revoke_api_key(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        plane.revoke(&Revocation::ApiKey(id), (state.clock)())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    jti: Option<String>,
    expires_at: Option<u64>,
    subject: Option<String>,
    tenant: Option<String>,
    /// A signing key's id.
    kid: Option<String>,
}

async fn revoke(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Json(body): Json<RevokeBody>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let what = match (body.jti, body.subject, body.tenant, body.kid) {
            (Some(jti), None, None, None) => Revocation::Jti {
                jti,
                expires_at: body.expires_at,
            },
            (None, Some(subject), None, None) => Revocation::Subject(subject),
            (None, None, Some(tenant), None) => Revocation::Tenant(tenant),
            (None, None, None, Some(kid)) => Revocation::Key(kid),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "name exactly one of jti, subject, tenant and kid",
                ))
            }
        };
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let count = plane.revoke(&what, (state.clock)())?;
        Ok(Json(json!({"revoked": count})))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderBody {
    style: ProviderStyle,
    cluster: Option<String>,
    authority: String,
    /// `{"env": "VAR"}` or `{"value": "<the key>"}` (sealed; never returned).
    credential: CredentialBody,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum CredentialBody {
    Env(String),
    Value(String),
}

/// Saves a provider and answers its listing entry. One that no Envoy can load (an
/// environment variable `serve` does not pass into the VM) is saved all the same, with a
/// `warning`: the operator may be about to add the variable, and the filter degrades only
/// that provider's routes.
async fn put_provider(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(body): Json<ProviderBody>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let entry_name = name.clone();
        let provider = ProviderConfig {
            cluster: body.cluster.unwrap_or_else(|| name.clone()),
            name,
            style: body.style,
            authority: body.authority,
            credential: CredentialSource::Env(String::new()),
            headers: body.headers,
        };
        let secret = match body.credential {
            CredentialBody::Env(var) => ProviderSecret::Env(var),
            CredentialBody::Value(value) => ProviderSecret::Sealed(value),
        };
        plane.put_provider(provider, secret, (state.clock)())?;
        // Envoys' reports are about the configuration before this one: the prediction only.
        let mut listing = provider_listing(&state, &plane, false)?;
        let mut entry = listing
            .iter()
            .position(|e| e["name"] == entry_name.as_str())
            .map(|i| listing.swap_remove(i))
            .unwrap_or_default();
        if entry["status"] == "unavailable" {
            entry["warning"] = Value::String(format!(
                "provider {entry_name:?} is saved, but no Envoy fed by this control plane can load it: {}",
                entry["reason"].as_str().unwrap_or("")
            ));
        }
        Ok(Json(entry))
    })
    .await
}

/// Every provider with where its credential comes from (never the credential) and whether it
/// can carry traffic: `status` `available`, `unavailable` (with `reason`, and the Envoys
/// that report so in `unavailable_in`) or `unknown`.
fn provider_listing(
    state: &ServerState,
    plane: &ControlPlane<SqliteStore>,
    with_reports: bool,
) -> Result<Vec<Value>, ApiError> {
    let stored = plane.store().providers().map_err(PlaneError::from)?;
    let configs: Vec<ProviderConfig> = stored.iter().map(|p| p.config.clone()).collect();
    let env_keys = state
        .vm_env_keys
        .lock()
        .map(|k| k.clone())
        .unwrap_or_default();
    let reports: Vec<(String, Vec<crate::model::ConfigPart>)> = if with_reports {
        crate::state::unavailable_parts(&state.proxies)
    } else {
        Vec::new()
    };
    let reports: Vec<(&str, &[crate::model::ConfigPart])> = reports
        .iter()
        .map(|(node, parts)| (node.as_str(), parts.as_slice()))
        .collect();
    let availability = crate::model::provider_availability(&configs, env_keys.as_deref(), &reports);
    Ok(stored
        .iter()
        .zip(availability)
        .map(|(provider, (_, availability))| {
            let config = &provider.config;
            let credential = match (&config.credential, &provider.credential_sealed) {
                (_, Some(_)) => json!({"sealed": true}),
                (CredentialSource::Env(var), None) => json!({"env": var}),
                (CredentialSource::Inline(_), None) => json!({"inline": true}),
            };
            let part = crate::model::ConfigPart {
                kind: "provider".into(),
                name: crate::model::stat_name(&config.name),
            };
            let unavailable_in: Vec<&str> = reports
                .iter()
                .filter(|(_, parts)| parts.contains(&part))
                .map(|(node, _)| *node)
                .collect();
            let mut entry = json!({
                "name": config.name,
                "style": config.style,
                "cluster": config.cluster,
                "authority": config.authority,
                "credential": credential,
                "headers": config.headers,
            });
            if let (Some(map), Ok(Value::Object(status))) =
                (entry.as_object_mut(), serde_json::to_value(&availability))
            {
                map.extend(status);
                if !unavailable_in.is_empty() {
                    map.insert("unavailable_in".into(), json!(unavailable_in));
                }
            }
            entry
        })
        .collect())
}

async fn list_providers(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        Ok(Json(Value::Array(provider_listing(&state, &plane, true)?)))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    /// Remove what depends on it too: a provider's routes; a plan's API keys (revoked).
    #[serde(default)]
    force: bool,
}

/// What a removal answers: what went, and what went with it.
fn removed(kind: &str, name: &str, removed: crate::plane::Removed) -> Json<Value> {
    Json(json!({
        "removed": {"kind": kind, "name": name},
        "routes": removed.routes,
        "revoked_api_keys": removed.revoked_api_keys,
    }))
}

async fn remove_provider(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let gone = plane.remove_provider(&name, query.force, (state.clock)())?;
        Ok(removed("provider", &name, gone))
    })
    .await
}

async fn remove_route(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let gone = plane.remove_route(&name, (state.clock)())?;
        Ok(removed("route", &name, gone))
    })
    .await
}

async fn remove_plan(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let gone = plane.remove_plan(&name, query.force, (state.clock)())?;
        Ok(removed("plan", &name, gone))
    })
    .await
}

/// `{model}` is the price's model pattern, percent-encoded where it holds `/`.
async fn remove_price(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let gone = plane.remove_price(&model, (state.clock)())?;
        Ok(removed("price", &model, gone))
    })
    .await
}

async fn put_route(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(route): Json<RouteConfig>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if route.name != name {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the route's name must match the path",
            ));
        }
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        plane.put_route(route, (state.clock)())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn put_plan(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(plan): Json<PlanConfig>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        plane.put_plan(&name, plan, (state.clock)())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn put_price(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Json(price): Json<PriceConfig>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        plane.put_price(price, (state.clock)())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// The rendered configuration, with inline provider credentials redacted.
async fn get_config(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let mut config = plane.render((state.clock)())?;
        for provider in &mut config.providers {
            if let CredentialSource::Inline(_) = provider.credential {
                provider.credential = CredentialSource::Inline("(sealed)".into());
            }
        }
        Ok(Json(serde_json::to_value(config).unwrap_or_default()))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let entries = plane
            .store()
            .audit_log(query.limit.unwrap_or(100).min(10_000))
            .map_err(PlaneError::from)?;
        Ok(Json(serde_json::to_value(entries).unwrap_or_default()))
    })
    .await
}

/// Every Envoy that connected to the xDS server: the versions it ACKed, its last NACK.
async fn proxies(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        drop(authorize(&state, &headers, SCOPE_ADMIN_READ)?);
        let proxies = state
            .proxies
            .lock()
            .map(|p| serde_json::to_value(&*p).unwrap_or_default())
            .unwrap_or_default();
        Ok(Json(proxies))
    })
    .await
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// The OpenAPI 3.1 description of this API.
pub fn openapi_document() -> Value {
    let secured = |summary: &str, scope: &str| {
        json!({"summary": summary, "security": [{"tokenward": [scope]}],
               "responses": {"200": {"description": "done"}, "401": {"description": "no valid credential"}, "403": {"description": "the credential lacks the scope"}}})
    };
    // A removal: 404 when absent, 409 `in_use` while something names it (unless forced).
    let removal = |summary: &str, forcible: bool| {
        let mut operation = secured(summary, SCOPE_ADMIN_WRITE);
        operation["responses"]["404"] = json!({"description": "no such entry"});
        operation["responses"]["409"] =
            json!({"description": "in_use: something still refers to it"});
        if forcible {
            operation["parameters"] = json!([{"name": "force", "in": "query", "schema": {"type": "boolean", "default": false},
                "description": "remove what depends on it too (a provider's routes; a plan's API keys, revoked)"}]);
        }
        operation
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "tokenward control plane", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"tokenward": {"type": "http", "scheme": "bearer", "description": "A tokenward JWT or API key with admin:read or admin:write"}}},
        "paths": {
            "/.well-known/jwks.json": {"get": {"summary": "The public signing keys", "responses": {"200": {"description": "a JWK set"}}}},
            "/oauth/token": {"post": {"summary": "OAuth 2.0 client credentials grant: an API key as the client secret for a short-lived JWT",
                "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {"grant_type": {"const": "client_credentials"}, "client_id": {"type": "string"}, "client_secret": {"type": "string"}, "scope": {"type": "string"}}}}}},
                "responses": {"200": {"description": "access_token, token_type, expires_in"}, "400": {"description": "RFC 6749 §5.2 error"}, "401": {"description": "invalid_client"}}}},
            "/admin/v1/keys": {"get": secured("Signing keys and their states", SCOPE_ADMIN_READ)},
            "/admin/v1/keys/rotate": {"post": secured("New signing key: published now, signing after the overlap", SCOPE_ADMIN_WRITE)},
            "/admin/v1/tokens": {"post": secured("Mint a JWT", SCOPE_ADMIN_WRITE)},
            "/admin/v1/apikeys": {"post": secured("Create an API key (returned once)", SCOPE_ADMIN_WRITE)},
            "/admin/v1/apikeys/{id}": {"delete": secured("Revoke an API key", SCOPE_ADMIN_WRITE)},
            "/admin/v1/revocations": {"post": secured("Revoke by jti, subject or tenant", SCOPE_ADMIN_WRITE)},
            "/admin/v1/providers": {"get": secured("Providers, each with status available, unavailable (with reason and the Envoys reporting it) or unknown", SCOPE_ADMIN_READ)},
            "/admin/v1/providers/{name}": {"put": secured("Add or replace a provider; answers its entry, with a warning when no Envoy can load it", SCOPE_ADMIN_WRITE),
                "delete": removal("Remove a provider (force: with the routes that use it)", true)},
            "/admin/v1/routes/{name}": {"put": secured("Add or replace a route", SCOPE_ADMIN_WRITE),
                "delete": removal("Remove a route", false)},
            "/admin/v1/plans/{name}": {"put": secured("Add or replace a quota plan", SCOPE_ADMIN_WRITE),
                "delete": removal("Remove a quota plan (never the default; force: revoking the API keys that name it)", true)},
            "/admin/v1/prices": {"put": secured("Add or replace a model price", SCOPE_ADMIN_WRITE)},
            "/admin/v1/prices/{model}": {"delete": removal("Remove a model price (not the last one while a plan counts cost)", false)},
            "/admin/v1/config": {"get": secured("The rendered filter configuration (credentials redacted)", SCOPE_ADMIN_READ)},
            "/admin/v1/audit": {"get": secured("The newest audit entries", SCOPE_ADMIN_READ)},
            "/admin/v1/proxies": {"get": secured("Connected Envoys: versions ACKed or NACKed (with the error), last seen, and the configuration parts each reports it could not load", SCOPE_ADMIN_READ)}
        }
    })
}

#[cfg(test)]
mod tests;
