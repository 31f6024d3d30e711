//! Signing keys, tokens, API keys and revocations over the admin API.

use schemars::JsonSchema;

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

/// A new signing key.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateBody {
    /// EdDSA (the default) or ES256.
    #[schemars(extend("enum" = ["EdDSA", "ES256", null]))]
    alg: Option<String>,
    /// Seconds the key is published before it signs (the `key_overlap_seconds` setting when
    /// absent); at most 7 days.
    #[schemars(range(max = crate::plane::MAX_KEY_OVERLAP))]
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

/// What a JWT is minted with.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MintBody {
    /// Who the token is for (`sub`): 1-256 printable ASCII characters, no spaces.
    #[schemars(with = "Identifier")]
    subject: String,
    /// The tenant quotas and revocations can group by.
    tenant: Option<String>,
    /// Scopes the token carries (`scope`).
    #[serde(default)]
    scopes: Vec<String>,
    /// Model patterns the token may use (`*` matches any run); any model when absent.
    models: Option<Vec<String>>,
    /// The quota plan (an existing one); the default plan when absent.
    plan: Option<String>,
    /// Lifetime in seconds, at most `max_token_ttl_seconds` (the lifetime when absent).
    #[schemars(range(min = 1))]
    ttl_seconds: Option<u64>,
}

/// A subject: 1-256 printable ASCII characters, no spaces.
#[derive(JsonSchema)]
#[schemars(extend("minLength" = 1, "maxLength" = 256, "pattern" = "^[!-~]+$"))]
pub(super) struct Identifier(#[allow(dead_code)] String);

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

/// What an API key is created with.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiKeyBody {
    /// Who the key is for: 1-256 printable ASCII characters, no spaces.
    #[schemars(with = "Identifier")]
    subject: String,
    /// The tenant quotas and revocations can group by.
    tenant: Option<String>,
    /// Scopes the key carries.
    #[serde(default)]
    scopes: Vec<String>,
    /// Model patterns the key may use (`*` matches any run); any model when empty.
    #[serde(default)]
    models: Vec<String>,
    /// The quota plan; the default plan when absent.
    plan: Option<String>,
    /// Unix time the key stops working (in the future, before the year 10000); never when
    /// absent.
    #[schemars(range(max = crate::model::MAX_UNIX_TIME))]
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

/// What to revoke: exactly one of `jti`, `subject`, `tenant`, `kid` and `api_key` (its schema
/// says so; the handler says what is wrong in plain words).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeBody {
    jti: Option<String>,
    expires_at: Option<u64>,
    subject: Option<String>,
    tenant: Option<String>,
    /// A signing key's id.
    kid: Option<String>,
    /// An API key's id.
    api_key: Option<String>,
}

impl JsonSchema for RevokeBody {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RevokeBody".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let text = serde_json::json!({"type": "string", "minLength": 1});
        let one = |name: &str, description: &str, extra: Option<(&str, Value)>| {
            let mut properties = serde_json::Map::new();
            properties.insert(name.to_string(), text.clone());
            if let Some((key, schema)) = extra {
                properties.insert(key.to_string(), schema);
            }
            serde_json::json!({"type": "object", "description": description,
                "required": [name], "properties": properties, "additionalProperties": false})
        };
        schemars::json_schema!({
            "description": "What to revoke: exactly one of jti, subject, tenant, kid and api_key",
            "oneOf": [
                one("jti", "one JWT, by id; expires_at (Unix time) when it was not minted here", Some(("expires_at", serde_json::json!({"type": ["integer", "null"], "minimum": 0, "maximum": crate::model::MAX_UNIX_TIME})))),
                one("subject", "every credential of a subject, now and later", None),
                one("tenant", "every credential of a tenant that exists now", None),
                one("kid", "a signing key: unpublished, and every token it signed refused", None),
                one("api_key", "an API key, by id, and the tokens exchanged for it; it stays listed as revoked", None),
            ]
        })
    }
}

pub(super) async fn revoke(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let body: RevokeBody = body.parse()?;
        let what = match (body.jti, body.subject, body.tenant, body.kid, body.api_key) {
            (Some(jti), None, None, None, None) => Revocation::Jti {
                jti,
                expires_at: body.expires_at,
            },
            (None, Some(subject), None, None, None) => Revocation::Subject(subject),
            (None, None, Some(tenant), None, None) => Revocation::Tenant(tenant),
            (None, None, None, Some(kid), None) => Revocation::Key(kid),
            (None, None, None, None, Some(id)) => Revocation::ApiKey(id),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "name exactly one of jti, subject, tenant, kid and api_key",
                ))
            }
        };
        if body.expires_at.is_some() && !matches!(what, Revocation::Jti { .. }) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "expires_at goes with jti only",
            ));
        }
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
