//! What every server of one `tokenward serve` shares: the control plane, the clock, the
//! change flag the xDS loop watches, and what is known of each connected Envoy. The admin API
//! and the xDS server both read it; neither imports the other.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::model::{ConfigPart, ReportedStats};
use crate::plane::ControlPlane;
use crate::store::Store;

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
}

impl ServerState {
    pub fn new<S: Store + 'static>(
        plane: ControlPlane<S>,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        ServerState {
            plane: plane.into_dyn(),
            clock,
            changed: std::sync::atomic::AtomicBool::new(true),
            proxies: Registry::default(),
            vm_env_keys: Mutex::new(None),
        }
    }
}

/// What the server knows of one Envoy (by node id).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProxyStatus {
    pub cluster: String,
    pub connected: bool,
    pub last_seen: u64,
    /// The version it runs, per resource type.
    pub acked: BTreeMap<String, String>,
    /// The last version it refused, per type, with its error.
    pub nacked: BTreeMap<String, NackedVersion>,
    /// What its stats sink reports (none before its first flush, or without a sink).
    pub reported: Option<ReportedStats>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NackedVersion {
    pub version: String,
    pub error: String,
}

pub type Registry = Arc<Mutex<BTreeMap<String, ProxyStatus>>>;

/// For each Envoy connected over ADS, the configuration parts it reports it could not load.
pub fn unavailable_parts(registry: &Registry) -> Vec<(String, Vec<ConfigPart>)> {
    let Ok(proxies) = registry.lock() else {
        return Vec::new();
    };
    proxies
        .iter()
        .filter(|(_, status)| status.connected)
        .filter_map(|(node, status)| {
            let reported = status.reported.as_ref()?;
            Some((node.clone(), reported.unavailable.iter().cloned().collect()))
        })
        .collect()
}
