use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::metrics::v3::stream_metrics_message::Identifier;
use envoy_types::pb::io::prometheus::client::{Counter, Gauge, Metric, MetricType};
use http_body_util::BodyExt;
use prost::Message;
use tower::ServiceExt;

use super::*;

fn gauge(name: &str, value: f64) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        r#type: Some(MetricType::Gauge as i32),
        metric: vec![Metric {
            gauge: Some(Gauge { value: Some(value) }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn counter(name: &str, value: f64) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        r#type: Some(MetricType::Counter as i32),
        metric: vec![Metric {
            counter: Some(Counter {
                value: Some(value),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn part(kind: &str, name: &str) -> ConfigPart {
    ConfigPart {
        kind: kind.into(),
        name: name.into(),
    }
}

#[test]
fn the_filters_gauges_are_read_with_or_without_the_wasm_namespace() {
    let update = read(&[
        gauge("tokenward.config.unavailable.provider.bad_one", 1.0),
        gauge("wasmcustom.tokenward.config.unavailable.route.chat-2", 1.0),
        gauge("wasmcustom.tokenward.config.unavailable.plan.gold", 0.0),
        gauge("wasmcustom.tokenward.config.unavailable_parts", 2.0),
        gauge("server.live", 1.0),
        // Not ours, or not a gauge of a part: ignored.
        gauge("tokenward.config.unavailable.provider", 1.0),
        counter("tokenward.config.unavailable.price.x", 1.0),
        gauge("cluster.openai.upstream_cx_active", 3.0),
    ]);
    assert_eq!(
        update.parts,
        [
            (part("provider", "bad_one"), true),
            (part("route", "chat-2"), true),
            (part("plan", "gold"), false),
        ]
    );
    assert_eq!(update.unavailable_parts, Some(2));
    assert_eq!(update.live, Some(true));
}

#[test]
fn a_part_that_loads_again_leaves_the_report_and_absent_gauges_change_nothing() {
    let mut reported = ReportedStats::default();
    reported.apply(
        read(&[
            gauge("tokenward.config.unavailable.provider.a", 1.0),
            gauge("tokenward.config.unavailable.provider.b", 1.0),
        ]),
        10,
    );
    reported.apply(
        read(&[gauge("tokenward.config.unavailable.provider.a", 0.0)]),
        11,
    );
    assert_eq!(
        reported.unavailable.iter().collect::<Vec<_>>(),
        [&part("provider", "b")]
    );
    assert_eq!(reported.at, 11);
}

/// One gRPC stream of `messages` into the service, as Envoy's sink sends them.
async fn stream(state: &Arc<ServerState>, messages: &[StreamMetricsMessage]) -> (u16, String) {
    stream_as(state, messages, false).await
}

/// The same into a service under mutual TLS (`client_auth`), from a connection that has no
/// client certificate.
async fn stream_as(
    state: &Arc<ServerState>,
    messages: &[StreamMetricsMessage],
    client_auth: bool,
) -> (u16, String) {
    let mut body = Vec::new();
    for message in messages {
        let bytes = message.encode_to_vec();
        body.push(0u8);
        body.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&bytes);
    }
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/envoy.service.metrics.v3.MetricsService/StreamMetrics")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            prost::bytes::Bytes::from(body),
        )))
        .unwrap();
    let response = service(Arc::clone(state), client_auth)
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let mut grpc_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    let collected = response.into_body().collect().await.unwrap();
    if let Some(trailers) = collected.trailers() {
        if let Some(v) = trailers.get("grpc-status") {
            grpc_status = Some(v.to_str().unwrap().to_string());
        }
    }
    (status, grpc_status.unwrap_or_default())
}

fn state() -> Arc<ServerState> {
    let plane = crate::plane::ControlPlane::new(
        crate::store::SqliteStore::in_memory().unwrap(),
        crate::crypto::MasterKey::generate().unwrap(),
        "test",
    );
    Arc::new(ServerState::new(plane, Box::new(|| 1_800_000_000)))
}

fn from(node: &str, metrics: Vec<MetricFamily>) -> StreamMetricsMessage {
    StreamMetricsMessage {
        identifier: Some(Identifier {
            node: Some(Node {
                id: node.into(),
                cluster: "gateways".into(),
                ..Default::default()
            }),
        }),
        envoy_metrics: metrics,
    }
}

#[tokio::test]
async fn what_an_envoy_streams_shows_in_its_proxy_status_by_node() {
    let state = state();
    let later = StreamMetricsMessage {
        identifier: None,
        envoy_metrics: vec![
            gauge(
                "wasmcustom.tokenward.config.unavailable.provider.bad_one",
                1.0,
            ),
            gauge("wasmcustom.tokenward.config.unavailable.route.old", 0.0),
            gauge("wasmcustom.tokenward.config.unavailable_parts", 1.0),
        ],
    };
    let (status, grpc) = stream(
        &state,
        &[
            from(
                "gw-1",
                vec![
                    gauge("server.live", 1.0),
                    gauge("wasmcustom.tokenward.config.unavailable.route.old", 1.0),
                ],
            ),
            later,
        ],
    )
    .await;
    assert_eq!((status, grpc.as_str()), (200, "0"));
    let proxies = serde_json::to_value(&*state.proxies.lock().unwrap()).unwrap();
    let node = &proxies["gw-1"];
    assert_eq!(node["cluster"], "gateways");
    assert_eq!(
        node["reported"]["unavailable"],
        serde_json::json!([{"kind": "provider", "name": "bad_one"}]),
        "{proxies}"
    );
    assert_eq!(node["reported"]["unavailable_parts"], 1);
    assert_eq!(node["reported"]["live"], true);

    // The next stream of that node (Envoy restarted) starts from what it says now.
    stream(&state, &[from("gw-1", vec![gauge("server.live", 1.0)])]).await;
    let proxies = serde_json::to_value(&*state.proxies.lock().unwrap()).unwrap();
    assert_eq!(
        proxies["gw-1"]["reported"]["unavailable"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn a_stream_that_names_no_node_is_refused() {
    let state = state();
    let anonymous = StreamMetricsMessage {
        identifier: None,
        envoy_metrics: vec![gauge("tokenward.config.unavailable.provider.x", 1.0)],
    };
    let (_, grpc) = stream(&state, &[anonymous]).await;
    assert_eq!(grpc, "3", "INVALID_ARGUMENT");
    assert!(state.proxies.lock().unwrap().is_empty());
}

#[tokio::test]
async fn regression_under_mutual_tls_a_stream_its_certificate_does_not_name_reports_nothing() {
    let state = state();
    let (_, grpc_status) = stream_as(
        &state,
        &[from(
            "gw-1",
            vec![gauge("tokenward.config.unavailable_parts", 1.0)],
        )],
        true,
    )
    .await;
    assert_eq!(
        grpc_status, "16",
        "UNAUTHENTICATED without a client certificate"
    );
    assert!(state.proxies.lock().unwrap().is_empty());
}
