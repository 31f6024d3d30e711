//! The control plane's HTTP API (axum): the JWKS, the OAuth 2.0 token endpoint, and the admin
//! REST API with its OpenAPI document. Handlers are thin: authenticate, call `ControlPlane`,
//! shape the answer. Admin calls need a tokenward credential (JWT or API key), verified
//! exactly as the gateway verifies one, with `admin:read` or `admin:write`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use jwt_simple::reexports::ct_codecs::Decoder;
use serde::Deserialize;
use serde_json::{json, Value};
use tokenward_filter::config::{
    CredentialSource, PlanConfig, PriceConfig, ProviderConfig, ProviderStyle, RouteConfig,
};

use crate::model::Alg;
use crate::plane::{
    ApiKeyRequest, AuthError, EntryKind, OAuthError, PlaneError, ProviderListing, ProviderSecret,
    Revocation, TokenRequest, SCOPE_ADMIN_READ, SCOPE_ADMIN_WRITE,
};
use crate::state::{Plane, ServerState};
use crate::view;

mod body;
mod catalog;
mod credentials;
mod oauth;
mod openapi;
mod sync;

use body::JsonBody;
use catalog::*;
use credentials::*;
use oauth::*;
pub use openapi::openapi_document;
use sync::*;

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth/token", post(oauth_token))
        .route("/admin/v1/openapi.json", get(openapi))
        .route("/admin/v1/keys", get(list_keys))
        .route("/admin/v1/keys/rotate", post(rotate_key))
        .route("/admin/v1/tokens", post(mint_token).get(list_tokens))
        .route("/admin/v1/apikeys", post(create_api_key).get(list_api_keys))
        .route("/admin/v1/apikeys/{id}", show("apikeys"))
        .route("/admin/v1/tokens/{jti}", show("tokens"))
        .route("/admin/v1/revocations", post(revoke).get(list_revocations))
        .route(
            "/admin/v1/revocations/subjects/{subject}",
            delete(unrevoke_subject),
        )
        .route("/admin/v1/providers", get(list_providers))
        .route(
            "/admin/v1/providers/{name}",
            put(put_provider)
                .merge(remove(EntryKind::Provider))
                .merge(show("providers")),
        )
        .route(
            "/admin/v1/routes/{name}",
            put(put_route)
                .merge(remove(EntryKind::Route))
                .merge(show("routes")),
        )
        .route(
            "/admin/v1/plans/{name}",
            put(put_plan)
                .merge(remove(EntryKind::Plan))
                .merge(show("plans")),
        )
        .route("/admin/v1/routes", get(list_routes))
        .route("/admin/v1/plans", get(list_plans))
        .route("/admin/v1/prices", put(put_price).get(list_prices))
        .route(
            "/admin/v1/prices/{model}",
            remove(EntryKind::Price).merge(show("prices")),
        )
        .route("/admin/v1/config", get(get_config))
        .route("/admin/v1/audit", get(audit))
        .route("/admin/v1/proxies", get(proxies))
        .route("/admin/v1/usage", get(usage))
        .route("/admin/v1/quota", get(quota))
        .route(tokenward_filter::sync::CONFIG_PATH, get(pull_config))
        .route(tokenward_filter::sync::REPORT_PATH, post(report_usage))
        .with_state(std::sync::Arc::clone(&state))
        .merge(crate::ui::router(state))
        .layer(axum::middleware::from_fn(json_errors))
}

/// Every error answer is JSON in the shape of `ApiError`, also those the router and the
/// extractors make themselves (404 and 405 without a body, a malformed query or path in
/// plain text): a client parses one shape whatever went wrong.
async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    // The dashboard answers in HTML, its errors too.
    let dashboard = request.uri().path().starts_with("/ui");
    let response = next.run(request).await;
    if dashboard {
        return response;
    }
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let allow = response.headers().get(axum::http::header::ALLOW).cloned();
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string(),
        text => text.to_string(),
    };
    let code = match status.as_u16() {
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "request_too_large",
        415 => "unsupported_media_type",
        400..=499 => "invalid_request",
        _ => "internal_error",
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    if let Some(allow) = allow {
        answer
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    answer
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
fn lock(state: &ServerState) -> Result<&Plane, ApiError> {
    Ok(&state.plane)
}

/// The caller, if its credential is valid and carries `scope`; the audit log names it.
fn authorize(state: &ServerState, headers: &HeaderMap, scope: &str) -> Result<Plane, ApiError> {
    let credential = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110 §11.1), as the gateway reads it.
            let (scheme, credential) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(credential)
        })
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
    Ok(state.plane.acting_as(identity.subject()))
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

#[cfg(test)]
pub(crate) mod tests;
