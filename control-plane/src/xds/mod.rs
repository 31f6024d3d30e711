//! The xDS server: ADS over gRPC (tonic + envoy-types) serving the filter's configuration
//! through ECDS, and the provider clusters and route table through CDS and RDS. `snapshot`
//! builds resources from the rendered configuration (pure); `stream` is one stream's state
//! machine (pure); `metrics` receives each Envoy's stats (what the filter could not load);
//! this module is the gRPC glue and the loop that notices changes.

pub mod fleet;
pub mod metrics;
pub mod snapshot;
pub mod stream;

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;

use crate::state::{NackedVersion, ServerState};
use snapshot::SnapshotSettings;
use stream::{Request, Snapshot, StreamState, Verdict};

/// Short type names for people: `ecds`, `cds`, `rds`.
fn short(type_url: &str) -> String {
    match type_url {
        snapshot::ECDS_TYPE => "ecds".into(),
        snapshot::CDS_TYPE => "cds".into(),
        snapshot::RDS_TYPE => "rds".into(),
        other => other.to_string(),
    }
}

pub struct Ads {
    snapshots: watch::Receiver<Arc<Snapshot<Any>>>,
    state: Arc<ServerState>,
    /// Mutual TLS: every stream's node id must be named by its client certificate.
    client_auth: bool,
}

/// Why a stream is refused under mutual TLS. Its text goes to the log and to the client;
/// it holds node ids and certificate names, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeRefusal {
    #[error("no client certificate on the connection")]
    NoCertificate,
    #[error("the first request names no node")]
    NoNode,
    #[error("node id {node:?} is not named by the client certificate ({names})")]
    NotNamed { node: String, names: String },
    #[error("the stream changed its node id from {from:?} to {to:?}")]
    Changed { from: String, to: String },
}

impl NodeRefusal {
    pub(crate) fn status(&self) -> tonic::Status {
        match self {
            NodeRefusal::NoCertificate => tonic::Status::unauthenticated(self.to_string()),
            _ => tonic::Status::permission_denied(self.to_string()),
        }
    }
}

/// Decides one request's node id under mutual TLS: `claimed` (the request's node, if it has
/// one) against the certificate's names and the node the stream already is (`current`, empty
/// before the first request). Returns the stream's node id.
pub fn authorize_node(
    client_names: Option<&[crate::tls::identity::CertName]>,
    current: &str,
    claimed: Option<&str>,
) -> Result<String, NodeRefusal> {
    let names = client_names.ok_or(NodeRefusal::NoCertificate)?;
    match claimed {
        // Envoy sends its node on the first request only, unless told otherwise.
        None if current.is_empty() => Err(NodeRefusal::NoNode),
        None => Ok(current.to_string()),
        Some(node) if !current.is_empty() && node != current => Err(NodeRefusal::Changed {
            from: current.to_string(),
            to: node.to_string(),
        }),
        Some(node) if crate::tls::identity::names_node(names, node) => Ok(node.to_string()),
        Some(node) => Err(NodeRefusal::NotNamed {
            node: node.to_string(),
            names: if names.is_empty() {
                "no DNS or URI name".to_string()
            } else {
                names
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, tonic::Status>> + Send>>;
type DeltaStream =
    Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, tonic::Status>> + Send>>;

fn to_wire(response: stream::Response<Any>) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: response.version,
        resources: response.resources,
        type_url: response.type_url,
        nonce: response.nonce,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = ResponseStream;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<ResponseStream>, tonic::Status> {
        let peer = request.extensions().get::<crate::tls::PeerInfo>().cloned();
        let client_auth = self.client_auth;
        let mut inbound = request.into_inner();
        let mut snapshots = self.snapshots.clone();
        let state = Arc::clone(&self.state);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut stream = StreamState::default();
            let mut node = String::new();
            loop {
                tokio::select! {
                    message = inbound.message() => {
                        let Ok(Some(message)) = message else { break };
                        if client_auth {
                            let names = peer.as_ref().and_then(|p| p.client_names.as_deref());
                            let claimed = message.node.as_ref().map(|n| n.id.as_str());
                            match authorize_node(names.map(Vec::as_slice), &node, claimed) {
                                Ok(_) => {}
                                Err(refusal) => {
                                    let from = peer.as_ref().map(|p| p.addr.to_string()).unwrap_or_default();
                                    tracing::warn!(%from, %refusal, "xDS: refused a stream");
                                    let _ = tx.send(Err(refusal.status())).await;
                                    break;
                                }
                            }
                        }
                        if node.is_empty() {
                            if let Some(n) = &message.node {
                                node = n.id.clone();
                                let mut proxies = state.proxies.lock().unwrap_or_else(|e| e.into_inner());
                                let entry = proxies.entry(node.clone()).or_default();
                                entry.cluster = n.cluster.clone();
                                entry.connected = true;
                            }
                        }
                        let request = Request {
                            type_url: message.type_url.clone(),
                            version_info: message.version_info.clone(),
                            response_nonce: message.response_nonce.clone(),
                            resource_names: message.resource_names.clone(),
                            error: message.error_detail.as_ref().map(|s| s.message.clone()),
                        };
                        let current = Arc::clone(&snapshots.borrow());
                        let (response, verdict) = stream.on_request(&request, &current);
                        record(&state, &node, verdict);
                        if let Some(response) = response {
                            if tx.send(Ok(to_wire(response))).await.is_err() { break }
                        }
                    }
                    changed = snapshots.changed() => {
                        if changed.is_err() { break }
                        let current = Arc::clone(&snapshots.borrow_and_update());
                        for response in stream.on_snapshot(&current) {
                            if tx.send(Ok(to_wire(response))).await.is_err() { break }
                        }
                    }
                }
            }
            if let Ok(mut proxies) = state.proxies.lock() {
                if let Some(entry) = proxies.get_mut(&node) {
                    entry.connected = false;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<DeltaStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "tokenward serves state-of-the-world ADS",
        ))
    }
}

fn record(state: &ServerState, node: &str, verdict: Option<Verdict>) {
    let Ok(mut proxies) = state.proxies.lock() else {
        return;
    };
    let entry = proxies.entry(node.to_string()).or_default();
    entry.last_seen = (state.clock)();
    match verdict {
        Some(Verdict::Ack { type_url, version }) => {
            entry.acked.insert(short(&type_url), version);
        }
        Some(Verdict::Nack {
            type_url,
            version,
            error,
        }) => {
            entry
                .nacked
                .insert(short(&type_url), NackedVersion { version, error });
        }
        None => {}
    }
}

/// Starts following the store's changes: its notification (when it has one) and the render
/// loop, which publishes each new configuration as an xDS snapshot and, signed, for the
/// sync channel. Runs whether or not ADS is served (pull-mode filters need it too).
pub async fn follow_changes(
    state: Arc<ServerState>,
    settings: SnapshotSettings,
) -> (
    watch::Receiver<Arc<Snapshot<Any>>>,
    tokio::task::JoinHandle<()>,
) {
    let (publish, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    // Commits of other replicas wake the loop at once.
    // (Connecting is blocking work: off the async threads.)
    // The watch holds the state weakly: once the servers are gone, it ends.
    let (woken, asked) = (Arc::downgrade(&state), Arc::downgrade(&state));
    let watching = Arc::clone(&state);
    let watched = tokio::task::spawn_blocking(move || {
        watching.plane.store().watch(crate::store::Wake {
            changed: Arc::new(move || {
                if let Some(state) = woken.upgrade() {
                    state.changed.store(true, Ordering::SeqCst);
                    state.wake.notify_one();
                }
            }),
            listening: Arc::new(move || asked.strong_count() > 0),
        })
    })
    .await;
    if let Ok(Err(error)) = watched {
        tracing::warn!(%error, "no change notification from the store; polling its revision");
    }
    let watcher = tokio::spawn(watch_changes(state, settings, publish));
    (snapshots, watcher)
}

/// Renders and publishes a snapshot whenever the state may have changed: after a write
/// through the admin API, a commit by any connection, process or replica (the store's
/// notification, and its revision as the safety net), and every few seconds (keys activate
/// and revocations expire with time). Publishes only new versions.
pub async fn watch_changes(
    state: Arc<ServerState>,
    settings: SnapshotSettings,
    publish: watch::Sender<Arc<Snapshot<Any>>>,
) {
    let mut last_revision = None;
    let mut last_version = None;
    let mut last_render = std::time::Instant::now() - std::time::Duration::from_secs(3600);
    // The store wakes the loop when any replica commits (Postgres NOTIFY); the poll of the
    // revision is the safety net (SQLite: the only signal, and a cheap one).
    let mut tick = tokio::time::interval(state.plane.store().change_poll());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.wake.notified() => {}
        }
        // Rendering and compiling run on the blocking pool: they read SQLite and take
        // milliseconds on a large installation, and the async threads serve ADS meanwhile.
        let work = Arc::clone(&state);
        let since = last_render;
        let previous = last_revision;
        let served = last_version.clone();
        let signed_before = state.synced.borrow().clone();
        let step = tokio::task::spawn_blocking(move || {
            let plane = &work.plane;
            let revision = plane.store().revision().ok();
            let due = work.changed.swap(false, Ordering::SeqCst)
                || revision != previous
                || since.elapsed() > std::time::Duration::from_secs(5);
            if !due {
                return (revision, None);
            }
            let checked = plane.render((work.clock)()).map(|config| {
                if config.version == served {
                    return (config, Ok(()));
                }
                // Read between two commits of another process, a render could be
                // inconsistent: what the filter would refuse is not pushed (the next commit
                // or the periodic render follows).
                let compiled =
                    tokenward_filter::policy::Policy::compile(&config, &|_| Some("unused".into()))
                        .map(|_| ());
                (config, compiled)
            });
            // What pull-mode filters fetch: signed again when it changed, or before its
            // signature gets old.
            let now = (work.clock)();
            let signed = match &checked {
                Ok((config, Ok(()))) => {
                    let fresh = signed_before.as_ref().is_some_and(|s| {
                        Some(&s.version) == config.version.as_ref()
                            && now.saturating_sub(s.signed_at) < crate::plane::RESIGN_AFTER
                    });
                    if fresh {
                        None
                    } else {
                        match plane.sign_config(config, revision.unwrap_or(0), now) {
                            Ok(signed) => Some(Arc::new(signed)),
                            Err(error) => {
                                tracing::error!(%error, "sync: cannot sign the configuration");
                                None
                            }
                        }
                    }
                }
                _ => None,
            };
            (revision, Some((checked, signed)))
        })
        .await;
        let Ok((revision, rendered)) = step else {
            return;
        };
        let rendered = rendered.map(|(checked, signed)| {
            if let Some(signed) = signed {
                tracing::info!(version = %signed.version, "sync: serving configuration");
                state.synced.send_replace(Some(signed));
            }
            checked
        });
        last_revision = revision;
        let Some(rendered) = rendered else {
            continue;
        };
        last_render = std::time::Instant::now();
        let (config, compiled) = match rendered {
            Ok(rendered) => rendered,
            Err(error) => {
                tracing::error!(%error, "xDS: cannot render the configuration");
                continue;
            }
        };
        if config.version == last_version {
            continue;
        }
        if let Err(error) = compiled {
            tracing::warn!(%error, "xDS: not pushing a configuration the filter would refuse");
            state.changed.store(true, Ordering::SeqCst);
            continue;
        }
        match snapshot::build(&config, &settings) {
            Ok(snapshot) => {
                tracing::info!(
                    version = config.version.as_deref().unwrap_or(""),
                    "xDS: serving configuration"
                );
                last_version = config.version.clone();
                if let Ok(mut published) = state.published.lock() {
                    *published = snapshot
                        .types
                        .iter()
                        .map(|(kind, t)| (short(kind), t.version.clone()))
                        .collect();
                }
                let _ = publish.send(Arc::new(snapshot));
            }
            Err(error) => tracing::error!(%error, "xDS: cannot build resources"),
        }
    }
}

/// Where ADS listens: plain TCP, or TLS (mutual when its configuration has a client CA).
pub enum AdsListener {
    Plain(tokio::net::TcpListener),
    Tls {
        incoming: crate::tls::TlsIncoming,
        client_auth: bool,
    },
}

/// Serves ADS on `listener` until `shutdown` resolves. ADS streams live as long as their
/// Envoy: shutting down closes them rather than waiting for them to end (Envoy reconnects).
pub async fn serve(
    state: Arc<ServerState>,
    settings: SnapshotSettings,
    snapshots: watch::Receiver<Arc<Snapshot<Any>>>,
    listener: AdsListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // The admin API tells which providers no Envoy fed from here can load.
    if let Ok(mut keys) = state.vm_env_keys.lock() {
        *keys = Some(settings.env_keys.clone());
    }
    let recorder = tokio::spawn(fleet::record(Arc::clone(&state)));
    let ads = |client_auth| {
        AggregatedDiscoveryServiceServer::new(Ads {
            snapshots,
            state: Arc::clone(&state),
            client_auth,
        })
    };
    // grpc.health.v1: Envoy health-checks every replica its bootstrap lists and keeps its ADS
    // stream on one that serves; a replica that cannot read its store says NOT_SERVING.
    let (health, health_service) = tonic_health::server::health_reporter();
    let health_watch = tokio::spawn(report_health(Arc::clone(&state), health));
    let server: Pin<Box<dyn std::future::Future<Output = _> + Send>> = match listener {
        AdsListener::Plain(listener) => Box::pin(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(ads(false))
                // Envoy's stats sink, on the cluster it already has for ADS.
                .add_service(metrics::service(Arc::clone(&state), false))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        ),
        AdsListener::Tls {
            incoming,
            client_auth,
        } => Box::pin(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(ads(client_auth))
                .add_service(metrics::service(Arc::clone(&state), client_auth))
                .serve_with_incoming(incoming),
        ),
    };
    let result = tokio::select! {
        result = server => result,
        () = shutdown => Ok(()),
    };
    recorder.abort();
    health_watch.abort();
    result
}

/// SERVING while the store answers; NOT_SERVING while it does not (Envoy then prefers a
/// replica that can read it).
async fn report_health(state: Arc<ServerState>, reporter: tonic_health::server::HealthReporter) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    let mut serving = None;
    loop {
        tick.tick().await;
        let work = Arc::clone(&state);
        let now_serving =
            tokio::task::spawn_blocking(move || work.plane.store().revision().is_ok())
                .await
                .unwrap_or(false);
        if serving != Some(now_serving) {
            serving = Some(now_serving);
            let status = if now_serving {
                tonic_health::ServingStatus::Serving
            } else {
                tracing::warn!("xDS: the store does not answer; reporting NOT_SERVING");
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
        }
    }
}

#[cfg(test)]
mod tests;
