//! The request path, as decisions: route, credential, identity, revocation, scopes, model,
//! provider, credential swap, quota, usage. One `RequestFlow` per HTTP request, a state
//! machine by phase (`head`: the request headers; `body`: the body that names the model;
//! `response`: metering and settling what came back); one `Worker` (policy and
//! verified-token cache) per Envoy worker. Reads the host through `Host`, returns `Decision`s.

mod blocks;
mod body;
mod head;
mod response;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::auth::cache::VerifiedTokenCache;
use crate::decision::Decision;
use crate::error::ErrorStyle;
use crate::exchange::{Exchange, UsageReport};
use crate::host::Host;
use crate::identity::Identity;
use crate::policy::{Policy, Route};
use crate::provider::BodyShape;
use crate::quota::fleet::Allowances;
use crate::quota::{Grant, Plan, Settlement};

#[cfg(test)]
use crate::{decision::HeaderEdits, error::ErrorCode, error::Refusal};

/// What one Envoy worker holds: the policy in force and its verified-token cache. A new
/// configuration makes a new `Worker`, so the cache never outlives the keys it was built on.
#[derive(Debug)]
pub struct Worker {
    policy: Option<Rc<Policy>>,
    cache: RefCell<VerifiedTokenCache>,
    /// The Envoy's fleet allowances, when a sync channel shares the plans' limits.
    fleet: Option<Rc<RefCell<Allowances>>>,
    /// Until when some source of this Envoy is blocked, as this worker last heard (its timer
    /// copies it from shared data): while it is past, a cached credential costs the guard
    /// no host call.
    blocks_until: Cell<u64>,
}

impl Worker {
    /// No valid configuration: every request is refused with 503 (fail closed).
    pub fn unconfigured() -> Rc<Worker> {
        Rc::new(Worker {
            policy: None,
            cache: RefCell::new(VerifiedTokenCache::new(0)),
            fleet: None,
            blocks_until: Cell::new(0),
        })
    }

    /// A worker that counts alone.
    #[cfg(any(test, feature = "test-support"))]
    pub fn configured(policy: Policy) -> Rc<Worker> {
        Worker::configured_in(policy, None)
    }

    /// A worker whose plans' limits hold across the fleet (`fleet`), or alone (`None`).
    pub fn configured_in(policy: Policy, fleet: Option<Rc<RefCell<Allowances>>>) -> Rc<Worker> {
        let cache = VerifiedTokenCache::new(policy.cache_entries);
        Rc::new(Worker {
            policy: Some(Rc::new(policy)),
            cache: RefCell::new(cache),
            fleet,
            blocks_until: Cell::new(0),
        })
    }

    /// The timer: learns of blocks other workers started (one shared-data read).
    pub fn refresh_blocks(&self, store: &dyn crate::quota::counter::SharedStore) {
        if self.policy.as_ref().is_some_and(|p| p.guard.is_some()) {
            self.note_block_until(crate::guard::active_until(store));
        }
    }

    fn note_block_until(&self, until: u64) {
        self.blocks_until.set(self.blocks_until.get().max(until));
    }

    /// Whether a source of this Envoy may be blocked at `now`.
    fn blocks_active(&self, now: u64) -> bool {
        self.blocks_until.get() > now
    }

    /// The fleet allowances the request path counts against, if any.
    fn fleet(&self) -> crate::quota::Fleet<'_> {
        self.fleet.as_deref()
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_deref()
    }

    #[cfg(any(test, feature = "test-support"))]
    pub fn cached_credentials(&self) -> usize {
        self.cache.borrow().len()
    }
}

/// One request's progress through the filter.
pub struct RequestFlow {
    worker: Rc<Worker>,
    phase: Phase,
    /// Stat names to count, taken by the host glue after each callback.
    events: Vec<String>,
    /// Who and what the request was decided for, once known: the access log names them on
    /// refusals too.
    seen: Seen,
}

/// The identity a request authenticated as, and the model it named, as far as it got.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub identity: Option<Arc<Identity>>,
    pub model: Option<String>,
    /// The error shape of the route's provider, once the route is known.
    pub style: ErrorStyle,
}

/// Where a request is. Each phase holds exactly what the next callbacks need.
enum Phase {
    /// Waiting for the request headers.
    Head,
    /// Authenticated and swapped; its body must name the model before it may go on.
    Body(Box<AwaitingBody>),
    /// Sent on to the provider: its answer is metered, its quota held until it settles.
    Forwarded(Box<Forwarded>),
    /// Refused, or let through but never sent on: nothing left to do or count.
    Closed,
}

/// A request that passed authentication and scopes and waits for its body to name the model.
struct AwaitingBody {
    identity: Arc<Identity>,
    route: Arc<Route>,
    plan: Option<Arc<Plan>>,
    /// `None` for endpoints that report no usage.
    shape: Option<BodyShape>,
    exchange: Exchange,
}

/// A request on its way to the provider, or back.
struct Forwarded {
    exchange: Exchange,
    /// The quota counts the request holds until it settles.
    grant: Option<Grant>,
    /// The response status, once the response headers have passed.
    status: Option<u16>,
}

impl Forwarded {
    fn new(exchange: Exchange, grant: Option<Grant>) -> Box<Forwarded> {
        Box::new(Forwarded {
            exchange,
            grant,
            status: None,
        })
    }
}

impl RequestFlow {
    pub fn new(worker: Rc<Worker>) -> Self {
        RequestFlow {
            worker,
            phase: Phase::Head,
            events: Vec::new(),
            seen: Seen::default(),
        }
    }

    /// Stat names the last callbacks counted (quota refusals, shadow overruns, store errors).
    pub fn take_events(&mut self) -> Vec<String> {
        std::mem::take(&mut self.events)
    }

    pub fn on_request_headers(&mut self, host: &impl Host, end_of_stream: bool) -> Decision {
        if !matches!(self.phase, Phase::Head) {
            return Decision::Continue;
        }
        let outcome = head::decide(
            &self.worker,
            host,
            end_of_stream,
            &mut self.events,
            &mut self.seen,
        );
        self.enter(outcome)
    }

    /// `body_size` is everything buffered so far; `end_of_stream` says whether that is all.
    pub fn on_request_body(
        &mut self,
        host: &impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Decision {
        let Phase::Body(awaiting) = &self.phase else {
            return Decision::Continue;
        };
        let style = awaiting.route.error_style();
        if body_size as u64 > awaiting.route.max_body_bytes {
            self.phase = Phase::Closed;
            return Decision::Refuse(head::too_large().in_style(style));
        }
        if !end_of_stream {
            return Decision::WaitForBody;
        }
        let Phase::Body(awaiting) = std::mem::replace(&mut self.phase, Phase::Closed) else {
            return Decision::Continue;
        };
        let outcome = body::decide(
            &self.worker,
            host,
            body_size,
            *awaiting,
            &mut self.events,
            &mut self.seen,
        )
        .map_err(|refusal| refusal.in_style(style));
        self.enter(outcome)
    }

    /// Moves to the phase a callback decided on and returns what the host must do.
    fn enter(&mut self, outcome: Result<(Decision, Phase), crate::error::Refusal>) -> Decision {
        match outcome {
            Ok((decision, mut phase)) => {
                if let Phase::Forwarded(forwarded) = &mut phase {
                    // The model the request named goes with it, for the usage report.
                    forwarded.exchange.model = self.seen.model.take();
                }
                self.phase = phase;
                decision
            }
            Err(refusal) => {
                self.phase = Phase::Closed;
                Decision::Refuse(refusal)
            }
        }
    }

    fn forwarded(&self) -> Option<&Forwarded> {
        match &self.phase {
            Phase::Forwarded(forwarded) => Some(forwarded),
            _ => None,
        }
    }

    fn forwarded_mut(&mut self) -> Option<&mut Forwarded> {
        match &mut self.phase {
            Phase::Forwarded(forwarded) => Some(forwarded),
            _ => None,
        }
    }

    /// What the response headers callback needs: whether it reads the response headers (a
    /// metered exchange: its status, content type and encoding), and whether it adds any
    /// (a quota grant's rate-limit headers).
    pub fn response_header_needs(&self) -> (bool, bool) {
        self.forwarded().map_or((false, false), |f| {
            (
                f.exchange.format.is_some(),
                f.grant.as_ref().is_some_and(Grant::sends_headers),
            )
        })
    }

    /// Whether the client's answer must not carry the provider's rate-limit headers (they
    /// describe the provider key the gateway shares): under a plan not in shadow mode.
    pub fn hides_provider_rate_limits(&self) -> bool {
        self.forwarded()
            .and_then(|f| f.grant.as_ref())
            .is_some_and(Grant::hides_provider_rate_limits)
    }

    /// Response headers of a forwarded request; returns the rate-limit headers to add.
    pub fn on_response_headers(&mut self, host: &impl Host) -> Vec<(&'static str, String)> {
        self.forwarded_mut()
            .map(|f| response::on_headers(f, host))
            .unwrap_or_default()
    }

    /// A piece of the response body (`body_size` bytes, passed through untouched); the usage
    /// report once the response is complete.
    pub fn on_response_body(
        &mut self,
        host: &impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Option<UsageReport> {
        let Phase::Forwarded(forwarded) = &mut self.phase else {
            return None;
        };
        response::on_body(forwarded, host, body_size, end_of_stream, &mut self.events)
    }

    /// Whether the response body may reach the client changed (so its length header must go).
    pub fn rewrites_response_body(&self) -> bool {
        self.forwarded()
            .is_some_and(|f| f.exchange.rewrites_body())
    }

    /// What the client gets instead of the response chunk just passed, if it differs (a
    /// stream without the usage chunk the filter asked for).
    pub fn take_body_replacement(&mut self) -> Option<Vec<u8>> {
        self.forwarded_mut()?.exchange.take_replacement()
    }

    /// The request is over, complete or not: a report not given yet (an aborted stream).
    pub fn on_done(&mut self, host: &impl Host) -> Option<UsageReport> {
        let Phase::Forwarded(forwarded) = &mut self.phase else {
            return None;
        };
        response::on_done(forwarded, host, &mut self.events)
    }

    /// The request was let through but could not be sent on (the host refused a header or
    /// body rewrite): everything it holds goes back.
    pub fn abandon(&mut self, host: &impl Host) {
        if let Phase::Forwarded(mut forwarded) = std::mem::replace(&mut self.phase, Phase::Closed)
        {
            // Refused after all: the access log names the model it had named.
            self.seen.model = forwarded.exchange.model.take();
            refund(forwarded.grant, host, &mut self.events);
        }
    }

    /// The subject and model a refused request had shown when it was refused (after
    /// authentication), for the access log.
    pub fn refused_for(&self) -> (Option<&str>, Option<&str>) {
        (
            self.seen.identity.as_deref().map(Identity::subject),
            self.seen.model.as_deref(),
        )
    }

    /// The error shape a refusal of this request takes: the route's provider's once the
    /// route is known, OpenAI's before.
    pub fn error_style(&self) -> ErrorStyle {
        self.seen.style
    }

    /// Whose usage the request is, if it was forwarded.
    pub fn usage_key(&self) -> Option<crate::sync::UsageKey> {
        self.forwarded().map(|f| f.exchange.usage_key())
    }

    /// Who the request was forwarded for, if it was.
    pub fn subject(&self) -> Option<&str> {
        self.forwarded().map(|f| f.exchange.subject.as_str())
    }
}

/// Gives back every count a grant holds (the request never reached the provider).
fn refund(grant: Option<Grant>, host: &impl Host, events: &mut Vec<String>) {
    if let (Some(grant), Some(now)) = (grant, host.now_unix_seconds()) {
        events.append(&mut grant.settle(Settlement::Refund, host.store(), now, true));
    }
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
