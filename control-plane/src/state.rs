//! What every server of one `tokenward serve` shares: the control plane, the clock, the
//! change flag the xDS loop watches, and what is known of each connected Envoy — by this
//! replica (its live streams) and, through the store, by every replica. The admin API and
//! the xDS server both read it; neither imports the other.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::model::ConfigPart;
pub use crate::model::{NackedVersion, ProxyStatus};
use crate::plane::ControlPlane;
use crate::store::{Store, StoredProxy};

/// How often a replica tells the store its Envoys are still connected to it.
pub const PROXY_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);
/// An Envoy its replica has not vouched for in this long (three heartbeats) is shown
/// disconnected: that replica is gone, and the Envoy is reconnecting elsewhere.
pub const PROXY_STALE_AFTER: u64 = 30;

/// The control plane over whichever store `serve` opened: the servers name only the trait.
pub type Plane = ControlPlane<dyn Store>;

pub struct ServerState {
    /// Shared by every request: no lock around it (the store pools its connections, the
    /// compiled policy is kept per revision); each caller acts through its own handle.
    pub plane: Plane,
    /// Unix seconds; a test sets its own.
    pub clock: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Set by every write through this API, so the xDS loop renders again at once.
    pub changed: std::sync::atomic::AtomicBool,
    /// What the xDS server knows of each connected Envoy.
    pub proxies: Registry,
    /// The environment variables the pushed Wasm `vm_config` passes into the VM (`serve
    /// --env-key`); `None` while no xDS server runs (Envoy's VM is then not ours to know).
    pub vm_env_keys: Mutex<Option<Vec<String>>>,
    /// This replica's name: in the store's record of each Envoy it serves, and as the holder
    /// of the leases of jobs it runs.
    pub replica: String,
    /// Woken when the store says another replica committed a change.
    pub wake: tokio::sync::Notify,
    /// The configuration pull-mode filters fetch, signed; `None` until the first render.
    pub synced: tokio::sync::watch::Sender<Option<Arc<crate::plane::SignedConfig>>>,
    /// Usage taken from reports since the last OTLP export (only while one runs).
    pub usage_metrics: crate::otlp::UsageMetrics,
    /// The admin API's listener serves TLS (the dashboard's cookie is then Secure).
    pub tls: std::sync::atomic::AtomicBool,
    /// The version of each resource type this replica serves over ADS now (`ecds`, `cds`, …):
    /// an Envoy that acknowledged another is behind.
    pub published: Mutex<BTreeMap<String, String>>,
}

impl ServerState {
    pub fn new<S: Store + 'static>(
        plane: ControlPlane<S>,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        ServerState::over(plane.into_dyn(), clock)
    }

    /// Over a store chosen at run time (`store::open`).
    pub fn over(plane: Plane, clock: Box<dyn Fn() -> u64 + Send + Sync>) -> Self {
        ServerState {
            plane,
            clock,
            changed: std::sync::atomic::AtomicBool::new(true),
            proxies: Registry::default(),
            vm_env_keys: Mutex::new(None),
            replica: default_replica(),
            wake: tokio::sync::Notify::new(),
            synced: tokio::sync::watch::channel(None).0,
            usage_metrics: crate::otlp::UsageMetrics::default(),
            tls: std::sync::atomic::AtomicBool::new(false),
            published: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn with_replica(mut self, replica: &str) -> Self {
        self.replica = replica.to_string();
        self
    }

    /// Every Envoy of the fleet: what every replica recorded in the store, with this
    /// replica's live view of its own streams over it. An Envoy whose replica stopped
    /// vouching for it shows as disconnected.
    pub fn fleet(&self) -> Vec<StoredProxy> {
        let now = (self.clock)();
        let stored = self.plane.store().proxies().unwrap_or_else(|error| {
            tracing::warn!(%error, "the store's record of the fleet is unreadable; showing this replica's own");
            Vec::new()
        });
        let mut fleet: BTreeMap<String, StoredProxy> = stored
            .into_iter()
            .map(|mut proxy| {
                if proxy.status.last_seen.saturating_add(PROXY_STALE_AFTER) < now {
                    proxy.status.connected = false;
                }
                (proxy.node.clone(), proxy)
            })
            .collect();
        let local = self.proxies.lock().map(|p| p.clone()).unwrap_or_default();
        for (node, status) in local {
            // Ours unless the Envoy has moved on to another replica since.
            let moved = fleet
                .get(&node)
                .is_some_and(|p| p.replica != self.replica && p.status.connected);
            if status.connected || !moved {
                fleet.insert(
                    node.clone(),
                    StoredProxy {
                        node,
                        replica: self.replica.clone(),
                        status,
                    },
                );
            }
        }
        fleet.into_values().collect()
    }
}

/// `<host>-<pid>`: distinct for every process, readable in `proxy-status`.
fn default_replica() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "tokenward".to_string());
    format!("{host}-{}", std::process::id())
}

pub type Registry = Arc<Mutex<BTreeMap<String, ProxyStatus>>>;

/// For each connected Envoy of the fleet, the configuration parts it reports it could not
/// load.
pub fn unavailable_parts(fleet: &[StoredProxy]) -> Vec<(String, Vec<ConfigPart>)> {
    fleet
        .iter()
        .filter(|proxy| proxy.status.connected)
        .filter_map(|proxy| {
            let reported = proxy.status.reported.as_ref()?;
            Some((
                proxy.node.clone(),
                reported.unavailable.iter().cloned().collect(),
            ))
        })
        .collect()
}
