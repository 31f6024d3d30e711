use std::sync::Arc;

use tokenward_filter::sync::UsageEntry;

use super::*;
use crate::crypto::MasterKey;
use crate::plane::ControlPlane;
use crate::store::SqliteStore;
use crate::testing::Recorder;

fn entry(provider: &str, model: &str, requests: u64, input: u64, output: u64) -> UsageEntry {
    UsageEntry {
        subject: "alice".into(),
        tenant: None,
        plan: None,
        credential: None,
        provider: provider.into(),
        model: Some(model.into()),
        requests,
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: 0,
        cost_micro_usd: 0,
    }
}

fn state() -> Arc<ServerState> {
    let plane = ControlPlane::new(
        SqliteStore::in_memory().unwrap(),
        MasterKey::generate().unwrap(),
        "test",
    );
    Arc::new(ServerState::new(plane, Box::new(|| 1_800_000_000)).with_replica("cp-1"))
}

/// The data point of `(model, token type)` in an export body: (count, sum).
fn point(body: &serde_json::Value, model: &str, kind: &str) -> Option<(String, f64)> {
    let metric = &body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0];
    assert_eq!(metric["name"], "gen_ai.client.token.usage");
    assert_eq!(metric["unit"], "{token}");
    metric["histogram"]["dataPoints"]
        .as_array()?
        .iter()
        .find(|p| {
            let attrs = p["attributes"].as_array().unwrap();
            let has = |k: &str, v: &str| {
                attrs
                    .iter()
                    .any(|a| a["key"] == k && a["value"]["stringValue"] == v)
            };
            has("gen_ai.request.model", model) && has("gen_ai.token.type", kind)
        })
        .map(|p| {
            (
                p["count"].as_str().unwrap().to_string(),
                p["sum"].as_f64().unwrap(),
            )
        })
}

#[test]
fn the_endpoint_gets_the_otlp_metrics_path_unless_it_names_one() {
    assert_eq!(
        metrics_url("http://collector:4318"),
        "http://collector:4318/v1/metrics"
    );
    assert_eq!(
        metrics_url("http://collector:4318/"),
        "http://collector:4318/v1/metrics"
    );
    assert_eq!(
        metrics_url("https://otel.example/otlp/v1/metrics"),
        "https://otel.example/otlp/v1/metrics"
    );
}

#[tokio::test]
async fn usage_goes_to_the_collector_as_gen_ai_token_usage_and_a_failed_export_is_sent_again() {
    let state = state();
    // Off until an export runs: nothing accumulates.
    state
        .usage_metrics
        .add(&[entry("openai", "gpt-4o-mini", 1, 10, 2)]);
    let collector = Recorder::start("/v1/metrics", vec![500]).await;
    assert!(
        !export_once(&state, &collector.url).await,
        "nothing to send"
    );
    enable(&state);
    state.usage_metrics.add(&[
        entry("openai", "gpt-4o-mini", 3, 30, 9),
        entry("openai", "gpt-4o-mini", 2, 20, 6),
        entry("anthropic", "claude-sonnet-4", 1, 100, 40),
    ]);
    // The collector fails once: the same sums go with the next export, with what came since.
    assert!(!export_once(&state, &collector.url).await);
    state
        .usage_metrics
        .add(&[entry("openai", "gpt-4o-mini", 1, 5, 1)]);
    assert!(export_once(&state, &collector.url).await);
    let received = collector.received();
    assert_eq!(received.len(), 2);
    let body: serde_json::Value = serde_json::from_str(&received[1].1).unwrap();
    assert_eq!(
        point(&body, "gpt-4o-mini", "input"),
        Some(("6".into(), 55.0))
    );
    assert_eq!(
        point(&body, "gpt-4o-mini", "output"),
        Some(("6".into(), 16.0))
    );
    assert_eq!(
        point(&body, "claude-sonnet-4", "output"),
        Some(("1".into(), 40.0))
    );
    let resource = &body["resourceMetrics"][0]["resource"]["attributes"];
    assert!(resource
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["key"] == "service.instance.id" && a["value"]["stringValue"] == "cp-1"));
    let histogram = &body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["histogram"];
    assert_eq!(histogram["aggregationTemporality"], 1, "delta");
    // Sent: the next export has nothing.
    assert!(!export_once(&state, &collector.url).await);
}
