//! The request path, as decisions: route, credential, identity, revocation, scopes, model,
//! provider, credential swap. One `RequestFlow` per HTTP request; one `Worker` (policy and
//! verified-token cache) per Envoy worker. Reads the host through `Host`, returns `Decision`s.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::cache::VerifiedTokenCache;
use crate::config::ModelSource;
use crate::credential::{self, RequestHead};
use crate::decision::{Decision, HeaderEdits};
use crate::error::{ErrorCode, Refusal};
use crate::exchange::{api_format, body_shape, BodyShape, Exchange, UsageReport};
use crate::host::Host;
use crate::identity::{self, Identity};
use crate::model::{self, BodyEdit, ModelError};
use crate::policy::{Policy, Provider, ProviderChoice, Route, DEFAULT_ANTHROPIC_VERSION};
use crate::quota::{self, Demand, Grant, Plan, Settlement};
use crate::token;

/// What one Envoy worker holds: the policy in force and its verified-token cache. A new
/// configuration makes a new `Worker`, so the cache never outlives the keys it was built on.
#[derive(Debug)]
pub struct Worker {
    policy: Option<Rc<Policy>>,
    cache: RefCell<VerifiedTokenCache>,
}

impl Worker {
    /// No valid configuration: every request is refused with 503 (fail closed).
    pub fn unconfigured() -> Rc<Worker> {
        Rc::new(Worker {
            policy: None,
            cache: RefCell::new(VerifiedTokenCache::new(0)),
        })
    }

    pub fn configured(policy: Policy) -> Rc<Worker> {
        let cache = VerifiedTokenCache::new(policy.cache_entries);
        Rc::new(Worker {
            policy: Some(Rc::new(policy)),
            cache: RefCell::new(cache),
        })
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_deref()
    }

    pub fn cached_credentials(&self) -> usize {
        self.cache.borrow().len()
    }
}

/// One request's progress through the filter.
pub struct RequestFlow {
    worker: Rc<Worker>,
    awaiting_body: Option<AwaitingBody>,
    exchange: Option<Exchange>,
    /// The request went on to the provider (a body route: once its body passed).
    forwarded: bool,
    /// The quota counts the request holds until it settles.
    grant: Option<Grant>,
    /// The response status, once the response headers have passed.
    status: Option<u16>,
    /// Stat names to count, taken by the host glue after each callback.
    events: Vec<String>,
}

/// A request that passed authentication and scopes and waits for its body to name the model.
struct AwaitingBody {
    identity: Arc<Identity>,
    route: Arc<Route>,
    plan: Option<Arc<Plan>>,
    /// `None` for endpoints that report no usage.
    shape: Option<BodyShape>,
}

impl RequestFlow {
    pub fn new(worker: Rc<Worker>) -> Self {
        RequestFlow {
            worker,
            awaiting_body: None,
            exchange: None,
            forwarded: false,
            grant: None,
            status: None,
            events: Vec::new(),
        }
    }

    /// Stat names the last callbacks counted (quota refusals, shadow overruns, store errors).
    pub fn take_events(&mut self) -> Vec<String> {
        std::mem::take(&mut self.events)
    }

    pub fn on_request_headers(&mut self, host: &impl Host, end_of_stream: bool) -> Decision {
        self.headers_stage(host, end_of_stream)
            .unwrap_or_else(Decision::Refuse)
    }

    /// `body_size` is everything buffered so far; `end_of_stream` says whether that is all.
    pub fn on_request_body(
        &mut self,
        host: &impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Decision {
        let Some(awaiting) = &self.awaiting_body else {
            return Decision::Continue;
        };
        if body_size as u64 > awaiting.route.max_body_bytes {
            self.awaiting_body = None;
            return Decision::Refuse(too_large());
        }
        if !end_of_stream {
            return Decision::WaitForBody;
        }
        let Some(awaiting) = self.awaiting_body.take() else {
            return Decision::Continue;
        };
        self.body_stage(host, body_size, awaiting)
            .unwrap_or_else(Decision::Refuse)
    }

    fn headers_stage(
        &mut self,
        host: &impl Host,
        end_of_stream: bool,
    ) -> Result<Decision, Refusal> {
        let policy = self.worker.policy.clone().ok_or_else(|| {
            Refusal::new(
                ErrorCode::NotConfigured,
                "the gateway has no valid configuration loaded",
            )
        })?;
        let headers = host.request_headers();
        let head = RequestHead::parse(&headers)?;
        let route = policy
            .route_for(head.path, head.method)
            .cloned()
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::RouteNotFound,
                    "no route is configured for this path and method",
                )
            })?;
        let credential = credential::extract(&head, route.allow_query_credential)?;
        let hash = identity::credential_hash(&credential.value);
        let now = host.now_unix_seconds().ok_or_else(|| {
            Refusal::new(ErrorCode::InternalError, "the host clock is unavailable")
        })?;
        let authenticated = {
            let mut cache = self.worker.cache.borrow_mut();
            token::authenticate(&policy, &mut cache, &credential.value, &hash, now)
        };
        let identity = authenticated.inspect_err(|refusal| {
            log::info!(
                "refused {} on route {}: credential {}: {}",
                refusal.code.code(),
                route.name,
                identity::fingerprint(&hash),
                refusal.message
            );
        })?;
        if matches!(route.provider, ProviderChoice::Unavailable) {
            return Err(Refusal::new(
                ErrorCode::RouteUnavailable,
                format!(
                    "the route {:?} could not be loaded by this gateway; try again later",
                    clip(&route.name)
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
                    "the credential lacks the scope {:?} this route requires",
                    clip(missing)
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
        let copies = headers.iter().filter(|(name, value)| {
            !name.starts_with(':')
                && !credential::CREDENTIAL_HEADERS.contains(name)
                && credential::contains_credential(value, &credential.value)
        });
        let swap = Swap {
            present_credentials: head.credential_header_names().collect(),
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
        let (model, provider) = match route.model_source {
            ModelSource::None => (None, provider_for(&route, None)?),
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
                authorize_model(&identity, model)?;
                (Some(model.to_string()), provider_for(&route, Some(model))?)
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
                (None, provider_for(&route, None)?)
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
            model,
            identity.subject.clone(),
        );
        exchange.price = exchange
            .model
            .as_deref()
            .and_then(|m| policy.quotas.price_for(m));
        if route.model_source == ModelSource::Body {
            // Headers cannot change once the body is being read (proxy-wasm), so the swap
            // happens now and the body only decides whether the request may go on. The body
            // may be rewritten (quota clamp, usage in streams): its length is set again after
            // it (the buffer filter in envoy.yaml adds content-length back).
            edits.remove.push("content-length");
            self.exchange = Some(exchange);
            self.awaiting_body = Some(AwaitingBody {
                identity,
                route,
                plan,
                shape,
            });
            return Ok(Decision::ReadBody(edits));
        }
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
            self.grant = Some(self.admit(plan, &identity, &demand, host.store(), now)?);
        }
        self.exchange = Some(exchange);
        self.forwarded = true;
        Ok(Decision::Forward(edits))
    }

    fn admit(
        &mut self,
        plan: &Arc<Plan>,
        identity: &Identity,
        demand: &Demand,
        store: &dyn crate::counter::SharedStore,
        now: u64,
    ) -> Result<Grant, Refusal> {
        match quota::admit(plan, identity, demand, store, now) {
            Ok(mut grant) => {
                self.events.append(&mut grant.events);
                Ok(grant)
            }
            Err(mut refused) => {
                self.events.append(&mut refused.stats);
                Err(refused.refusal)
            }
        }
    }

    /// What the response headers callback needs: whether it reads the response headers (a
    /// metered exchange: its status, content type and encoding), and whether it adds any
    /// (a quota grant's rate-limit headers).
    pub fn response_header_needs(&self) -> (bool, bool) {
        (
            self.exchange.as_ref().is_some_and(|e| e.format.is_some()),
            self.grant.is_some(),
        )
    }

    /// Response headers of a forwarded request; returns the rate-limit headers to add.
    pub fn on_response_headers(&mut self, host: &impl Host) -> Vec<(String, String)> {
        self.status = host
            .response_header(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok());
        if let Some(exchange) = &mut self.exchange {
            if exchange.format.is_some() {
                let content_type = host.response_header("content-type");
                let content_encoding = host.response_header("content-encoding");
                exchange.on_response_headers(content_type.as_deref(), content_encoding.as_deref());
            }
        }
        match (&self.grant, host.now_unix_seconds()) {
            (Some(grant), Some(now)) => grant.client_headers(now),
            _ => Vec::new(),
        }
    }

    /// A piece of the response body (`body_size` bytes, passed through untouched); the usage
    /// report once the response is complete.
    pub fn on_response_body(
        &mut self,
        host: &impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Option<UsageReport> {
        let exchange = self.exchange.as_mut()?;
        if !exchange.wants_body() {
            return None;
        }
        let chunk = if body_size > 0 {
            host.response_body(body_size).unwrap_or_default()
        } else {
            Vec::new()
        };
        let report = exchange.on_response_body(&chunk, end_of_stream)?;
        self.settle(host, &report, true);
        Some(report)
    }

    /// The request is over, complete or not: a report not given yet (an aborted stream).
    pub fn on_done(&mut self, host: &impl Host) -> Option<UsageReport> {
        if !self.forwarded {
            return None;
        }
        let report = self.exchange.as_mut()?.on_done()?;
        self.settle(host, &report, false);
        Some(report)
    }

    /// The request was let through but could not be sent on (the host refused the body
    /// rewrite): everything it holds goes back.
    pub fn abandon(&mut self, host: &impl Host) {
        self.forwarded = false;
        if let (Some(grant), Some(now)) = (self.grant.take(), host.now_unix_seconds()) {
            let mut failures = grant.settle(Settlement::Refund, host.store(), now, true);
            self.events.append(&mut failures);
        }
    }

    /// Corrects the quota reservations to the response's usage (`finished`: the response
    /// body ended normally). A client error (4xx) without usage gives the tokens back: the
    /// provider refused the request and bills nothing. Any other answer without usage, or one
    /// that did not end (a stream cut short, the client gone, no answer yet, a 5xx or an
    /// Envoy timeout after the provider had the request) is charged at least its
    /// reservation: the provider may have billed it.
    fn settle(&mut self, host: &impl Host, report: &UsageReport, finished: bool) {
        let Some(grant) = self.grant.take() else {
            return;
        };
        let refused_by_provider = self.status.is_some_and(|s| (400..500).contains(&s));
        let settlement = match (report.usage, finished, refused_by_provider) {
            (Some(usage), true, _) | (Some(usage), false, true) => Settlement::Usage(usage),
            (None, _, true) => Settlement::Refund,
            (usage, _, false) => Settlement::Unfinished(usage),
        };
        let Some(now) = host.now_unix_seconds() else {
            return;
        };
        let mut failures = grant.settle(settlement, host.store(), now, false);
        self.events.append(&mut failures);
    }

    /// Who the request was forwarded for, if it was.
    pub fn subject(&self) -> Option<&str> {
        if !self.forwarded {
            return None;
        }
        self.exchange.as_ref().map(|e| e.subject.as_str())
    }

    fn body_stage(
        &mut self,
        host: &impl Host,
        body_size: usize,
        awaiting: AwaitingBody,
    ) -> Result<Decision, Refusal> {
        let body = host.request_body(body_size).ok_or_else(|| {
            Refusal::new(
                ErrorCode::InternalError,
                "the request body could not be read",
            )
        })?;
        let fields = model::read_body(&body).map_err(|e| match e {
            ModelError::InvalidJson(reason) => Refusal::new(
                ErrorCode::InvalidJson,
                format!("the request body is not valid JSON: {reason}"),
            ),
            ModelError::Missing => Refusal::new(
                ErrorCode::MissingModel,
                "the request body has no \"model\" string",
            ),
        })?;
        authorize_model(&awaiting.identity, &fields.model)?;
        let price = self
            .worker
            .policy()
            .and_then(|p| p.quotas.price_for(&fields.model));
        if let Some(exchange) = &mut self.exchange {
            exchange.model = Some(fields.model.clone());
            exchange.price = price;
        }
        let mut edit = BodyEdit::default();
        if let (Some(plan), Some(now)) = (&awaiting.plan, host.now_unix_seconds()) {
            let (mut demand, requested) = match awaiting.shape {
                // An endpoint that reports no usage reserves no tokens: nothing would settle
                // them.
                None => (Demand::default(), None),
                Some(shape) => {
                    let requested = fields.output_limit(shape.limit_fields).map_err(|field| {
                        Refusal::new(
                            ErrorCode::InvalidJson,
                            format!("\"{field}\" must be a number of tokens"),
                        )
                    })?;
                    let output = output_reserve(plan, shape, requested);
                    (Demand::estimate(body_size as u64, output, price), requested)
                }
            };
            if let Some(shape) = awaiting
                .shape
                .filter(|s| plan.clamp_max_tokens && !plan.shadow && !s.limit_fields.is_empty())
            {
                let allowance =
                    quota::output_allowance(plan, &awaiting.identity, &demand, host.store(), now)
                        .ok()
                        .flatten();
                let output = demand.tokens.output_tokens;
                let capped = allowance.map_or(output, |a| a.min(output));
                // Nothing left: no clamp; the admission below refuses with the limit's
                // headers. Otherwise the limit is always written, also where the request set
                // none, so no answer can outgrow its reservation.
                if capped > 0 && requested != Some(capped) {
                    let present: Vec<&'static str> = shape
                        .limit_fields
                        .iter()
                        .copied()
                        .filter(|f| fields.output_limits.iter().any(|(n, _)| n == f))
                        .collect();
                    let targets = if present.is_empty() {
                        shape.limit_fields[..1].to_vec()
                    } else {
                        present
                    };
                    edit.output_limit = Some((targets, capped));
                    demand.tokens.output_tokens = capped;
                }
            }
            self.grant = Some(self.admit(plan, &awaiting.identity, &demand, host.store(), now)?);
        }
        // A stream that reports usage only when asked is asked, so it can be counted.
        edit.include_usage = fields.stream
            && !fields.include_usage
            && awaiting.shape.is_some_and(|s| s.usage_is_opt_in);
        self.forwarded = true;
        if edit.is_empty() {
            return Ok(Decision::Continue);
        }
        match edit.apply(&body) {
            Ok(body) => Ok(Decision::ReplaceBody(body)),
            // `read_body` accepted this body, so this should not happen; should it, the body
            // is what could not be handled: a 400 with the reason, never a 5xx.
            Err(e) => {
                self.abandon(host);
                let reason = match e {
                    ModelError::InvalidJson(reason) => reason,
                    ModelError::Missing => "it is not a JSON object".to_string(),
                };
                Err(Refusal::new(
                    ErrorCode::InvalidJson,
                    format!("the request body could not be rewritten: {reason}"),
                ))
            }
        }
    }
}

/// Output tokens to reserve: what the request allows, else the plan's default, none for an
/// API without output (embeddings).
fn output_reserve(plan: &Plan, shape: BodyShape, requested: Option<u64>) -> u64 {
    if !shape.produces_output {
        return 0;
    }
    requested.unwrap_or(plan.default_output_tokens)
}

fn authorize_model(identity: &Identity, model: &str) -> Result<(), Refusal> {
    if identity.may_use_model(model) {
        return Ok(());
    }
    Err(Refusal::new(
        ErrorCode::ModelNotAllowed,
        format!("the credential may not use the model {:?}", clip(model)),
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
                "the provider {:?} could not be loaded by this gateway; try again later",
                clip(&provider.name)
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
                        "no provider on this route serves the model {:?}",
                        clip(model)
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
    present_credentials: Vec<&'static str>,
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
                .iter()
                .copied()
                .filter(|h| !sets(h))
                .chain(strip_encoding.then_some("accept-encoding"))
                .collect(),
            remove_owned: self.internal_headers.clone(),
            provider_headers: Arc::clone(&provider.upstream_headers),
            set,
        }
    }
}

fn too_large() -> Refusal {
    Refusal::new(
        ErrorCode::RequestTooLarge,
        "the request body exceeds this route's size limit",
    )
}

/// Client-supplied text echoed in a message is cut short.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(128) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

#[cfg(test)]
mod tests;
