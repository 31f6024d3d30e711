//! The public endpoints: the JWKS, and the OAuth 2.0 token endpoint (client credentials:
//! an API key for a short-lived JWT).

use super::*;

pub(super) async fn jwks(State(state): State<Arc<ServerState>>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = lock(&state)?;
        Ok(Json(
            serde_json::to_value(plane.jwks((state.clock)())?).unwrap_or_default(),
        ))
    })
    .await
}

/// The token request (RFC 6749 §4.4.2); the client may authenticate with HTTP Basic instead
/// of `client_secret`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub(super) struct TokenForm {
    /// `client_credentials`.
    #[schemars(with = "GrantType")]
    grant_type: Option<String>,
    /// The API key's id (optional).
    client_id: Option<String>,
    /// The API key.
    client_secret: Option<String>,
    /// Space-separated scopes, a subset of the API key's (all of them when absent).
    scope: Option<String>,
}

/// The one grant the endpoint serves.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum GrantType {
    ClientCredentials,
}

/// RFC 6749 §5.2 error: 401 with a Basic challenge for a bad client, 400 otherwise.
pub(super) fn oauth_error(error: OAuthError) -> Response {
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
pub(super) fn client_credentials(
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

/// The form is parsed here rather than by axum's `Form`, so a malformed one gets an RFC 6749
/// error like every other refusal of this endpoint.
pub(super) async fn oauth_token(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let is_form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return oauth_error(OAuthError::InvalidRequest(
            "send the request as application/x-www-form-urlencoded".into(),
        ));
    }
    let form: TokenForm = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(error) => {
            return oauth_error(OAuthError::InvalidRequest(format!(
                "the form does not parse: {error}"
            )))
        }
    };
    blocking(move || Ok(exchange(&state, &headers, &form)))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(super) fn exchange(state: &ServerState, headers: &HeaderMap, form: &TokenForm) -> Response {
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
