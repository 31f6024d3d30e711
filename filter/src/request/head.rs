//! The request headers: route, credential, identity, revocation, scopes, a model named in
//! the path, the provider, and the credential swap. A route that reads the body moves on to
//! `body`; any other is admitted against its quota here and forwarded.

use std::sync::Arc;

use super::blocks::{self, Source};
use super::{clip, AwaitingBody, Forwarded, Phase, Seen, Worker};
use crate::config::ModelSource;
use crate::credential::{self, RequestHead};
use crate::decision::{Decision, HeaderEdits};
use crate::error::{ErrorCode, Refusal};
use crate::exchange::Exchange;
use crate::host::Host;
use crate::identity::{self, Identity};
use crate::model;
use crate::policy::{Policy, ProviderChoice, Route};
use crate::provider::{api_format, body_shape, BodyShape, Provider, DEFAULT_ANTHROPIC_VERSION};
use crate::quota::{self, Demand, Plan};
use crate::quoted::Quoted;
use crate::auth::token;

/// Decides on the request headers; the phase the request moves to with them.
pub(super) fn decide(
    worker: &Worker,
    host: &impl Host,
    end_of_stream: bool,
    events: &mut Vec<String>,
    seen: &mut Seen,
) -> Result<(Decision, Phase), Refusal> {
    let policy = worker.policy.clone().ok_or_else(|| {
        Refusal::new(
            ErrorCode::NotConfigured,
            "the gateway has no valid configuration loaded",
        )
    })?;
    let block = host.request_headers();
    // Read out of the block once: the head, the route and the copies of the credential each
    // look through them.
    let headers: Vec<(&str, &[u8])> = block.iter().collect();
    let head = RequestHead::parse(&headers)?;
    let has_header = |name: &str| headers.iter().any(|(n, _)| *n == name);
    let route = policy
        .route_for_request(head.path, head.method, &has_header)
        .cloned()
        .ok_or_else(|| {
            Refusal::new(
                ErrorCode::RouteNotFound,
                "no route is configured for this path and method",
            )
        })?;
    // From here on the route's provider says how a refusal looks to the client's SDK.
    let style = route.error_style();
    seen.style = style;
    on_route(
        worker,
        &policy,
        host,
        &headers,
        &head,
        route,
        end_of_stream,
        events,
        seen,
    )
        .map_err(|refusal| refusal.in_style(style))
}

/// The rest of the headers' decision, once the route is known.
#[allow(clippy::too_many_arguments)]
fn on_route(
    worker: &Worker,
    policy: &Policy,
    host: &impl Host,
    headers: &[(&str, &[u8])],
    head: &RequestHead<'_>,
    route: Arc<Route>,
    end_of_stream: bool,
    events: &mut Vec<String>,
    seen: &mut Seen,
) -> Result<(Decision, Phase), Refusal> {
    let now = host
        .now_unix_seconds()
        .ok_or_else(|| Refusal::new(ErrorCode::InternalError, "the host clock is unavailable"))?;
    let mut source = policy
        .guard
        .as_deref()
        .map(|settings| Source::new(host, settings));
    let credential = match credential::extract(head, route.allow_query_credential) {
        Ok(credential) => credential,
        Err(refusal) => {
            // No credential to fingerprint: counted against the address only.
            if let (Some(source), ErrorCode::MissingCredential) = (&mut source, refusal.code) {
                source.note_failure(worker, None, now, events);
            }
            return Err(refusal);
        }
    };
    let key = identity::cache_key(&credential.value);
    let cached = worker.cache.borrow().get(&key, now);
    // The SHA-256 fingerprint names the credential in logs and blocks: only off the cached
    // path.
    let fingerprint = || identity::fingerprint(&identity::credential_hash(&credential.value));
    let verified = match cached {
        Some(identity) => {
            // A verified credential costs no host call unless a block is in force somewhere
            // in this Envoy; then its address is checked too: a blocked source is refused
            // whatever it sends.
            if let Some(source) = &mut source {
                if worker.blocks_active(now) {
                    source.refuse_if_blocked(None, now, events)?;
                }
            }
            Ok(identity)
        }
        None => {
            if let Some(source) = &mut source {
                source.refuse_if_blocked(Some(&fingerprint()), now, events)?;
            }
            events.push(blocks::stat::VERIFICATIONS.to_string());
            let mut cache = worker.cache.borrow_mut();
            token::verify(&policy.credentials, &mut cache, &credential.value, &key, now)
        }
    };
    let authenticated =
        verified.and_then(|identity| token::unless_revoked(&policy.credentials, identity));
    let identity = authenticated.inspect_err(|refusal| {
        let fingerprint = fingerprint();
        log::info!(
            "refused {} on route {}: credential {}: {}",
            refusal.code.code(),
            route.name,
            fingerprint,
            refusal.message
        );
        if let Some(source) = &mut source {
            source.note_failure(worker, Some(&fingerprint), now, events);
        }
    })?;
    seen.identity = Some(Arc::clone(&identity));
    if matches!(route.provider, ProviderChoice::Unavailable) {
        return Err(Refusal::new(
            ErrorCode::RouteUnavailable,
            format!(
                "the route {} could not be loaded by this gateway; try again later",
                Quoted(clip(&route.name))
            ),
        ));
    }
    if let Some(missing) = route
        .required_scopes
        .iter()
        .find(|s| !identity.has_scope(s))
    {
        return Err(Refusal::new(
            ErrorCode::InsufficientScope,
            format!(
                "the credential lacks the scope {} this route requires",
                Quoted(clip(missing))
            ),
        )
        .with_required_scope(route.required_scopes.join(" ")));
    }
    // A copy of the credential must not travel on: in the URL it is refused (URLs are
    // logged on the way), in any other header (a cookie, a custom header) the header is
    // removed, since the provider has no use for it.
    let forwarded_path = credential.rewritten_path.as_deref().unwrap_or(head.path);
    if credential::contains_credential(forwarded_path.as_bytes(), &credential.value) {
        return Err(Refusal::new(
            ErrorCode::TokenInUrl,
            "the URL carries a copy of the credential; send it only in the Authorization header",
        ));
    }
    let copies = headers.iter().copied().filter(|(name, value)| {
        !name.starts_with(':')
            && !credential::CREDENTIAL_HEADERS.contains(name)
            && credential::contains_credential(value, &credential.value)
    });
    let swap = Swap {
        present_credentials: head.credential_header_names(),
        internal_headers: head
            .internal_headers
            .iter()
            .copied()
            .chain(copies.map(|(name, _)| name))
            .map(str::to_string)
            .collect(),
        rewritten_path: credential.rewritten_path,
        has_anthropic_version: head.has_anthropic_version,
    };
    // A model named in the path is kept once, in `seen`: the exchange takes it when the
    // request goes on (`RequestFlow::enter`).
    let provider = match route.model_source {
        ModelSource::None => provider_for(&route, None)?,
        ModelSource::GeminiPath => {
            let model = model::model_from_gemini_path(head.path).ok_or_else(|| {
                Refusal::new(
                    ErrorCode::MissingModel,
                    "the path names no model (…/models/{model}:{method})",
                )
            })?;
            if model.contains('%') {
                // Matching the encoded form would let `a%3Ab` pass a pattern the provider
                // decodes differently: refuse rather than guess how it decodes.
                return Err(Refusal::new(
                    ErrorCode::InvalidHeader,
                    "the model in the path is percent-encoded; send the model name as it is",
                ));
            }
            seen.model = Some(model.to_string());
            authorize_model(&identity, model)?;
            provider_for(&route, Some(model))?
        }
        ModelSource::Body => {
            if end_of_stream {
                return Err(Refusal::new(
                    ErrorCode::MissingModel,
                    "the request has no body to name a model",
                ));
            }
            if head
                .content_length
                .is_some_and(|len| len > route.max_body_bytes)
            {
                return Err(too_large());
            }
            // The model is known once the body is read; the provider must be known now.
            provider_for(&route, None)?
        }
    };
    let format = api_format(provider.style, head.path);
    let shape = format.map(|f| body_shape(f, head.path));
    let plan = policy.quotas.plan_for(&identity)?.cloned();
    // Ask for an uncompressed answer where the filter must read the usage in it.
    let strip_encoding = format.is_some() && head.has_accept_encoding;
    let mut edits = swap.edits_for(provider, strip_encoding);
    let mut exchange = Exchange::new(
        Arc::clone(provider),
        format,
        None,
        identity.subject().to_string(),
    );
    exchange.caller = Some(Arc::clone(&identity));
    exchange.plan = plan.as_ref().map(|p| p.name.clone());
    exchange.price = seen
        .model
        .as_deref()
        .and_then(|m| policy.quotas.price_for(m));
    if route.model_source == ModelSource::Body {
        // Headers cannot change once the body is being read (proxy-wasm), so the swap
        // happens now and the body only decides whether the request may go on. The body
        // may be rewritten (quota clamp, usage in streams): its length is set again after
        // it (the buffer filter in envoy.yaml adds content-length back).
        edits.remove.push("content-length");
        let awaiting = AwaitingBody {
            identity,
            route,
            plan,
            shape,
            exchange,
        };
        return Ok((Decision::ReadBody(edits), Phase::Body(Box::new(awaiting))));
    }
    let mut grant = None;
    if let Some(plan) = &plan {
        // No body to read: the prompt is estimated from content-length.
        let demand = match shape {
            Some(shape) => Demand::estimate(
                head.content_length.unwrap_or(0),
                output_reserve(plan, shape, None),
                exchange.price,
            ),
            None => Demand::default(),
        };
        grant = Some(quota::admit_counted(
            plan,
            &identity,
            &demand,
            host.store(),
            worker.fleet(),
            now,
            events,
        )?);
    }
    Ok((
        Decision::Forward(edits),
        Phase::Forwarded(Forwarded::new(exchange, grant)),
    ))
}

/// Output tokens to reserve: what the request allows, else the plan's default, none for an
/// API without output (embeddings).
pub(super) fn output_reserve(plan: &Plan, shape: BodyShape, requested: Option<u64>) -> u64 {
    if !shape.produces_output {
        return 0;
    }
    requested.unwrap_or(plan.default_output_tokens)
}

pub(super) fn authorize_model(identity: &Identity, model: &str) -> Result<(), Refusal> {
    if identity.may_use_model(model) {
        return Ok(());
    }
    Err(Refusal::new(
        ErrorCode::ModelNotAllowed,
        format!("the credential may not use the model {}", Quoted(clip(model))),
    ))
}

/// The route's provider; `model` picks it on routes that choose by model (whose model is
/// known from the path, see `Policy::compile`).
fn provider_for<'r>(route: &'r Route, model: Option<&str>) -> Result<&'r Arc<Provider>, Refusal> {
    let provider = chosen_provider(route, model)?;
    if provider.unavailable {
        return Err(Refusal::new(
            ErrorCode::ProviderUnavailable,
            format!(
                "the provider {} could not be loaded by this gateway; try again later",
                Quoted(clip(&provider.name))
            ),
        ));
    }
    Ok(provider)
}

fn chosen_provider<'r>(
    route: &'r Route,
    model: Option<&str>,
) -> Result<&'r Arc<Provider>, Refusal> {
    match (&route.provider, model) {
        (ProviderChoice::Fixed(provider), _) => Ok(provider),
        (ProviderChoice::ByModel(list), Some(model)) => list
            .iter()
            .find(|(pattern, _)| model::pattern_matches(pattern, model))
            .map(|(_, provider)| provider)
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::ModelNotFound,
                    format!(
                        "no provider on this route serves the model {}",
                        Quoted(clip(model))
                    ),
                )
            }),
        // Policy::compile refuses model_providers on routes without a header-time model, and
        // refuses unavailable routes before a provider is chosen.
        (ProviderChoice::ByModel(_), None) | (ProviderChoice::Unavailable, _) => Err(Refusal::new(
            ErrorCode::InternalError,
            "the route chooses its provider by model but has none",
        )),
    }
}

/// What the credential swap needs to know about the client's request.
#[derive(Debug)]
struct Swap {
    present_credentials: credential::CredentialNames,
    internal_headers: Vec<String>,
    rewritten_path: Option<String>,
    has_anthropic_version: bool,
}

impl Swap {
    fn edits_for(&self, provider: &Provider, strip_encoding: bool) -> HeaderEdits {
        let sets = |name: &str| provider.upstream_headers.iter().any(|(n, _)| n == name);
        let mut set = Vec::new();
        if provider.needs_default_anthropic_version && !self.has_anthropic_version {
            set.push((
                "anthropic-version".to_string(),
                DEFAULT_ANTHROPIC_VERSION.as_bytes().to_vec(),
            ));
        }
        if let Some(path) = &self.rewritten_path {
            set.push((":path".to_string(), path.clone().into_bytes()));
        }
        HeaderEdits {
            // A header the provider's credential replaces needs no separate removal.
            remove: self
                .present_credentials
                .filter(|h| !sets(h))
                .chain(strip_encoding.then_some("accept-encoding"))
                .collect(),
            remove_owned: self.internal_headers.clone(),
            provider_headers: Arc::clone(&provider.upstream_headers),
            set,
        }
    }
}

pub(super) fn too_large() -> Refusal {
    Refusal::new(
        ErrorCode::RequestTooLarge,
        "the request body exceeds this route's size limit",
    )
}
