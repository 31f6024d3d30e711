//! The proxy-wasm ABI: the only module that talks to Envoy. Hands configuration to `Policy`
//! and each HTTP callback to `Session`, and implements `Host`/`HostOps` with hostcalls. The
//! SDK supplies the context plumbing; the host calls themselves go through `raw`, which
//! returns errors where the SDK panics. What a callback decides is in `session`, tested
//! natively; what stays here is plumbing.

mod raw;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::exchange::UsageStats;
use crate::host::{HeaderBlock, Host, HostOps, HostStatus};
use crate::policy::Policy;
use crate::quota::counter::{QuotaError, SharedStore};
use crate::request::Worker;
use crate::session::{Session, Step};
use crate::stat;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(TokenwardRoot {
            worker: Worker::unconfigured(),
            host: AbiHost::default(),
            usage_stats: Rc::default(),
        })
    });
}}

struct TokenwardRoot {
    worker: Rc<Worker>,
    host: AbiHost,
    usage_stats: Rc<RefCell<UsageStats>>,
}

/// The worker's Envoy counters: metric ids by name, defined on first use.
#[derive(Default)]
struct StatIds {
    ids: HashMap<String, u32>,
    forwarded: Option<u32>,
}

impl StatIds {
    fn add(&mut self, name: &str, by: u64) {
        // The per-request counter, its id kept at hand: it is on the hot path.
        let id = if name == stat::FORWARDED {
            match self.forwarded {
                Some(id) => id,
                None => match raw::define_counter(name) {
                    Ok(id) => *self.forwarded.insert(id),
                    Err(_) => return,
                },
            }
        } else {
            match self.ids.get(name) {
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
            }
        };
        // A lost increment is no reason to fail a request.
        let _ = raw::increment_counter(id, by);
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
            session: Session::new(Rc::clone(&self.worker), Rc::clone(&self.usage_stats)),
            host: self.host.clone(),
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
        stat::CONFIG_UNAVAILABLE_PARTS,
        u64::try_from(parts.len()).unwrap_or(u64::MAX),
    );
}

struct TokenwardHttp {
    session: Session,
    host: AbiHost,
}

impl Context for TokenwardHttp {}

impl HttpContext for TokenwardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.session.on_request_headers(&self.host, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.session
                .on_request_body(&self.host, body_size, end_of_stream),
        )
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.session.on_request_trailers(&self.host))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.session.on_response_headers(&self.host))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.session
                .on_response_body(&self.host, body_size, end_of_stream),
        )
    }

    fn on_log(&mut self) {
        self.session.on_log(&self.host);
    }
}

fn action(step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Pause => Action::Pause,
    }
}

/// The real host, through proxy-wasm hostcalls; the worker's counter ids shared by its
/// requests.
#[derive(Clone, Default)]
struct AbiHost {
    stats: Rc<RefCell<StatIds>>,
}

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

impl HostOps for AbiHost {
    fn remove_request_header(&self, name: &str) -> Result<(), HostStatus> {
        raw::remove_request_header(name)
    }

    fn replace_request_header(&self, name: &str, value: &[u8]) -> Result<(), HostStatus> {
        raw::replace_request_header(name, value)
    }

    fn replace_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostStatus> {
        raw::replace_request_body(size, body)
    }

    fn send_local_response(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), HostStatus> {
        raw::send_local_response(status, headers, body)
    }

    fn replace_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostStatus> {
        raw::replace_response_body(size, body)
    }

    fn response_headers(&self) -> Result<HeaderBlock, HostStatus> {
        raw::response_headers()
    }

    fn set_response_headers(&self, headers: &HeaderBlock) -> Result<(), HostStatus> {
        raw::set_response_headers(headers)
    }

    fn replace_response_header(&self, name: &str, value: &[u8]) -> Result<(), HostStatus> {
        raw::replace_response_header(name, value)
    }

    fn remove_response_header(&self, name: &str) -> Result<(), HostStatus> {
        raw::remove_response_header(name)
    }

    fn count(&self, stat: &str, by: u64) {
        self.stats.borrow_mut().add(stat, by);
    }

    fn set_property(&self, name: &str, value: &[u8]) {
        let _ = raw::set_property(name, value);
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
