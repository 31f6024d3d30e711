//! Signing keys, tokens, API keys and revocations over the admin API.

use super::*;

pub(super) async fn list_keys(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let keys = plane.key_states((state.clock)())?;
        Ok(Json(view::signing_keys(&keys).json))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateBody {
    alg: Option<String>,
    overlap_seconds: Option<u64>,
}

pub(super) async fn rotate_key(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let body: RotateBody = body.parse_or_default()?;
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
        let key = plane.rotate_key(alg, body.overlap_seconds, (state.clock)())?;
        Ok(Json(view::rotated(&key).json))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MintBody {
    subject: String,
    tenant: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    models: Option<Vec<String>>,
    plan: Option<String>,
    ttl_seconds: Option<u64>,
}

pub(super) async fn mint_token(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let body: MintBody = body.parse()?;
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
        Ok(Json(view::minted(&minted).json))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiKeyBody {
    subject: String,
    tenant: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    plan: Option<String>,
    expires_at: Option<u64>,
}

pub(super) async fn create_api_key(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let body: ApiKeyBody = body.parse()?;
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
            Json(view::api_key_created(&created).json),
        ))
    })
    .await
}

pub(super) async fn revoke_api_key(
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
pub(super) struct RevokeBody {
    jti: Option<String>,
    expires_at: Option<u64>,
    subject: Option<String>,
    tenant: Option<String>,
    /// A signing key's id.
    kid: Option<String>,
}

pub(super) async fn revoke(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let body: RevokeBody = body.parse()?;
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
        let count = plane.revoke(&what, (state.clock)())?;
        Ok(Json(view::revoked(&what, count).json))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WhoseQuery {
    subject: Option<String>,
    tenant: Option<String>,
}

/// API keys (never a key or its hash), `?subject=` and `?tenant=` to narrow them.
pub(super) async fn list_api_keys(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(query): Query<WhoseQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let keys = plane.api_keys(query.subject.as_deref(), query.tenant.as_deref())?;
        Ok(Json(view::api_keys(&keys, (state.clock)()).json))
    })
    .await
}

/// Minted tokens still accepted, newest first; `?subject=`, `?tenant=` to narrow them.
pub(super) async fn list_tokens(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(query): Query<WhoseQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let tokens = plane.live_tokens(
            (state.clock)(),
            query.subject.as_deref(),
            query.tenant.as_deref(),
        )?;
        Ok(Json(view::tokens(&tokens).json))
    })
    .await
}

pub(super) async fn list_revocations(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        Ok(Json(
            view::revocations(&plane.revocations((state.clock)())?).json,
        ))
    })
    .await
}

/// Lifts a subject's revocation (audited); 404 when the subject is not revoked.
pub(super) async fn unrevoke_subject(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(subject): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        plane.unrevoke_subject(&subject, (state.clock)())?;
        Ok(Json(view::unrevoked(&subject).json))
    })
    .await
}
