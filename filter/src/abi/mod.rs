//! The proxy-wasm ABI: the only module that talks to Envoy. Hands configuration to `Policy`
//! and each HTTP callback to `Session`, and implements `Host`/`HostOps` with hostcalls. The
//! SDK supplies the context plumbing; the host calls themselves go through `raw`, which
//! returns errors where the SDK panics. What a callback decides is in `session`, tested
//! natively; what stays here is plumbing.

mod raw;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::exchange::UsageStats;
use crate::host::{HeaderBlock, Host, HostOps, HostStatus};
use crate::quota::counter::{QuotaError, SharedStore};
use crate::quota::fleet::Allowances;
use crate::request::Worker;
use crate::session::{Session, Step};
use crate::stat;
use crate::sync::{Answer, Apply, Call, Channel, PluginConfig, SyncHost, UsageLedger, TICK_MS};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(TokenwardRoot {
            worker: Worker::unconfigured(),
            host: AbiHost::default(),
            usage_stats: Rc::default(),
            channel: None,
            closing: false,
            held: None,
        })
    });
}}

struct TokenwardRoot {
    worker: Rc<Worker>,
    host: AbiHost,
    usage_stats: Rc<RefCell<UsageStats>>,
    /// The sync channel, when the configuration names one.
    channel: Option<Channel>,
    /// `on_done` is waiting for the last report's answer.
    closing: bool,
    /// Pull mode, stale: the configuration refused while the control plane is away. Not in
    /// force, but its keys still vouch for the next configuration (a rotation during the
    /// outage must not need a new bootstrap).
    held: Option<Rc<Worker>>,
}

thread_local! {
    /// This VM's usage since its last flush: shared by the root contexts of successive
    /// configurations, so a configuration change loses nothing.
    static LEDGER: Rc<RefCell<UsageLedger>> = Rc::default();
}

fn ledger() -> Rc<RefCell<UsageLedger>> {
    LEDGER.with(Rc::clone)
}

thread_local! {
    /// This VM's fleet allowances (docs/quotas.md), shared by the root contexts of successive
    /// configurations like the ledger.
    static FLEET: Rc<RefCell<Allowances>> = Rc::default();
}

fn fleet() -> Rc<RefCell<Allowances>> {
    FLEET.with(Rc::clone)
}

fn now_ms() -> u64 {
    raw::now_nanoseconds().unwrap_or(0) / 1_000_000
}

fn vm_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Envoy's node id: names this Envoy in its reports. Not known during `on_configure`; read
/// on the first tick.
fn node_id() -> Option<String> {
    // `xds.node` in Envoy's attributes; `node` in older Envoys.
    let id = raw::property(&["xds", "node", "id"])
        .ok()
        .flatten()
        .or_else(|| raw::property(&["node", "id"]).ok().flatten())
        .and_then(|id| String::from_utf8(id).ok())
        .filter(|id| !id.is_empty());
    if id.is_none() {
        log::warn!("Envoy has no node id: reports name it \"unnamed\" (set node.id)");
    }
    id
}

/// The worker's Envoy counters: metric ids by name, defined on first use.
#[derive(Default)]
struct StatIds {
    ids: HashMap<String, u32>,
    forwarded: Option<u32>,
    /// Increments not written yet: the timer writes them (every `TICK_MS`), so a request
    /// costs no host call for its stats.
    pending: Vec<(u32, u64)>,
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
                        log::warn!("stat {name} could not be defined: {status}");
                        return;
                    }
                },
            }
        };
        match self.pending.iter_mut().find(|(pending, _)| *pending == id) {
            Some((_, sum)) => *sum = sum.saturating_add(by),
            None => self.pending.push((id, by)),
        }
    }

    /// Writes the increments counted since the last flush.
    fn flush(&mut self) {
        for (id, by) in self.pending.drain(..) {
            // A lost increment is no reason to fail anything.
            let _ = raw::increment_counter(id, by);
        }
    }
}

impl Context for TokenwardRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let headers = if num_headers > 0 {
            raw::call_response_headers().unwrap_or_default()
        } else {
            HeaderBlock::default()
        };
        let status = headers
            .iter()
            .find(|(name, _)| *name == ":status")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok());
        let body = if body_size > 0 {
            raw::call_response_body(body_size).unwrap_or_default()
        } else {
            Vec::new()
        };
        let Some(channel) = &mut self.channel else {
            return;
        };
        let answer = Answer {
            status,
            headers,
            body,
        };
        let started = raw::now_nanoseconds().unwrap_or(0);
        let current = self.held.as_ref().unwrap_or(&self.worker).policy();
        let fleet = fleet();
        let apply = channel.on_answer(
            &self.host,
            token_id,
            answer,
            now_ms(),
            &mut fleet.borrow_mut(),
            current,
        );
        self.apply_timed(apply, started, "verified, compiled and shared");
        if self.closing && !channel_busy(self.channel.as_ref()) {
            let _ = raw::done();
        }
    }

    fn on_done(&mut self) -> bool {
        self.host.stats.borrow_mut().flush();
        let Some(channel) = &mut self.channel else {
            return true;
        };
        let ledger = ledger();
        let current = self.held.as_ref().unwrap_or(&self.worker).policy();
        let fleet = fleet();
        let waiting = channel.on_done(
            &self.host,
            now_ms(),
            &mut ledger.borrow_mut(),
            &mut fleet.borrow_mut(),
            current,
        );
        // Envoy waits for the last report's answer before it lets the context go.
        self.closing = waiting;
        !waiting
    }
}

fn channel_busy(channel: Option<&Channel>) -> bool {
    channel.is_some_and(Channel::busy)
}

impl RootContext for TokenwardRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = match raw::plugin_configuration() {
            Ok(config) => config,
            Err(status) => {
                log::error!("configuration could not be read: {status}");
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
        let loaded = match PluginConfig::load(&config, &vm_env) {
            Ok(loaded) => loaded,
            Err(reason) => {
                // Returning false keeps the last good configuration in force (xDS NACK).
                log::error!("configuration refused: {reason}");
                return false;
            }
        };
        match loaded {
            PluginConfig::Full(policy) => {
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
                self.channel = policy
                    .sync
                    .clone()
                    .map(|settings| Channel::new(settings, false, String::new(), Box::new(vm_env)));
                self.install(*policy);
            }
            PluginConfig::Bootstrap(settings) => {
                log::info!(
                    "bootstrap: the configuration comes from the control plane on cluster {}",
                    crate::quoted::Quoted(&settings.cluster)
                );
                let mut channel =
                    Channel::new(Arc::new(settings), true, String::new(), Box::new(vm_env));
                // What another root context of this Envoy already pulled is in force at once.
                self.worker = Worker::unconfigured();
                let apply = channel.adopt(&self.host, now_ms());
                self.channel = Some(channel);
                self.apply(apply);
            }
        }
        // The timer writes the stats the requests counted, and tells each worker of blocks
        // the others started (the guard).
        if let Err(status) = raw::set_tick_period(u32::try_from(TICK_MS).unwrap_or(u32::MAX)) {
            log::error!("the timer (stats, sync channel, guard) could not be set: {status}");
        }
        true
    }

    fn on_tick(&mut self) {
        self.host.stats.borrow_mut().flush();
        self.worker.refresh_blocks(&self.host);
        let Some(channel) = &mut self.channel else {
            return;
        };
        channel.name_node(node_id);
        let ledger = ledger();
        let started = raw::now_nanoseconds().unwrap_or(0);
        let current = self.held.as_ref().unwrap_or(&self.worker).policy();
        let fleet = fleet();
        let apply = channel.on_tick(
            &self.host,
            now_ms(),
            &mut ledger.borrow_mut(),
            &mut fleet.borrow_mut(),
            current,
        );
        self.apply_timed(apply, started, "copied from shared data and compiled");
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Usage is recorded only where a channel reports it.
        let ledger = self.channel.as_ref().map(|_| ledger());
        Some(Box::new(TokenwardHttp {
            session: Session::new(
                Rc::clone(&self.worker),
                Rc::clone(&self.usage_stats),
                ledger,
            ),
            host: self.host.clone(),
        }))
    }
}

impl TokenwardRoot {
    /// Puts a configuration in force in this worker.
    fn install(&mut self, policy: crate::policy::Policy) {
        // Keys and revocations are in force whatever else could not be loaded; what could
        // not is refused on its own, and shown in the log and the gauges.
        for part in policy.unavailable() {
            log::error!(
                "configuration {}: {} {} is unavailable: {}",
                policy.version.as_deref().unwrap_or("(unversioned)"),
                part.kind.label(),
                crate::quoted::Quoted(&part.name),
                part.reason
            );
        }
        report_unavailable(policy.unavailable());
        // With a channel, the plans' limits hold across the fleet.
        let fleet = self.channel.as_ref().map(|channel| {
            let fleet = fleet();
            fleet.borrow_mut().set_contact_ttl(channel.contact_ttl_ms());
            fleet
        });
        // A new worker state: the cache of the old keys goes with the old config.
        self.worker = Worker::configured_in(policy, fleet);
        self.worker.refresh_blocks(&self.host);
    }

    /// As `apply`; a pulled configuration put in force logs what it cost this worker.
    fn apply_timed(&mut self, apply: Apply, started: u64, how: &str) {
        if let Apply::Install(policy) = &apply {
            let micros = raw::now_nanoseconds().unwrap_or(0).saturating_sub(started) / 1000;
            log::info!(
                "pulled configuration {} {how} in {}.{:03} ms",
                policy.version.as_deref().unwrap_or("(unversioned)"),
                micros / 1000,
                micros % 1000
            );
        }
        self.apply(apply);
    }

    fn apply(&mut self, apply: Apply) {
        match apply {
            Apply::Keep => {}
            Apply::Install(policy) => {
                self.held = None;
                self.install(*policy);
            }
            // Fail closed: every request gets 503 until the control plane answers again.
            Apply::Stale => {
                let last = std::mem::replace(&mut self.worker, Worker::unconfigured());
                if last.policy().is_some() {
                    self.held = Some(last);
                }
            }
        }
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

    fn source_address(&self) -> Option<String> {
        raw::property(&["source", "address"])
            .ok()
            .flatten()
            .and_then(|bytes| String::from_utf8(bytes).ok())
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

/// The sync channel's calls go through proxy-wasm's `dispatch_http_call` (the SDK's, which
/// routes the answer back to this root context).
impl SyncHost for AbiHost {
    fn store(&self) -> &dyn SharedStore {
        self
    }

    fn dispatch(&self, call: &Call) -> Result<u32, HostStatus> {
        let headers: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        proxy_wasm::hostcalls::dispatch_http_call(
            &call.cluster,
            headers,
            call.body.as_deref(),
            Vec::new(),
            std::time::Duration::from_millis(call.timeout_ms),
        )
        .map_err(|status| HostStatus(status as u32))
    }

    fn count(&self, stat: &str, by: u64) {
        self.stats.borrow_mut().add(stat, by);
    }

    fn gauge(&self, stat: &str, value: u64) {
        let _ = raw::set_gauge(stat, value);
    }
}

/// Envoy's shared data (per `vm_id`, shared by every worker) as the quota counters' store.
impl SharedStore for AbiHost {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, QuotaError> {
        raw::shared_data(key).map_err(|status| QuotaError::Store(format!("{status}")))
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
            .map_err(|status| QuotaError::Store(format!("{status}")))
    }
}

const CREATE_CAS: u32 = u32::MAX;

/// Envoy's `verify_signature` foreign function (BoringSSL): whether `signature` (DER for
/// ECDSA) by the key `spki` (a DER SubjectPublicKeyInfo) signs `text` hashed with `hash`.
/// `None` when the host cannot say: no such function, or arguments it refuses (a key that is
/// not a point of the curve). The caller refuses the token then.
pub fn verify_signature(hash: &str, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
    // VerifySignatureArguments (protobuf): hash_function = 1, public_key = 2, signature = 3,
    // text = 4.
    let mut arguments =
        Vec::with_capacity(16 + hash.len() + spki.len() + signature.len() + text.len());
    for (tag, field) in [
        (0x0a, hash.as_bytes()),
        (0x12, spki),
        (0x1a, signature),
        (0x22, text),
    ] {
        arguments.push(tag);
        let mut len = field.len();
        while len >= 0x80 {
            arguments.push((len as u8) | 0x80);
            len >>= 7;
        }
        arguments.push(len as u8);
        arguments.extend_from_slice(field);
    }
    let result = raw::call_foreign_function("verify_signature", &arguments).ok()?;
    // VerifySignatureResult: result = 1 (bool); error = 2 (string) is not read. proto3 leaves
    // a false `result` out, so no field 1 means false.
    Some(result.get(..2) == Some(&[0x08, 0x01]))
}
