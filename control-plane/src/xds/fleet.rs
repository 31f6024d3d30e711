//! What this replica tells the store about the Envoys it serves, so `proxy-status` from any
//! replica shows the whole fleet: each change of an Envoy's status (ACK, NACK, a stats
//! report, a stream that ends) within a second, and a heartbeat for those still connected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::ProxyStatus;
use crate::state::{ServerState, PROXY_HEARTBEAT};

/// How soon a change of an Envoy's status reaches the store.
const FLUSH: Duration = Duration::from_secs(1);

/// Writes this replica's view of its Envoys to the store until the task is dropped.
pub async fn record(state: Arc<ServerState>) {
    let mut written: BTreeMap<String, ProxyStatus> = BTreeMap::new();
    let mut last_heartbeat = Instant::now();
    let mut tick = tokio::time::interval(FLUSH);
    loop {
        tick.tick().await;
        let heartbeat = last_heartbeat.elapsed() >= PROXY_HEARTBEAT;
        if heartbeat {
            last_heartbeat = Instant::now();
        }
        let work = Arc::clone(&state);
        let before = std::mem::take(&mut written);
        written = tokio::task::spawn_blocking(move || flush(&work, before, heartbeat))
            .await
            .unwrap_or_default();
    }
}

/// One flush: the statuses that changed since `written` (`last_seen` aside: the heartbeat
/// carries it), and on `heartbeat` the connected ones' `last_seen`. Returns what is written
/// now; what failed is tried again next time.
fn flush(
    state: &ServerState,
    mut written: BTreeMap<String, ProxyStatus>,
    heartbeat: bool,
) -> BTreeMap<String, ProxyStatus> {
    let now = (state.clock)();
    let local = state.proxies.lock().map(|p| p.clone()).unwrap_or_default();
    let store = state.plane.store();
    for (node, status) in &local {
        let unchanged = written.get(node).is_some_and(|w| {
            ProxyStatus {
                last_seen: status.last_seen,
                ..w.clone()
            } == *status
        });
        if unchanged {
            continue;
        }
        let mut record = status.clone();
        record.last_seen = record.last_seen.max(now);
        match store.put_proxy(node, &state.replica, &record) {
            Ok(()) => {
                written.insert(node.clone(), status.clone());
            }
            Err(error) => {
                tracing::warn!(%error, node = %node, "could not record an Envoy's status")
            }
        }
    }
    if heartbeat {
        let connected: Vec<String> = local
            .iter()
            .filter(|(_, status)| status.connected)
            .map(|(node, _)| node.clone())
            .collect();
        if !connected.is_empty() {
            if let Err(error) = store.touch_proxies(&state.replica, &connected, now) {
                tracing::warn!(%error, "could not record that this replica's Envoys are connected");
            }
        }
    }
    written
}
