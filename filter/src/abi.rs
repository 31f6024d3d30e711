//! The proxy-wasm ABI: the only module that talks to Envoy. Reads the host for the core
//! (`AbiHost`), hands configuration to `Policy`, and turns the core's `Decision`s into
//! header edits, local replies and `Action`s. Uses the `hostcalls` functions, which return
//! errors, instead of the SDK's trait helpers, which panic on them.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::decision::{Decision, HeaderEdits};
use crate::error::{ErrorCode, Refusal};
use crate::host::Host;
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
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        if config.iter().all(u8::is_ascii_whitespace) {
            // No configuration is a valid state, not an error: ECDS's fail-closed default
            // and a fresh install start here. Every request gets 503 until a config arrives.
            log::warn!("tokenward: no configuration; every request is refused with 503 not_configured");
            self.worker = Worker::unconfigured();
            return true;
        }
        match Policy::from_json(&config, &|name| std::env::var(name).ok()) {
            Ok(policy) => {
                log::info!(
                    "tokenward: configuration {} applied",
                    policy.version.as_deref().unwrap_or("(unversioned)")
                );
                // A new worker state: the cache of the old keys goes with the old config.
                self.worker = Worker::configured(policy);
                true
            }
            Err(reason) => {
                // Returning false keeps the last good configuration in force (xDS NACK).
                log::error!("tokenward: configuration refused: {reason}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TokenwardHttp { flow: RequestFlow::new(Rc::clone(&self.worker)), body_size: 0 }))
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
        apply(decision)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_size = body_size;
        let decision = self.flow.on_request_body(&AbiHost, body_size, end_of_stream);
        apply(decision)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the request body.
        let decision = self.flow.on_request_body(&AbiHost, self.body_size, true);
        apply(decision)
    }
}

/// The real host, through proxy-wasm hostcalls.
struct AbiHost;

impl Host for AbiHost {
    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten().or_else(|| {
            // An empty body is reported as no buffer.
            (size == 0).then(Vec::new)
        })
    }

    fn now_unix_seconds(&self) -> Option<u64> {
        let now = hostcalls::get_current_time().ok()?;
        now.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
    }
}

fn apply(decision: Decision) -> Action {
    match decision {
        Decision::Continue => Action::Continue,
        Decision::WaitForBody => Action::Pause,
        Decision::Forward(edits) => match apply_edits(&edits) {
            Ok(()) => Action::Continue,
            Err(status) => {
                log::error!("tokenward: could not rewrite request headers: {status:?}");
                refuse(&Refusal::new(ErrorCode::InternalError, "the request could not be prepared for the provider"))
            }
        },
        Decision::Refuse(refusal) => refuse(&refusal),
    }
}

fn apply_edits(edits: &HeaderEdits) -> Result<(), proxy_wasm::types::Status> {
    for name in &edits.remove {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name)?;
    }
    for name in &edits.remove_owned {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name)?;
    }
    for (name, value) in &edits.set {
        hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value))?;
    }
    Ok(())
}

/// Sends the refusal as a local reply. The request is paused either way: it must never
/// continue to the provider, even if the reply cannot be sent.
fn refuse(refusal: &Refusal) -> Action {
    let headers = refusal.headers();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let body = refusal.body();
    if let Err(status) = hostcalls::send_http_response(u32::from(refusal.code.status()), headers, Some(body.as_bytes())) {
        log::error!("tokenward: could not send the {} reply: {status:?}", refusal.code.code());
    }
    Action::Pause
}
