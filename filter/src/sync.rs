//! The sync channel to the control plane (docs/sync.md): usage reports up, and in pull mode
//! the configuration down. One worker per Envoy drives it, under a lease in shared data
//! (CAS); every worker flushes its usage into a shared outbox and, in pull mode, applies the
//! configuration the driving worker verified and left in shared data (one copy per worker
//! per change). Runs on the timer and on call answers only: the request path records usage
//! in memory and makes no host call for it. Written against `SyncHost`; `abi` supplies it.

pub mod ledger;
mod pulled;
mod report;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::auth::jws::CustomClaims;
use crate::auth::keys::VerificationKey;
use crate::config::read::{self, Fields, Node, Read};
use crate::config::{Bootstrap, CredentialSource, SyncConfig};
use crate::document::{self, Document};
use crate::host::{HeaderBlock, HostStatus};
use crate::invalid::InvalidConfig;
use crate::json::write::{object, ToJson};
use crate::policy::Policy;
use crate::quota::counter::{SharedStore, MAX_CAS_ATTEMPTS};
use crate::quota::fleet::Allowances;
use crate::quoted::Quoted;

pub use crate::guard::{BlockEvent, SourceKind};
pub use crate::quota::fleet::{key_parts, CounterState, FleetAnswer, FleetGrant, KeyParts};
pub use ledger::{UsageCounts, UsageEntry, UsageKey, UsageLedger};

/// Where the control plane serves the channel.
pub const CONFIG_PATH: &str = "/sync/v1/config";
pub const REPORT_PATH: &str = "/sync/v1/usage";
/// The scope of a proxy credential: the channel, nothing else.
pub const SCOPE_SYNC: &str = "tokenward:sync";
/// The audience of the control plane's signature on a pulled configuration.
pub const SIGNATURE_AUDIENCE: &str = "tokenward-sync";
/// Answer headers of a pulled configuration.
pub const REVISION_HEADER: &str = "x-tokenward-revision";
pub const SIGNATURE_HEADER: &str = "x-tokenward-signature";
/// The Envoy the call comes from (its node id), for the control plane's fleet view.
pub const NODE_HEADER: &str = "x-tokenward-node";

/// How long the control plane holds a configuration poll open when nothing changed.
pub const POLL_WAIT_SECONDS: u64 = 20;
/// How often the timer fires in each worker: the delay before a worker applies what the
/// driving worker fetched.
pub const TICK_MS: u64 = 100;
/// The driving worker must renew its lease within this: a worker that went away hands over
/// after it.
pub const LEASE_MS: u64 = 1_000;
/// A report is sent at least this often, empty or not: the control plane's "last seen".
pub const HEARTBEAT_MS: u64 = 10_000;
/// After a failed poll, the next one waits this long: a control plane that comes back is
/// heard from within it (a refused connection costs the host next to nothing).
pub const RETRY_MS: u64 = 250;

/// Shared-data keys (per Envoy, shared by every worker).
const LEASE: &str = "tokenward.sync.lease";
const WORKERS: &str = "tokenward.sync.workers";

/// The channel's settings, compiled from `SyncConfig`.
pub struct SyncSettings {
    pub cluster: String,
    pub authority: String,
    credential: String,
    pub report_interval_ms: u64,
    /// 0: never stale.
    pub max_staleness_ms: u64,
    /// Keys that may sign a pulled configuration, besides those of the one in force.
    trust_anchor: Vec<(Option<String>, VerificationKey)>,
}

impl std::fmt::Debug for SyncSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credential.
        f.debug_struct("SyncSettings")
            .field("cluster", &self.cluster)
            .field("authority", &self.authority)
            .field("report_interval_ms", &self.report_interval_ms)
            .field("max_staleness_ms", &self.max_staleness_ms)
            .finish_non_exhaustive()
    }
}

impl SyncSettings {
    pub fn compile(
        config: &SyncConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SyncSettings, InvalidConfig> {
        let bad = |problem: &str| InvalidConfig::Sync(problem.to_string());
        if config.cluster.is_empty() {
            return Err(bad("cluster must not be empty"));
        }
        let credential = match &config.credential {
            CredentialSource::Inline(value) => value.clone(),
            CredentialSource::Env(var) if var.is_empty() => {
                return Err(bad("the credential's environment variable has no name"))
            }
            CredentialSource::Env(var) => env(var).ok_or_else(|| {
                InvalidConfig::Sync(format!(
                    "environment variable {} is not set in the Wasm VM",
                    Quoted(var)
                ))
            })?,
        };
        let credential = credential.trim().to_string();
        if credential.is_empty() || !credential.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("the credential is empty or not a valid header value"));
        }
        if !(100..=3_600_000).contains(&config.report_interval_ms) {
            return Err(bad("report_interval_ms must be between 100 and 3600000"));
        }
        let mut trust_anchor = Vec::new();
        for jwk in &config.trust_anchor.keys {
            let key = VerificationKey::from_jwk(jwk)
                .map_err(|e| InvalidConfig::Sync(format!("trust_anchor: {e}")))?;
            trust_anchor.push((jwk.kid.clone(), key));
        }
        Ok(SyncSettings {
            cluster: config.cluster.clone(),
            authority: config
                .authority
                .clone()
                .unwrap_or_else(|| config.cluster.clone()),
            credential,
            report_interval_ms: config.report_interval_ms,
            max_staleness_ms: config.max_staleness_seconds.saturating_mul(1000),
            trust_anchor,
        })
    }

    fn headers(&self, method: &str, path: &str, node: &str) -> Vec<(String, String)> {
        vec![
            (":method".into(), method.into()),
            (":path".into(), path.into()),
            (":authority".into(), self.authority.clone()),
            (
                "authorization".into(),
                format!("Bearer {}", self.credential),
            ),
            (NODE_HEADER.into(), node.into()),
        ]
    }
}

/// Reads the Wasm VM's environment (provider keys, the proxy credential by variable).
pub type VmEnv = Box<dyn Fn(&str) -> Option<String>>;

/// What the plugin configuration holds: the whole configuration (static or pushed mode), or
/// only the channel (pull mode).
pub enum PluginConfig {
    Full(Box<Policy>),
    Bootstrap(SyncSettings),
}

impl PluginConfig {
    pub fn load(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PluginConfig, InvalidConfig> {
        let value = document::parse(bytes).map_err(|e| InvalidConfig::Syntax(e.0))?;
        // A bootstrap fails on the first key that is not `sync`: trying it first costs
        // nothing for a full configuration.
        match Bootstrap::read(&value) {
            Ok(bootstrap) => Ok(PluginConfig::Bootstrap(SyncSettings::compile(
                &bootstrap.sync,
                env,
            )?)),
            Err(_) => {
                let document =
                    Document::from_node(&value).map_err(|e| InvalidConfig::Syntax(e.0))?;
                Policy::compile_document(document, env).map(|p| PluginConfig::Full(Box::new(p)))
            }
        }
    }
}

/// A call the channel asks the host to make on the control plane's cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

/// The answer to a call: `status` is `None` when none came (the cluster is down, a reset,
/// a timeout).
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: Option<u16>,
    pub headers: HeaderBlock,
    pub body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// The host as the channel sees it.
pub trait SyncHost {
    fn store(&self) -> &dyn SharedStore;
    /// Sends a call; its token identifies the answer.
    fn dispatch(&self, call: &Call) -> Result<u32, HostStatus>;
    fn count(&self, stat: &str, by: u64);
    fn gauge(&self, stat: &str, value: u64);
}

/// What a worker must do with its configuration after a tick or an answer (pull mode).
pub enum Apply {
    /// Keep what is in force.
    Keep,
    /// Put this configuration in force.
    Install(Box<Policy>),
    /// The last configuration is older than the maximum staleness: refuse every request.
    Stale,
}

/// Stats of the channel.
pub mod stat {
    /// Calls to the control plane that got no answer or an error.
    pub const CALL_ERRORS: &str = "tokenward.sync.call_errors";
    /// Reports the control plane took.
    pub const REPORTS_SENT: &str = "tokenward.sync.reports_sent";
    /// Reports the control plane refused as malformed (dropped).
    pub const REPORTS_DROPPED: &str = "tokenward.sync.reports_dropped";
    /// Pulled configurations applied, and refused (bad signature or content).
    pub const CONFIGS_APPLIED: &str = "tokenward.sync.configs_applied";
    pub const CONFIGS_REFUSED: &str = "tokenward.sync.configs_refused";
    /// Gauge: seconds since the control plane last answered (pull mode).
    pub const SECONDS_SINCE_CONTACT: &str = "tokenward.sync.seconds_since_contact";
    /// Gauge: 1 while the configuration is older than the maximum staleness.
    pub const STALE: &str = "tokenward.sync.stale";
    /// Usage the outbox could not take yet (kept, retried).
    pub const FLUSH_ERRORS: &str = "tokenward.sync.flush_errors";
}

/// What a call in flight was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InFlight {
    Config,
    Report { seq: u64 },
}

/// One worker's side of the channel (one per root context).
pub struct Channel {
    settings: Arc<SyncSettings>,
    /// The configuration comes through the channel.
    pull: bool,
    /// Envoy's node id.
    node: String,
    env: VmEnv,
    /// This root context's number among the Envoy's, for the lease.
    worker: Option<u64>,
    leading: bool,
    calls: Vec<(u32, InFlight)>,
    next_poll_ms: u64,
    next_report_ms: u64,
    last_report_ms: u64,
    pulled: pulled::PulledState,
}

impl Channel {
    pub fn new(settings: Arc<SyncSettings>, pull: bool, node: String, env: VmEnv) -> Channel {
        Channel {
            settings,
            pull,
            node,
            env,
            worker: None,
            leading: false,
            calls: Vec::new(),
            next_poll_ms: 0,
            next_report_ms: 0,
            last_report_ms: 0,
            pulled: pulled::PulledState::default(),
        }
    }

    /// Pull mode, a new root context: the configuration another one already pulled, if any.
    pub fn adopt(&mut self, host: &dyn SyncHost, now_ms: u64) -> Apply {
        if !self.pull {
            return Apply::Keep;
        }
        self.pulled.follow(host, &self.settings, now_ms, &*self.env)
    }

    /// Names this Envoy when it could not be named at configuration time.
    pub fn name_node(&mut self, node: impl FnOnce() -> Option<String>) {
        if self.node.is_empty() {
            if let Some(node) = node() {
                self.node = node;
            }
        }
    }

    /// How long after the control plane's last answer a fail-closed plan still counts it as
    /// reachable: three report intervals, at least 3 s.
    pub fn contact_ttl_ms(&self) -> u64 {
        self.settings
            .report_interval_ms
            .saturating_mul(3)
            .max(3_000)
    }

    /// Whether a call is in flight.
    pub fn busy(&self) -> bool {
        !self.calls.is_empty()
    }

    /// The timer: flush this worker's usage, follow the configuration in shared data (pull
    /// mode), and, if this worker drives the channel, poll and report.
    pub fn on_tick(
        &mut self,
        host: &dyn SyncHost,
        now_ms: u64,
        ledger: &mut UsageLedger,
        fleet: &mut Allowances,
        current: Option<&Policy>,
    ) -> Apply {
        if self.node.is_empty() {
            // Calls name their Envoy: none leaves before it is known.
            self.node = "unnamed".into();
        }
        if let Err(error) = ledger.flush(host.store()) {
            log::warn!("usage could not be put into the outbox yet: {error}");
            host.count(stat::FLUSH_ERRORS, 1);
        }
        fleet.sync(host.store());
        let apply = if self.pull {
            self.pulled.follow(host, &self.settings, now_ms, &*self.env)
        } else {
            Apply::Keep
        };
        self.leading = self.take_lease(host.store(), now_ms);
        if self.leading {
            if self.pull && now_ms >= self.next_poll_ms && !self.waiting_for(InFlight::Config) {
                self.poll(host, now_ms, current);
            }
            if now_ms >= self.next_report_ms && !self.reporting() {
                self.next_report_ms = now_ms + self.settings.report_interval_ms;
                self.report(host, now_ms, fleet, current);
            }
        }
        apply
    }

    /// The answer to one of this worker's calls.
    pub fn on_answer(
        &mut self,
        host: &dyn SyncHost,
        token: u32,
        answer: Answer,
        now_ms: u64,
        fleet: &mut Allowances,
        current: Option<&Policy>,
    ) -> Apply {
        let Some(at) = self.calls.iter().position(|(t, _)| *t == token) else {
            return Apply::Keep;
        };
        let (_, call) = self.calls.swap_remove(at);
        match call {
            InFlight::Config => {
                let outcome = self.pulled.on_answer(
                    host,
                    &self.settings,
                    &answer,
                    now_ms,
                    current,
                    &*self.env,
                );
                if !matches!(outcome, pulled::Outcome::Polled(_)) {
                    host.count(stat::CALL_ERRORS, 1);
                    self.next_poll_ms = now_ms + RETRY_MS;
                } else if self.leading {
                    // Poll again at once: the long poll is how changes arrive.
                    self.poll(host, now_ms, current);
                }
                match outcome {
                    pulled::Outcome::Polled(apply) => apply,
                    pulled::Outcome::Failed => Apply::Keep,
                }
            }
            InFlight::Report { seq } => {
                report::on_answer(host, seq, &answer, now_ms);
                fleet.sync(host.store());
                Apply::Keep
            }
        }
    }

    /// The root context is going away (a new configuration, Envoy shutting down): flush the
    /// usage, and if this worker drives the channel, send what is left and hand the lease
    /// over. Returns whether a call is still in flight (the context must then wait for it).
    pub fn on_done(
        &mut self,
        host: &dyn SyncHost,
        now_ms: u64,
        ledger: &mut UsageLedger,
        fleet: &mut Allowances,
        current: Option<&Policy>,
    ) -> bool {
        if let Err(error) = ledger.flush(host.store()) {
            log::warn!("usage could not be put into the outbox at shutdown: {error}");
        }
        fleet.sync(host.store());
        if !self.leading {
            return false;
        }
        if !self.reporting() {
            self.report(host, now_ms, fleet, current);
        }
        self.release_lease(host.store());
        self.leading = false;
        self.reporting()
    }

    fn waiting_for(&self, call: InFlight) -> bool {
        self.calls.iter().any(|(_, c)| *c == call)
    }

    fn reporting(&self) -> bool {
        self.calls
            .iter()
            .any(|(_, c)| matches!(c, InFlight::Report { .. }))
    }

    fn poll(&mut self, host: &dyn SyncHost, now_ms: u64, current: Option<&Policy>) {
        let call = self.pulled.poll_call(&self.settings, &self.node, current);
        match host.dispatch(&call) {
            Ok(token) => self.calls.push((token, InFlight::Config)),
            Err(status) => {
                log::warn!(
                    "the configuration poll could not be sent on cluster {}: {status}",
                    Quoted(&self.settings.cluster)
                );
                host.count(stat::CALL_ERRORS, 1);
                self.next_poll_ms = now_ms + RETRY_MS;
            }
        }
    }

    fn report(
        &mut self,
        host: &dyn SyncHost,
        now_ms: u64,
        fleet: &mut Allowances,
        current: Option<&Policy>,
    ) {
        let heartbeat_due = now_ms.saturating_sub(self.last_report_ms) >= HEARTBEAT_MS;
        let status = report::ConfigStatus {
            version: current.and_then(|p| p.version.clone()),
            refused: self.pulled.refused(),
        };
        let counters = fleet
            .counters(host.store(), now_ms / 1000)
            .unwrap_or_else(|error| {
                log::warn!("fleet counters could not be read for the report: {error}");
                Vec::new()
            });
        let Some((seq, body)) = report::next(
            host,
            &self.node,
            self.pull,
            now_ms,
            heartbeat_due,
            status,
            counters,
        ) else {
            return;
        };
        let call = Call {
            cluster: self.settings.cluster.clone(),
            headers: {
                let mut headers = self.settings.headers("POST", REPORT_PATH, &self.node);
                headers.push(("content-type".into(), "application/json".into()));
                headers
            },
            body: Some(body),
            timeout_ms: 5_000,
        };
        match host.dispatch(&call) {
            Ok(token) => {
                self.last_report_ms = now_ms;
                self.calls.push((token, InFlight::Report { seq }));
            }
            Err(status) => {
                // Kept in shared data: the next report sends it again.
                log::warn!(
                    "a usage report could not be sent on cluster {}: {status}",
                    Quoted(&self.settings.cluster)
                );
                host.count(stat::CALL_ERRORS, 1);
            }
        }
    }

    fn take_lease(&mut self, store: &dyn SharedStore, now_ms: u64) -> bool {
        let Some(worker) = self.worker_id(store) else {
            return false;
        };
        let Ok(lease) = store.get(LEASE) else {
            return false;
        };
        let (holder, expires, cas) = match &lease {
            Some((bytes, cas)) => {
                let (holder, expires) = parse_lease(bytes).unwrap_or((0, 0));
                (holder, expires, Some(*cas))
            }
            None => (0, 0, None),
        };
        if holder != worker && expires > now_ms {
            return false;
        }
        let value = format!("{worker} {}", now_ms + LEASE_MS);
        store
            .compare_and_set(LEASE, value.as_bytes(), cas)
            .unwrap_or(false)
    }

    fn release_lease(&mut self, store: &dyn SharedStore) {
        let Some(worker) = self.worker else { return };
        if let Ok(Some((bytes, cas))) = store.get(LEASE) {
            if parse_lease(&bytes).is_some_and(|(holder, _)| holder == worker) {
                let _ = store.compare_and_set(LEASE, b"0 0", Some(cas));
            }
        }
    }

    /// A number no other root context of this Envoy has: a counter in shared data.
    fn worker_id(&mut self, store: &dyn SharedStore) -> Option<u64> {
        if self.worker.is_none() {
            for _ in 0..MAX_CAS_ATTEMPTS {
                let current = store.get(WORKERS).ok()?;
                let (n, cas) = match &current {
                    Some((bytes, cas)) => (
                        std::str::from_utf8(bytes).ok()?.parse::<u64>().ok()?,
                        Some(*cas),
                    ),
                    None => (0, None),
                };
                let next = n + 1;
                if store
                    .compare_and_set(WORKERS, next.to_string().as_bytes(), cas)
                    .ok()?
                {
                    self.worker = Some(next);
                    break;
                }
            }
        }
        self.worker
    }
}

fn parse_lease(bytes: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (holder, expires) = text.split_once(' ')?;
    Some((holder.parse().ok()?, expires.parse().ok()?))
}

/// The body of a usage report: sequence-numbered per Envoy boot, so the control plane
/// counts each once however often it arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncReport {
    /// Envoy's node id.
    pub node: String,
    /// This Envoy process's start of the sequence (shared data lives as long as it).
    pub boot: String,
    pub seq: u64,
    /// The filter pulls its configuration through the channel (no ADS): the control plane
    /// shows it in the fleet from these reports.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pull: bool,
    /// The configuration in force in the reporting worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    /// The last pulled configuration the filter refused, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedConfig>,
    #[serde(default)]
    pub entries: Vec<UsageEntry>,
    /// This Envoy's counters of fleet-wide limits (docs/quotas.md): the control plane answers
    /// with the allowances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<CounterState>,
    /// Sources the guard started blocking since the last report (docs/guard.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<BlockEvent>,
}

/// As its `Serialize` writes it (the control plane reads it with serde).
impl ToJson for SyncReport {
    fn write_json(&self, out: &mut String) {
        let SyncReport {
            node,
            boot,
            seq,
            pull,
            config_version,
            refused,
            entries,
            counters,
            blocks,
        } = self;
        object(out, |report| {
            report
                .field("node", node)
                .field("boot", boot)
                .field("seq", seq);
            if *pull {
                report.field("pull", pull);
            }
            if let Some(version) = config_version {
                report.field("config_version", version);
            }
            if let Some(refused) = refused {
                report.field("refused", refused);
            }
            report.field("entries", entries);
            if !counters.is_empty() {
                report.field("counters", counters);
            }
            if !blocks.is_empty() {
                report.field("blocks", blocks);
            }
        });
    }
}

impl SyncReport {
    /// Report number `seq` of an Envoy process (`node`, `boot`), carrying nothing yet.
    pub fn new(node: &str, boot: &str, seq: u64) -> SyncReport {
        SyncReport {
            node: node.to_string(),
            boot: boot.to_string(),
            seq,
            pull: false,
            config_version: None,
            refused: None,
            entries: Vec::new(),
            counters: Vec::new(),
            blocks: Vec::new(),
        }
    }
}

/// The control plane's answer to a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportAnswer {
    /// Whether the report was new (false: a resend already counted).
    pub taken: bool,
    pub seq: u64,
    /// Allowances for the counters the report named and those the fleet uses now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowances: Option<FleetAnswer>,
}

impl ReportAnswer {
    pub fn read(value: &Node) -> Read<ReportAnswer> {
        let fields = Fields::open(value)?;
        Ok(ReportAnswer {
            taken: fields.required("taken", read::boolean)?,
            seq: fields.required("seq", read::u64)?,
            allowances: fields.optional("allowances", FleetAnswer::read)?,
        })
    }
}

read::deserialize_by_reader!(ReportAnswer);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusedConfig {
    pub version: String,
    pub error: String,
}

impl ToJson for RefusedConfig {
    fn write_json(&self, out: &mut String) {
        let RefusedConfig { version, error } = self;
        object(out, |refused| {
            refused.field("version", version).field("error", error);
        });
    }
}

/// The claims of the control plane's signature on a pulled configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSignature {
    /// Lowercase hex SHA-256 of the configuration's bytes as sent.
    pub sha256: String,
    /// The store revision it was rendered at: a filter never goes back to an older one.
    pub revision: u64,
}

impl CustomClaims for ConfigSignature {
    fn read(claims: &Node) -> Read<ConfigSignature> {
        let fields = Fields::open(claims)?;
        Ok(ConfigSignature {
            sha256: fields.required("sha256", read::string)?,
            revision: fields.required("revision", read::u64)?,
        })
    }
}

/// An HTTP answer's status for a log line: `Some(503)` or `None` (no answer), as `{:?}`
/// writes it, without `Debug`'s machinery in the module.
fn answer_status(status: Option<u16>) -> String {
    status.map_or_else(|| "None".to_string(), |status| format!("Some({status})"))
}

#[cfg(test)]
mod tests;
