//! The request path, as decisions: route, credential, identity, revocation, scopes, model,
//! provider, credential swap. One `RequestFlow` per HTTP request; one `Worker` (policy and
//! verified-token cache) per Envoy worker. Reads the host through `Host`, returns `Decision`s.

use std::cell::RefCell;
use std::rc::Rc;

use crate::cache::VerifiedTokenCache;
use crate::config::ModelSource;
use crate::credential::{self, RequestHead};
use crate::decision::{Decision, HeaderEdits};
use crate::error::{ErrorCode, Refusal};
use crate::exchange::{api_format, Exchange, UsageReport};
use crate::host::Host;
use crate::model::{self, ModelError};
use crate::policy::{Policy, Provider, ProviderChoice, Route, DEFAULT_ANTHROPIC_VERSION};
use crate::token::{self, Identity};

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
}

/// A request that passed authentication and scopes and waits for its body to name the model.
struct AwaitingBody {
    identity: Rc<Identity>,
    route: Rc<Route>,
}

impl RequestFlow {
    pub fn new(worker: Rc<Worker>) -> Self {
        RequestFlow {
            worker,
            awaiting_body: None,
            exchange: None,
            forwarded: false,
        }
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
        let hash = token::credential_hash(&credential.value);
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
                token::fingerprint(&hash),
                refusal.message
            );
        })?;
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
        let swap = Swap {
            present_credentials: head.credential_header_names().collect(),
            internal_headers: head
                .internal_headers
                .iter()
                .map(|h| h.to_string())
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
        // Ask for an uncompressed answer where the filter must read the usage in it.
        let strip_encoding = format.is_some() && head.has_accept_encoding;
        let edits = swap.edits_for(provider, strip_encoding);
        self.exchange = Some(Exchange::new(
            Rc::clone(provider),
            format,
            model,
            identity.subject.clone(),
        ));
        if route.model_source == ModelSource::Body {
            // Headers cannot change once the body is being read (proxy-wasm), so the swap
            // happens now and the body only decides whether the request may go on.
            self.awaiting_body = Some(AwaitingBody { identity, route });
            return Ok(Decision::ReadBody(edits));
        }
        self.forwarded = true;
        Ok(Decision::Forward(edits))
    }

    /// Response headers of a forwarded request.
    pub fn on_response_headers(&mut self, host: &impl Host) {
        if let Some(exchange) = &mut self.exchange {
            if exchange.format.is_some() {
                let content_type = host.response_header("content-type");
                let content_encoding = host.response_header("content-encoding");
                exchange.on_response_headers(content_type.as_deref(), content_encoding.as_deref());
            }
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
        exchange.on_response_body(&chunk, end_of_stream)
    }

    /// The request is over, complete or not: a report not given yet (an aborted stream).
    pub fn on_done(&mut self) -> Option<UsageReport> {
        if !self.forwarded {
            return None;
        }
        self.exchange.as_mut()?.on_done()
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
        let model = model::model_from_body(&body).map_err(|e| match e {
            ModelError::InvalidJson(reason) => Refusal::new(
                ErrorCode::InvalidJson,
                format!("the request body is not valid JSON: {reason}"),
            ),
            ModelError::Missing => Refusal::new(
                ErrorCode::MissingModel,
                "the request body has no \"model\" string",
            ),
        })?;
        authorize_model(&awaiting.identity, &model)?;
        if let Some(exchange) = &mut self.exchange {
            exchange.model = Some(model.clone());
        }
        self.forwarded = true;
        Ok(Decision::Continue)
    }
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
fn provider_for<'r>(route: &'r Route, model: Option<&str>) -> Result<&'r Rc<Provider>, Refusal> {
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
        // Policy::compile refuses model_providers on routes without a header-time model.
        (ProviderChoice::ByModel(_), None) => Err(Refusal::new(
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
            provider_headers: Rc::clone(&provider.upstream_headers),
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
