//! The proxy-wasm ABI: the only module that talks to Envoy. Reads the host for the core
//! (`AbiHost`), hands configuration to `Policy`, and turns the core's `Decision`s into
//! header edits, local replies and `Action`s. The SDK supplies the context plumbing; the
//! host calls themselves go through `raw`, which returns errors where the SDK panics.

mod raw;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::counter::{QuotaError, SharedStore};
use crate::decision::{Decision, HeaderEdits};
use crate::error::{ErrorCode, Refusal};
use crate::exchange::{UsageReport, UsageStats};
use crate::host::{HeaderBlock, Host};
use crate::policy::Policy;
use crate::request::{RequestFlow, Worker};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(TokenwardRoot { worker: Worker::unconfigured(), stats: Rc::default() })
    });
}}

struct TokenwardRoot {
    worker: Rc<Worker>,
    stats: Rc<RefCell<Stats>>,
}

/// The worker's Envoy stats: metric ids by name, and the bounded naming of usage stats.
#[derive(Default)]
struct Stats {
    ids: HashMap<String, u32>,
    usage: UsageStats,
    forwarded: Option<u32>,
}

impl Stats {
    /// The per-request counter, its id kept at hand: it is on the hot path.
    fn count_forwarded(&mut self) {
        let id = match self.forwarded {
            Some(id) => id,
            None => match raw::define_counter("tokenward.requests.forwarded") {
                Ok(id) => *self.forwarded.insert(id),
                Err(_) => return,
            },
        };
        let _ = raw::increment_counter(id, 1);
    }

    fn add(&mut self, name: &str, by: u64) {
        let id = match self.ids.get(name) {
            Some(id) => *id,
            None => match raw::define_counter(name) {
                Ok(id) => {
                    self.ids.insert(name.to_string(), id);
                    id
                }
                Err(status) => {
                    log::warn!("stat {name} could not be defined: {status:?}");
                    return;
                }
            },
        };
        // A lost increment is no reason to fail a request.
        let _ = raw::increment_counter(id, by);
    }

    fn record_usage(&mut self, report: &UsageReport) {
        for (name, amount) in self.usage.counters(report) {
            self.add(&name, amount);
        }
        // For the access log (%FILTER_STATE(wasm.tokenward_…:PLAIN)%). Only for metered
        // exchanges: a property write per request would cost the hot path ~10%.
        let _ = raw::set_property("tokenward_subject", report.subject.as_bytes());
        if let Some(model) = &report.model {
            let _ = raw::set_property("tokenward_model", model.as_bytes());
        }
        if let Some(cost) = report.cost_micro_usd {
            let _ = raw::set_property("tokenward_cost_micro_usd", cost.to_string().as_bytes());
        }
        if let Some(usage) = report.usage {
            let _ = raw::set_property(
                "tokenward_input_tokens",
                usage.input_tokens.to_string().as_bytes(),
            );
            let _ = raw::set_property(
                "tokenward_output_tokens",
                usage.output_tokens.to_string().as_bytes(),
            );
        }
    }
}

impl Context for TokenwardRoot {}

impl RootContext for TokenwardRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = match raw::plugin_configuration() {
            Ok(config) => config,
            Err(status) => {
                log::error!("configuration could not be read: {status:?}");
                return false;
            }
        };
        if config.iter().all(u8::is_ascii_whitespace) {
            // No configuration is a valid state, not an error: ECDS's fail-closed default
            // and a fresh install start here. Every request gets 503 until a config arrives.
            log::warn!("no configuration; every request is refused with 503 not_configured");
            self.worker = Worker::unconfigured();
            return true;
        }
        let started = raw::now_nanoseconds().unwrap_or(0);
        match Policy::load(&config, &|name| std::env::var(name).ok()) {
            Ok(policy) => {
                // How long parsing and compiling took: what a large configuration costs
                // each worker.
                let micros = raw::now_nanoseconds().unwrap_or(0).saturating_sub(started) / 1000;
                log::info!(
                    "configuration {} applied in {}.{:03} ms ({} bytes)",
                    policy.version.as_deref().unwrap_or("(unversioned)"),
                    micros / 1000,
                    micros % 1000,
                    config.len()
                );
                // Keys and revocations are in force whatever else could not be loaded; what
                // could not is refused on its own, and shown in the log and the gauges.
                for part in policy.unavailable() {
                    log::error!(
                        "configuration {}: {} {:?} is unavailable: {}",
                        policy.version.as_deref().unwrap_or("(unversioned)"),
                        part.kind.label(),
                        part.name,
                        part.reason
                    );
                }
                report_unavailable(policy.unavailable());
                // A new worker state: the cache of the old keys goes with the old config.
                self.worker = Worker::configured(policy);
                true
            }
            Err(reason) => {
                // Returning false keeps the last good configuration in force (xDS NACK).
                log::error!("configuration refused: {reason}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TokenwardHttp {
            flow: RequestFlow::new(Rc::clone(&self.worker)),
            stats: Rc::clone(&self.stats),
            body_size: 0,
            refused: false,
        }))
    }
}

thread_local! {
    /// The unavailable-part gauges this VM set to 1, so a part that loads again goes back to 0
    /// (a configuration update brings a new root context, but the same VM).
    static UNAVAILABLE_GAUGES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Gauges `tokenward.config.unavailable.<kind>.<name>` (1 while unavailable, 0 once loaded
/// again) and `tokenward.config.unavailable_parts`: what Envoy reports to the control plane
/// through its metrics service sink, and what an operator sees in Envoy's stats.
fn report_unavailable(parts: &[crate::policy::UnavailablePart]) {
    let now: Vec<String> = parts.iter().map(|p| p.stat_name()).collect();
    UNAVAILABLE_GAUGES.with(|gauges| {
        let mut before = gauges.borrow_mut();
        for name in before.iter().filter(|n| !now.contains(n)) {
            let _ = raw::set_gauge(name, 0);
        }
        for name in &now {
            let _ = raw::set_gauge(name, 1);
        }
        *before = now;
    });
    let _ = raw::set_gauge(
        "tokenward.config.unavailable_parts",
        u64::try_from(parts.len()).unwrap_or(u64::MAX),
    );
}

struct TokenwardHttp {
    flow: RequestFlow,
    stats: Rc<RefCell<Stats>>,
    body_size: usize,
    refused: bool,
}

impl Context for TokenwardHttp {}

impl HttpContext for TokenwardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let decision = self.flow.on_request_headers(&AbiHost, end_of_stream);
        self.apply(decision, Phase::Headers)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_size = body_size;
        let decision = self
            .flow
            .on_request_body(&AbiHost, body_size, end_of_stream);
        self.apply(decision, Phase::Body)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the request body.
        let decision = self.flow.on_request_body(&AbiHost, self.body_size, true);
        self.apply(decision, Phase::Body)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (reads, adds) = self.flow.response_header_needs();
        if self.refused || !(reads || adds) {
            return Action::Continue;
        }
        // Host calls that return data cost the most (the host calls back into the VM to
        // allocate): read every response header at most once, and only when needed.
        let read = if reads {
            raw::response_headers()
                .inspect_err(|status| {
                    log::warn!("could not read the response headers: {status:?}");
                })
                .ok()
        } else {
            None
        };
        let was_read = read.is_some();
        let host = ResponseHost(read.unwrap_or_default());
        let added = self.flow.on_response_headers(&host);
        if added.is_empty() {
            return Action::Continue;
        }
        // Ours replace the provider's own rate-limit headers (those describe the provider
        // key the gateway shares, not the client's plan). Informational: a failure to write
        // them fails nothing.
        let written = if was_read {
            let pairs: Vec<(&str, &[u8])> = host
                .0
                .iter()
                .filter(|(name, _)| !is_rate_limit_header(name))
                .chain(added.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
                .collect();
            raw::set_response_headers(&HeaderBlock::from_pairs(pairs.iter().copied()))
        } else {
            // Not read (or unreadable): set ours one by one, replacing same-named ones.
            added
                .iter()
                .try_for_each(|(n, v)| raw::replace_response_header(n, v.as_bytes()))
        };
        if let Err(status) = written {
            log::warn!("could not add the rate-limit headers: {status:?}");
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.refused {
            if let Some(report) = self
                .flow
                .on_response_body(&AbiHost, body_size, end_of_stream)
            {
                self.stats.borrow_mut().record_usage(&report);
            }
            self.count_events();
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.refused {
            return;
        }
        if self.flow.subject().is_none() {
            return;
        }
        {
            let mut stats = self.stats.borrow_mut();
            stats.count_forwarded();
            if let Some(report) = self.flow.on_done(&AbiHost) {
                stats.record_usage(&report);
            }
        }
        self.count_events();
    }
}

impl TokenwardHttp {
    fn count_events(&mut self) {
        let events = self.flow.take_events();
        if events.is_empty() {
            return;
        }
        let mut stats = self.stats.borrow_mut();
        for event in events {
            stats.add(&event, 1);
        }
    }

    fn apply(&mut self, decision: Decision, phase: Phase) -> Action {
        self.count_events();
        let decision = match decision {
            Decision::ReplaceBody(body) => match raw::replace_request_body(self.body_size, &body) {
                Ok(()) => Decision::Continue,
                Err(status) => {
                    log::error!("could not rewrite the request body: {status:?}");
                    self.flow.abandon(&AbiHost);
                    self.count_events();
                    Decision::Refuse(Refusal::new(
                        ErrorCode::InternalError,
                        "the request could not be prepared for the provider",
                    ))
                }
            },
            other => other,
        };
        if let Decision::Refuse(refusal) = &decision {
            self.refused = true;
            self.stats.borrow_mut().add(
                &format!("tokenward.requests.refused.{}", refusal.code.code()),
                1,
            );
        }
        let action = apply(decision, phase);
        if matches!(action, Action::Pause) && matches!(phase, Phase::Headers) && !self.refused {
            // A refusal from a failed header rewrite: whatever the request holds goes back.
            self.refused = true;
            self.flow.abandon(&AbiHost);
            self.count_events();
        }
        action
    }
}

/// The real host, through proxy-wasm hostcalls.
struct AbiHost;

impl Host for AbiHost {
    fn request_headers(&self) -> HeaderBlock {
        // Without headers the request has no credential and is refused: fail closed.
        raw::request_headers().unwrap_or_default()
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        raw::request_body(size).ok()
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        raw::response_header(name).ok().flatten()
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        raw::response_body(size).ok()
    }

    fn now_unix_seconds(&self) -> Option<u64> {
        raw::now_nanoseconds().ok().map(|ns| ns / 1_000_000_000)
    }

    fn store(&self) -> &dyn SharedStore {
        self
    }
}

fn is_rate_limit_header(name: &str) -> bool {
    name.starts_with("x-ratelimit-") || name == "ratelimit" || name == "ratelimit-policy"
}

/// The host during the response headers callback, with those headers read once.
struct ResponseHost(HeaderBlock);

impl Host for ResponseHost {
    fn request_headers(&self) -> HeaderBlock {
        AbiHost.request_headers()
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        AbiHost.request_body(size)
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_vec())
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        AbiHost.response_body(size)
    }

    fn now_unix_seconds(&self) -> Option<u64> {
        AbiHost.now_unix_seconds()
    }

    fn store(&self) -> &dyn SharedStore {
        &AbiHost
    }
}

/// Envoy's shared data (per `vm_id`, shared by every worker) as the quota counters' store.
impl SharedStore for AbiHost {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, QuotaError> {
        raw::shared_data(key).map_err(|status| QuotaError::Store(format!("{status:?}")))
    }

    fn compare_and_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<bool, QuotaError> {
        // Envoy ignores the CAS token of a key that does not exist yet and treats 0 as "no
        // check", so creation passes a token no live key is likely to hold: should a rival
        // have created the key meanwhile, the write fails and the loop reads the key again.
        // (Only a key whose token is exactly u32::MAX — one write in 2^32 — could be
        // overwritten this way.)
        let cas = cas.unwrap_or(CREATE_CAS);
        raw::set_shared_data(key, value, cas)
            .map_err(|status| QuotaError::Store(format!("{status:?}")))
    }
}

const CREATE_CAS: u32 = u32::MAX;

#[derive(Clone, Copy)]
enum Phase {
    Headers,
    Body,
}

fn apply(decision: Decision, phase: Phase) -> Action {
    match decision {
        Decision::Continue => Action::Continue,
        // Replaced by the caller, which knows the body's size.
        Decision::ReplaceBody(_) => Action::Continue,
        // Pausing in the headers callback would stop the body from reaching the filter
        // (Envoy turns it into StopAllIteration); only a body callback may pause.
        Decision::WaitForBody => match phase {
            Phase::Headers => Action::Continue,
            Phase::Body => Action::Pause,
        },
        Decision::ReadBody(edits) | Decision::Forward(edits) => match apply_edits(&edits) {
            Ok(()) => Action::Continue,
            Err(status) => {
                log::error!("could not rewrite request headers: {status:?}");
                refuse(&Refusal::new(
                    ErrorCode::InternalError,
                    "the request could not be prepared for the provider",
                ))
            }
        },
        Decision::Refuse(refusal) => refuse(&refusal),
    }
}

fn apply_edits(edits: &HeaderEdits) -> Result<(), raw::HostStatus> {
    for name in &edits.remove {
        raw::remove_request_header(name)?;
    }
    for name in &edits.remove_owned {
        raw::remove_request_header(name)?;
    }
    for (name, value) in edits.sets() {
        raw::replace_request_header(name, value).inspect_err(|status| {
            log::error!("setting request header {name} failed: {status:?}");
        })?;
    }
    Ok(())
}

/// Sends the refusal as a local reply. The request is paused either way: it must never
/// continue to the provider, even if the reply cannot be sent.
fn refuse(refusal: &Refusal) -> Action {
    let body = refusal.body();
    if let Err(status) =
        raw::send_local_response(refusal.code.status(), &refusal.headers(), body.as_bytes())
    {
        log::error!(
            "could not send the {} reply: {status:?}",
            refusal.code.code()
        );
    }
    Action::Pause
}
