//! One HTTP request's proxy-wasm callbacks, as host operations: what `abi` runs for each
//! callback, written against `HostOps` so every decision the glue makes is tested natively —
//! the header and body rewrites, the local reply of a refusal (the request stays paused
//! even if the reply cannot be sent), abandoning a request whose rewrite the host refused
//! (its quota given back), replacing the provider's rate-limit headers with the client's,
//! and the stats and access-log properties of each exchange.

use std::cell::RefCell;
use std::rc::Rc;

use crate::decision::{Decision, HeaderEdits};
use crate::error::{ErrorCode, ErrorStyle, Refusal};
use crate::exchange::{UsageReport, UsageStats};
use crate::host::{HeaderBlock, Host, HostOps, HostStatus};
use crate::request::{RequestFlow, Worker};
use crate::stat;
use crate::sync::{UsageCounts, UsageLedger};

/// What the host does next with the stream: go on, or hold it (for more body, or for good
/// after a local reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    Pause,
}

/// One HTTP request, from its headers to its access log.
pub struct Session {
    flow: RequestFlow,
    /// The worker's bounded naming of usage stats, shared by its requests.
    usage_stats: Rc<RefCell<UsageStats>>,
    /// The worker's usage since its last flush to the sync channel; `None` when nothing is
    /// reported.
    ledger: Option<Rc<RefCell<UsageLedger>>>,
    /// The usage the response reported, until the request is over.
    used: UsageCounts,
    body_size: usize,
    refused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callback {
    Headers,
    Body,
}

impl Session {
    pub fn new(
        worker: Rc<Worker>,
        usage_stats: Rc<RefCell<UsageStats>>,
        ledger: Option<Rc<RefCell<UsageLedger>>>,
    ) -> Self {
        Session {
            flow: RequestFlow::new(worker),
            usage_stats,
            ledger,
            used: UsageCounts::default(),
            body_size: 0,
            refused: false,
        }
    }

    pub fn on_request_headers(&mut self, host: &impl HostOps, end_of_stream: bool) -> Step {
        let decision = self.flow.on_request_headers(host, end_of_stream);
        self.apply(host, decision, Callback::Headers)
    }

    pub fn on_request_body(
        &mut self,
        host: &impl HostOps,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        self.body_size = body_size;
        let decision = self.flow.on_request_body(host, body_size, end_of_stream);
        self.apply(host, decision, Callback::Body)
    }

    /// Trailers end the request body.
    pub fn on_request_trailers(&mut self, host: &impl HostOps) -> Step {
        let decision = self.flow.on_request_body(host, self.body_size, true);
        self.apply(host, decision, Callback::Body)
    }

    pub fn on_response_headers(&mut self, host: &impl HostOps) -> Step {
        let (reads, adds) = self.flow.response_header_needs();
        if self.refused || !(reads || adds) {
            return Step::Continue;
        }
        // Host calls that return data cost the most (the host calls back into the VM to
        // allocate): read every response header at most once, and only when needed.
        let read = if reads {
            host.response_headers()
                .inspect_err(|status| {
                    log::warn!("could not read the response headers: {status}");
                })
                .ok()
        } else {
            None
        };
        let was_read = read.is_some();
        let view = ResponseView {
            host,
            headers: read.unwrap_or_default(),
        };
        let added = self.flow.on_response_headers(&view);
        // A body the filter rewrites has another length than the provider said.
        let drop_length = self.flow.rewrites_response_body();
        // An answer of a plan that sends no headers of its own this time (`near_limit`, far
        // from the limits) still loses the provider's, where they were read anyway.
        let strip = was_read
            && self.flow.hides_provider_rate_limits()
            && view.headers.iter().any(|(name, _)| is_rate_limit_header(name));
        if added.is_empty() && !drop_length && !strip {
            return Step::Continue;
        }
        // Ours replace the provider's own rate-limit headers (those describe the provider key
        // the gateway shares, not the client's plan). Informational: a failure to write them
        // fails nothing.
        let written = if was_read {
            let pairs: Vec<(&str, &[u8])> = view
                .headers
                .iter()
                .filter(|(name, _)| {
                    !(is_rate_limit_header(name) || drop_length && *name == "content-length")
                })
                .chain(added.iter().map(|(n, v)| (*n, v.as_bytes())))
                .collect();
            host.set_response_headers(&HeaderBlock::from_pairs(pairs.iter().copied()))
        } else {
            // Not read (or unreadable): set ours one by one, replacing same-named ones.
            added
                .iter()
                .try_for_each(|(n, v)| host.replace_response_header(n, v.as_bytes()))
                .and_then(|()| {
                    if drop_length {
                        host.remove_response_header("content-length")
                    } else {
                        Ok(())
                    }
                })
        };
        if let Err(status) = written {
            log::warn!("could not add the rate-limit headers: {status}");
        }
        Step::Continue
    }

    pub fn on_response_body(
        &mut self,
        host: &impl HostOps,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        if !self.refused {
            let report = self.flow.on_response_body(host, body_size, end_of_stream);
            if let Some(body) = self.flow.take_body_replacement() {
                // Should the host refuse, the client gets the chunk as the provider sent it.
                if let Err(status) = host.replace_response_body(body_size, &body) {
                    log::warn!("could not rewrite a response chunk: {status}");
                }
            }
            if let Some(report) = report {
                self.record_usage(host, &report);
            }
            self.count_events(host);
        }
        Step::Continue
    }

    pub fn on_log(&mut self, host: &impl HostOps) {
        if self.refused || self.flow.subject().is_none() {
            return;
        }
        host.count(stat::FORWARDED, 1);
        if let Some(report) = self.flow.on_done(host) {
            self.record_usage(host, &report);
        }
        self.count_events(host);
        // In memory only: the sync channel's timer takes it from here. The key (copies of the
        // names) is made only when there is a ledger to record in.
        let Some(ledger) = &self.ledger else {
            return;
        };
        if let Some(key) = self.flow.usage_key() {
            ledger.borrow_mut().record(
                key,
                UsageCounts {
                    requests: 1,
                    ..self.used
                },
            );
        }
    }

    fn count_events(&mut self, host: &impl HostOps) {
        for event in self.flow.take_events() {
            host.count(&event, 1);
        }
    }

    fn record_usage(&mut self, host: &impl HostOps, report: &UsageReport) {
        if let Some(usage) = report.usage {
            self.used = UsageCounts {
                requests: 0,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cached_input_tokens: usage.cached_input_tokens,
                cost_micro_usd: report.cost_micro_usd.unwrap_or(0),
            };
        }
        for (name, amount) in self.usage_stats.borrow_mut().counters(report) {
            host.count(&name, amount);
        }
        // For the access log (%FILTER_STATE(wasm.tokenward_…:PLAIN)%). Only for metered
        // exchanges: a property write per request would cost the hot path ~10%.
        host.set_property("tokenward_subject", report.subject.as_bytes());
        if let Some(model) = &report.model {
            host.set_property("tokenward_model", model.as_bytes());
        }
        if let Some(cost) = report.cost_micro_usd {
            host.set_property("tokenward_cost_micro_usd", cost.to_string().as_bytes());
        }
        if let Some(usage) = report.usage {
            host.set_property(
                "tokenward_input_tokens",
                usage.input_tokens.to_string().as_bytes(),
            );
            host.set_property(
                "tokenward_output_tokens",
                usage.output_tokens.to_string().as_bytes(),
            );
        }
    }

    fn apply(&mut self, host: &impl HostOps, decision: Decision, callback: Callback) -> Step {
        self.count_events(host);
        let decision = match decision {
            Decision::ReplaceBody(body) => match host.replace_request_body(self.body_size, &body) {
                Ok(()) => Decision::Continue,
                Err(status) => {
                    log::error!("could not rewrite the request body: {status}");
                    self.flow.abandon(host);
                    self.count_events(host);
                    Decision::Refuse(not_prepared(self.flow.error_style()))
                }
            },
            other => other,
        };
        if let Decision::Refuse(refusal) = &decision {
            self.refused = true;
            host.count(&stat::refused(refusal.code.code()), 1);
            // The access log names who was refused, and for which model, once known.
            let (subject, model) = self.flow.refused_for();
            if let Some(subject) = subject {
                host.set_property("tokenward_subject", subject.as_bytes());
            }
            if let Some(model) = model {
                host.set_property("tokenward_model", model.as_bytes());
            }
        }
        let step = perform(host, decision, callback, self.flow.error_style());
        if step == Step::Pause && callback == Callback::Headers && !self.refused {
            // A refusal from a failed header rewrite: whatever the request holds goes back.
            self.refused = true;
            self.flow.abandon(host);
            self.count_events(host);
        }
        step
    }
}

fn perform(host: &impl HostOps, decision: Decision, callback: Callback, style: ErrorStyle) -> Step {
    match decision {
        Decision::Continue => Step::Continue,
        // Replaced by the caller, which knows the body's size.
        Decision::ReplaceBody(_) => Step::Continue,
        // Pausing in the headers callback would stop the body from reaching the filter
        // (Envoy turns it into StopAllIteration); only a body callback may pause.
        Decision::WaitForBody => match callback {
            Callback::Headers => Step::Continue,
            Callback::Body => Step::Pause,
        },
        Decision::ReadBody(edits) | Decision::Forward(edits) => match apply_edits(host, &edits) {
            Ok(()) => Step::Continue,
            Err(status) => {
                log::error!("could not rewrite request headers: {status}");
                refuse(host, &not_prepared(style))
            }
        },
        Decision::Refuse(refusal) => refuse(host, &refusal),
    }
}

fn apply_edits(host: &impl HostOps, edits: &HeaderEdits) -> Result<(), HostStatus> {
    for name in &edits.remove {
        host.remove_request_header(name)?;
    }
    for name in &edits.remove_owned {
        host.remove_request_header(name)?;
    }
    for (name, value) in edits.sets() {
        host.replace_request_header(name, value)
            .inspect_err(|status| {
                log::error!("setting request header {name} failed: {status}");
            })?;
    }
    Ok(())
}

/// Sends the refusal as a local reply. The request is paused either way: it must never go on
/// to the provider, even if the reply cannot be sent.
fn refuse(host: &impl HostOps, refusal: &Refusal) -> Step {
    let body = refusal.body();
    if let Err(status) =
        host.send_local_response(refusal.code.status(), &refusal.headers(), body.as_bytes())
    {
        log::error!(
            "could not send the {} reply: {status}",
            refusal.code.code()
        );
    }
    Step::Pause
}

/// The filter's own 500, in the error shape of the route's provider like every refusal.
fn not_prepared(style: ErrorStyle) -> Refusal {
    Refusal::new(
        ErrorCode::InternalError,
        "the request could not be prepared for the provider",
    )
    .in_style(style)
}

fn is_rate_limit_header(name: &str) -> bool {
    name.starts_with("x-ratelimit-") || name == "ratelimit" || name == "ratelimit-policy"
}

/// The host during the response headers callback, with those headers read once.
struct ResponseView<'h, H> {
    host: &'h H,
    headers: HeaderBlock,
}

impl<H: Host> Host for ResponseView<'_, H> {
    fn request_headers(&self) -> HeaderBlock {
        self.host.request_headers()
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.host.request_body(size)
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_vec())
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        self.host.response_body(size)
    }

    fn now_unix_seconds(&self) -> Option<u64> {
        self.host.now_unix_seconds()
    }

    fn store(&self) -> &dyn crate::quota::counter::SharedStore {
        self.host.store()
    }

    fn source_address(&self) -> Option<String> {
        self.host.source_address()
    }
}

#[cfg(test)]
mod tests;
