//! The proxy-wasm ABI: the only module that talks to Envoy. Reads the host for the core
//! (`AbiHost`), hands configuration to `Policy`, and turns the core's `Decision`s into
//! header edits, local replies and `Action`s. The SDK supplies the context plumbing; the
//! host calls themselves go through `raw`, which returns errors where the SDK panics.

mod raw;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::decision::{Decision, HeaderEdits};
use crate::error::{ErrorCode, Refusal};
use crate::host::{HeaderBlock, Host};
use crate::policy::Policy;
use crate::request::{RequestFlow, Worker};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(TokenwardRoot { worker: Worker::unconfigured() })
    });
}}

struct TokenwardRoot {
    worker: Rc<Worker>,
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
        match Policy::from_json(&config, &|name| std::env::var(name).ok()) {
            Ok(policy) => {
                log::info!(
                    "configuration {} applied",
                    policy.version.as_deref().unwrap_or("(unversioned)")
                );
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
            body_size: 0,
        }))
    }
}

struct TokenwardHttp {
    flow: RequestFlow,
    body_size: usize,
}

impl Context for TokenwardHttp {}

impl HttpContext for TokenwardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let decision = self.flow.on_request_headers(&AbiHost, end_of_stream);
        apply(decision, Phase::Headers)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_size = body_size;
        let decision = self
            .flow
            .on_request_body(&AbiHost, body_size, end_of_stream);
        apply(decision, Phase::Body)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the request body.
        let decision = self.flow.on_request_body(&AbiHost, self.body_size, true);
        apply(decision, Phase::Body)
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

    fn now_unix_seconds(&self) -> Option<u64> {
        raw::now_nanoseconds().ok().map(|ns| ns / 1_000_000_000)
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Headers,
    Body,
}

fn apply(decision: Decision, phase: Phase) -> Action {
    match decision {
        Decision::Continue => Action::Continue,
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
