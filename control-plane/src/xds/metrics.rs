//! Envoy's metrics service (`envoy.service.metrics.v3.MetricsService`), on the ADS server:
//! each Envoy's `metrics_service` stats sink streams its stats here, and what the filter
//! reports in its gauges — the parts of its configuration it could not load — goes into that
//! Envoy's [`ProxyStatus`](crate::state::ProxyStatus). Reading a report is pure ([`read`]); the
//! tonic glue only finds the node and applies it. Counters and histograms are not kept.

use std::sync::Arc;

use envoy_types::pb::envoy::service::metrics::v3::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use envoy_types::pb::envoy::service::metrics::v3::{StreamMetricsMessage, StreamMetricsResponse};
use envoy_types::pb::io::prometheus::client::MetricFamily;

use crate::model::{ConfigPart, ReportedStats, StatsUpdate};
use crate::state::ServerState;

/// The filter's gauge per part: 1 while `<kind>.<name>` does not load, 0 once it does.
pub const UNAVAILABLE_PREFIX: &str = "tokenward.config.unavailable.";
/// The filter's gauge counting those parts.
pub const UNAVAILABLE_COUNT: &str = "tokenward.config.unavailable_parts";
/// Where Envoy keeps the stats a Wasm module defines; the sink sends that full name.
const WASM_NAMESPACE: &str = "wasmcustom.";
/// Envoy's own gauge: 1 while it serves (initialised, not draining).
const SERVER_LIVE: &str = "server.live";

/// Reads the gauges tokenward keeps from one report. Names may arrive with or without
/// Envoy's `wasmcustom.` namespace.
pub fn read(families: &[MetricFamily]) -> StatsUpdate {
    let mut update = StatsUpdate::default();
    for family in families {
        let Some(name) = family.name.as_deref() else {
            continue;
        };
        let Some(value) = family
            .metric
            .first()
            .and_then(|m| m.gauge.as_ref())
            .and_then(|g| g.value)
        else {
            continue;
        };
        let name = name.strip_prefix(WASM_NAMESPACE).unwrap_or(name);
        if name == SERVER_LIVE {
            update.live = Some(value >= 1.0);
        } else if name == UNAVAILABLE_COUNT {
            // A gauge is an integer count here; anything else is no count.
            update.unavailable_parts =
                (value >= 0.0 && value.fract() == 0.0).then_some(value as u64);
        } else if let Some((kind, part)) = name
            .strip_prefix(UNAVAILABLE_PREFIX)
            .and_then(|rest| rest.split_once('.'))
        {
            if !kind.is_empty() && !part.is_empty() {
                update.parts.push((
                    ConfigPart {
                        kind: kind.to_string(),
                        name: part.to_string(),
                    },
                    value >= 1.0,
                ));
            }
        }
    }
    update
}

/// The tonic service: one stream per Envoy, named by the node of its first message.
pub struct MetricsSink {
    pub state: Arc<ServerState>,
    /// Mutual TLS: the node a stream reports for must be named by its client certificate,
    /// as on ADS, or one Envoy could report for another.
    pub client_auth: bool,
}

/// The service to add to the gRPC server.
pub fn service(state: Arc<ServerState>, client_auth: bool) -> MetricsServiceServer<MetricsSink> {
    MetricsServiceServer::new(MetricsSink { state, client_auth })
}

#[tonic::async_trait]
impl MetricsService for MetricsSink {
    async fn stream_metrics(
        &self,
        request: tonic::Request<tonic::Streaming<StreamMetricsMessage>>,
    ) -> Result<tonic::Response<StreamMetricsResponse>, tonic::Status> {
        let peer = request.extensions().get::<crate::tls::PeerInfo>().cloned();
        let mut inbound = request.into_inner();
        let mut node: Option<String> = None;
        while let Some(message) = inbound.message().await? {
            if node.is_none() {
                // Envoy sends the identifier in the first message only.
                let Some(identity) = message.identifier.as_ref().and_then(|i| i.node.as_ref())
                else {
                    return Err(tonic::Status::invalid_argument(
                        "the first message must identify the node",
                    ));
                };
                if self.client_auth {
                    let names = peer.as_ref().and_then(|p| p.client_names.as_deref());
                    if let Err(refusal) =
                        super::authorize_node(names.map(Vec::as_slice), "", Some(&identity.id))
                    {
                        let from = peer
                            .as_ref()
                            .map(|p| p.addr.to_string())
                            .unwrap_or_default();
                        tracing::warn!(%from, %refusal, "metrics: refused a stream");
                        return Err(refusal.status());
                    }
                }
                let mut proxies = self.state.proxies.lock().unwrap_or_else(|e| e.into_inner());
                let entry = proxies.entry(identity.id.clone()).or_default();
                if entry.cluster.is_empty() {
                    entry.cluster = identity.cluster.clone();
                }
                // A new stream is a new Envoy process (or a reconnect that re-sends every
                // gauge): what an earlier one reported no longer holds.
                entry.reported = Some(ReportedStats::default());
                node = Some(identity.id.clone());
            }
            let update = read(&message.envoy_metrics);
            let now = (self.state.clock)();
            if let (Some(node), Ok(mut proxies)) = (&node, self.state.proxies.lock()) {
                proxies
                    .entry(node.clone())
                    .or_default()
                    .reported
                    .get_or_insert_with(ReportedStats::default)
                    .apply(update, now);
            }
        }
        Ok(tonic::Response::new(StreamMetricsResponse {}))
    }
}

#[cfg(test)]
mod tests;
