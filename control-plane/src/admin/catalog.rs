//! Providers, routes, plans and prices over the admin API, the rendered configuration, the
//! audit log and what is known of each Envoy.

use super::*;

/// A provider; the path names it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ProviderBody {
    /// How the provider takes its credential and reports usage.
    style: ProviderStyle,
    /// The Envoy cluster its requests go to (the provider's name when absent).
    #[schemars(length(min = 1))]
    cluster: Option<String>,
    /// The `:authority` (Host) the provider expects, e.g. api.openai.com.
    #[schemars(length(min = 1))]
    authority: String,
    /// `{"env": "VAR"}` (an environment variable of Envoy's Wasm VM) or
    /// `{"value": "<the key>"}` (sealed; never returned).
    credential: CredentialBody,
    /// Headers set on every request to it (e.g. `anthropic-version`).
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum CredentialBody {
    /// The name of an environment variable of Envoy's Wasm VM.
    Env(String),
    /// The credential itself: sealed under the master key, never returned.
    Value(String),
}

/// Saves a provider and answers its listing entry. One that no Envoy can load (an
/// environment variable `serve` does not pass into the VM) is saved all the same, with a
/// `warning`: the operator may be about to add the variable, and the filter degrades only
/// that provider's routes.
pub(super) async fn put_provider(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let body: ProviderBody = body.parse()?;
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
        let listing = provider_listing(&state, &plane, false)?;
        let mut entry = listing
            .iter()
            .find(|p| p.stored.config.name == entry_name)
            .map(view::provider)
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

/// The providers as this server sees them: the VM's environment from `serve --env-key`,
/// and (`with_reports`) what connected Envoys report they could not load.
pub(super) fn provider_listing(
    state: &ServerState,
    plane: &Plane,
    with_reports: bool,
) -> Result<Vec<ProviderListing>, ApiError> {
    let env_keys = state
        .vm_env_keys
        .lock()
        .map(|k| k.clone())
        .unwrap_or_default();
    let reports: Vec<(String, Vec<crate::model::ConfigPart>)> = if with_reports {
        crate::state::unavailable_parts(&state.fleet())
    } else {
        Vec::new()
    };
    let reports: Vec<(&str, &[crate::model::ConfigPart])> = reports
        .iter()
        .map(|(node, parts)| (node.as_str(), parts.as_slice()))
        .collect();
    Ok(plane.provider_listing(env_keys.as_deref(), &reports)?)
}

pub(super) async fn list_providers(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        Ok(Json(
            view::providers(&provider_listing(&state, &plane, true)?).json,
        ))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoveQuery {
    /// Remove what depends on it too: a provider's routes; a plan's API keys (revoked).
    #[serde(default)]
    force: bool,
}

/// `DELETE` of a catalog entry of `kind`, by name (a price by its model pattern,
/// percent-encoded where it holds `/`); `?force=true` takes what refers to it along.
pub(super) fn remove(kind: EntryKind) -> axum::routing::MethodRouter<Arc<ServerState>> {
    delete(
        move |State(state): State<Arc<ServerState>>,
              headers: HeaderMap,
              Path(name): Path<String>,
              Query(query): Query<RemoveQuery>| async move {
            blocking(move || {
                let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
                let gone = plane.remove_entry(kind, &name, query.force, (state.clock)())?;
                Ok(Json(view::removal(kind.label(), &name, &gone).json))
            })
            .await
        },
    )
}

pub(super) async fn put_route(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: JsonBody,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        // The path names the route; a body that names it too must agree.
        let mut document: Value = body.parse()?;
        let Some(fields) = document.as_object_mut() else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the request body is not what this call takes: a route is a JSON object",
            ));
        };
        match fields.get("name") {
            None => {
                fields.insert("name".into(), Value::String(name.clone()));
            }
            Some(Value::String(named)) if *named == name => {}
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the route's name must match the path",
                ))
            }
        }
        let route: RouteConfig = serde_json::from_value(document).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the request body is not what this call takes: {error}"),
            )
        })?;
        plane.put_route(route, (state.clock)())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

pub(super) async fn put_plan(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: JsonBody,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let plan: PlanConfig = body.parse()?;
        plane.put_plan(&name, plan, (state.clock)())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

pub(super) async fn put_price(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_WRITE)?;
        let price: PriceConfig = body.parse()?;
        plane.put_price(price, (state.clock)())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `GET` of one entry of `kind` (apikeys, tokens, providers, routes, plans, prices), as its
/// list shows it; 404 when there is none.
pub(super) fn show(kind: &'static str) -> axum::routing::MethodRouter<Arc<ServerState>> {
    get(
        move |State(state): State<Arc<ServerState>>,
              headers: HeaderMap,
              Path(name): Path<String>| async move {
            show_entry(state, headers, kind, name).await
        },
    )
}

async fn show_entry(
    state: Arc<ServerState>,
    headers: HeaderMap,
    kind: &'static str,
    name: String,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let store = plane.store();
        let missing = || PlaneError::NotFound(format!("{kind} {name:?}"));
        let one = match kind {
            "apikeys" => {
                let keys: Vec<_> = store
                    .api_keys()
                    .map_err(PlaneError::from)?
                    .into_iter()
                    .filter(|k| k.id == name)
                    .collect();
                (!keys.is_empty()).then(|| view::api_keys(&keys, (state.clock)()).single())
            }
            "tokens" => store
                .token(&name)
                .map_err(PlaneError::from)?
                .map(|t| view::tokens(&[t]).single()),
            "providers" => {
                let listing: Vec<_> = provider_listing(&state, &plane, true)?
                    .into_iter()
                    .filter(|p| p.stored.config.name == name)
                    .collect();
                (!listing.is_empty()).then(|| view::providers(&listing).single())
            }
            "routes" => {
                let mut routes = store.routes().map_err(PlaneError::from)?;
                routes.retain(|r| r.name == name);
                (!routes.is_empty()).then(|| view::routes(&routes).single())
            }
            "plans" => {
                let mut plans = store.plans().map_err(PlaneError::from)?;
                plans.retain(|(n, _)| *n == name);
                (!plans.is_empty()).then(|| {
                    let all = view::plans(&plans, None);
                    view::View {
                        json: all.json["plans"][name.as_str()].clone(),
                        text: all.text,
                    }
                })
            }
            "prices" => {
                let mut prices = store.prices().map_err(PlaneError::from)?;
                prices.retain(|p| p.model == name);
                (!prices.is_empty()).then(|| view::prices(&prices).single())
            }
            _ => None,
        };
        Ok(Json(one.ok_or_else(missing)?.json))
    })
    .await
}

pub(super) async fn list_routes(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let routes = plane.store().routes().map_err(PlaneError::from)?;
        Ok(Json(view::routes(&routes).json))
    })
    .await
}

pub(super) async fn list_plans(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let plans = plane.store().plans().map_err(PlaneError::from)?;
        Ok(Json(
            view::plans(&plans, plane.default_plan()?.as_deref()).json,
        ))
    })
    .await
}

pub(super) async fn list_prices(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let prices = plane.store().prices().map_err(PlaneError::from)?;
        Ok(Json(view::prices(&prices).json))
    })
    .await
}

/// The rendered configuration, with inline provider credentials redacted.
pub(super) async fn get_config(
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
pub(super) struct AuditQuery {
    limit: Option<u64>,
}

pub(super) async fn audit(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let entries = plane
            .store()
            .audit_log(query.limit.unwrap_or(100).min(10_000) as usize)
            .map_err(PlaneError::from)?;
        Ok(Json(view::audit(&entries).json))
    })
    .await
}

/// Every Envoy of the fleet, whichever replica serves it: the versions it ACKed, its last
/// NACK, what it reports, and the replica.
pub(super) async fn proxies(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        drop(authorize(&state, &headers, SCOPE_ADMIN_READ)?);
        let fleet: serde_json::Map<String, Value> = state
            .fleet()
            .into_iter()
            .map(|proxy| {
                let mut entry = serde_json::to_value(&proxy.status).unwrap_or_default();
                entry["replica"] = Value::String(proxy.replica);
                (proxy.node, entry)
            })
            .collect();
        Ok(Json(Value::Object(fleet)))
    })
    .await
}
