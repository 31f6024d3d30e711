//! Usage as OpenTelemetry GenAI metrics (`serve --otlp-endpoint`): what the filters report
//! over the sync channel, summed per provider, model and token type since the last export,
//! and sent every interval to an OTLP/HTTP collector as `gen_ai.client.token.usage` (a delta
//! histogram: its count is the requests, its sum the tokens). Each replica exports what it
//! took, under its own `service.instance.id`, so the collector adds the replicas up. An
//! export that fails is merged back and sent with the next.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokenward_filter::sync::UsageEntry;

use crate::state::ServerState;

/// Where and how often.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// The collector's metrics URL (`…/v1/metrics`).
    pub endpoint: String,
    pub interval: Duration,
}

/// `http://collector:4318` → `http://collector:4318/v1/metrics`; a URL with a path is kept.
pub fn metrics_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    let after_scheme = trimmed.split_once("://").map_or(trimmed, |(_, rest)| rest);
    if after_scheme.contains('/') {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/metrics")
    }
}

/// (provider, model, token type) → (requests, tokens).
type Sums = BTreeMap<(String, String, &'static str), (u64, u64)>;

/// Usage taken since the last export.
#[derive(Debug, Default)]
pub struct UsageMetrics {
    /// Only an export that runs makes the sums grow.
    enabled: AtomicBool,
    sums: Mutex<Sums>,
    /// When the sums began (Unix ns).
    since: Mutex<u64>,
}

impl UsageMetrics {
    /// Adds a report's entries (a report taken for the first time).
    pub fn add(&self, entries: &[UsageEntry]) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut sums) = self.sums.lock() else {
            return;
        };
        for e in entries {
            let model = e.model.clone().unwrap_or_default();
            for (kind, tokens) in [("input", e.input_tokens), ("output", e.output_tokens)] {
                let sum = sums
                    .entry((e.provider.clone(), model.clone(), kind))
                    .or_default();
                sum.0 = sum.0.saturating_add(e.requests);
                sum.1 = sum.1.saturating_add(tokens);
            }
        }
    }

    fn take(&self) -> Sums {
        self.sums
            .lock()
            .map(|mut sums| std::mem::take(&mut *sums))
            .unwrap_or_default()
    }

    fn restore(&self, taken: Sums) {
        if let Ok(mut sums) = self.sums.lock() {
            for (key, (count, tokens)) in taken {
                let sum = sums.entry(key).or_default();
                sum.0 = sum.0.saturating_add(count);
                sum.1 = sum.1.saturating_add(tokens);
            }
        }
    }
}

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn attribute(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// The OTLP/JSON `ExportMetricsServiceRequest` of `sums`, over `[start, end]` (Unix ns).
pub fn export_body(replica: &str, sums: &Sums, start: u64, end: u64) -> Value {
    let points: Vec<Value> = sums
        .iter()
        .map(|((provider, model, kind), (count, tokens))| {
            json!({
                "attributes": [
                    attribute("gen_ai.provider.name", provider),
                    attribute("gen_ai.system", provider),
                    attribute("gen_ai.request.model", model),
                    attribute("gen_ai.token.type", kind),
                ],
                "startTimeUnixNano": start.to_string(),
                "timeUnixNano": end.to_string(),
                "count": count.to_string(),
                "sum": *tokens as f64,
                "bucketCounts": [count.to_string()],
                "explicitBounds": [],
            })
        })
        .collect();
    json!({"resourceMetrics": [{
        "resource": {"attributes": [
            attribute("service.name", "tokenward-control-plane"),
            attribute("service.instance.id", replica),
        ]},
        "scopeMetrics": [{
            "scope": {"name": "tokenward", "version": env!("CARGO_PKG_VERSION")},
            "metrics": [{
                "name": "gen_ai.client.token.usage",
                "description": "Tokens used by the requests the gateway forwarded, as the providers reported them",
                "unit": "{token}",
                // AGGREGATION_TEMPORALITY_DELTA
                "histogram": {"aggregationTemporality": 1, "dataPoints": points},
            }],
        }],
    }]})
}

/// Exports every `settings.interval` until the task is dropped.
pub async fn export(state: Arc<ServerState>, settings: OtlpSettings) {
    state.usage_metrics.enabled.store(true, Ordering::Relaxed);
    if let Ok(mut since) = state.usage_metrics.since.lock() {
        *since = unix_ns();
    }
    let mut tick = tokio::time::interval(settings.interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        export_once(&state, &settings.endpoint).await;
    }
}

/// Sends what was taken since the last export; on failure keeps it for the next. Whether
/// the collector took something.
pub async fn export_once(state: &ServerState, endpoint: &str) -> bool {
    let sums = state.usage_metrics.take();
    if sums.is_empty() {
        return false;
    }
    let end = unix_ns();
    let start = state
        .usage_metrics
        .since
        .lock()
        .map(|since| *since)
        .unwrap_or(end);
    let body = export_body(&state.replica, &sums, start, end).to_string();
    let outcome = crate::outbound::post(
        endpoint,
        "application/json",
        &[],
        body.into_bytes(),
        Duration::from_secs(10),
    )
    .await;
    match outcome {
        Ok(status) if (200..300).contains(&status) => {
            if let Ok(mut since) = state.usage_metrics.since.lock() {
                *since = end;
            }
            true
        }
        other => {
            let reason = match other {
                Ok(status) => format!("the collector answered {status}"),
                Err(error) => error.to_string(),
            };
            tracing::warn!(%reason, "OTLP export failed; sent again with the next");
            state.usage_metrics.restore(sums);
            false
        }
    }
}

/// Turns the sums on without an export task (tests drive `export_once` themselves).
#[cfg(test)]
pub fn enable(state: &ServerState) {
    state.usage_metrics.enabled.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
