//! Starting the servers of `tokenward serve`: the admin API (HTTP, or HTTPS) and, when asked,
//! ADS (gRPC, TLS or mutual TLS) over one shared state, until shutdown.

/// The HTTP API on `admin` and, with `xds`, ADS, until `shutdown` resolves; with `tls`, both
/// speak TLS only (ADS mutual TLS when `tls` has a client CA).
pub async fn run_servers(
    state: std::sync::Arc<crate::state::ServerState>,
    settings: crate::xds::snapshot::SnapshotSettings,
    jobs: crate::jobs::JobSettings,
    admin: tokio::net::TcpListener,
    xds: Option<tokio::net::TcpListener>,
    tls: Option<crate::tls::TlsFiles>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use crate::tls::{ServerTls, TlsFiles, TlsIncoming, TlsListener, ADMIN_ALPN, ADS_ALPN};
    use std::future::{Future, IntoFuture};
    use std::pin::Pin;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    state
        .tls
        .store(tls.is_some(), std::sync::atomic::Ordering::Relaxed);
    // Jobs that run once per period across replicas (each under a lease in the store).
    let otlp = jobs.otlp.clone();
    let jobs = tokio::spawn(crate::jobs::run(std::sync::Arc::clone(&state), jobs));
    let alerts = tokio::spawn(crate::jobs::deliver_alerts(std::sync::Arc::clone(&state)));
    let spikes = tokio::spawn(crate::jobs::watch_spikes(std::sync::Arc::clone(&state)));
    let metrics =
        otlp.map(|otlp| tokio::spawn(crate::otlp::export(std::sync::Arc::clone(&state), otlp)));
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    // The store's changes, rendered: xDS snapshots, and the signed configuration the sync
    // channel serves.
    let (snapshots, watcher) =
        crate::xds::follow_changes(std::sync::Arc::clone(&state), settings.clone()).await;
    let router = crate::admin::router(std::sync::Arc::clone(&state));
    type Served<E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send>>;
    let http: Served<std::io::Error> = match &tls {
        Some(files) => {
            // The admin API asks for no client certificate: its callers carry credentials.
            let files = TlsFiles {
                client_ca: None,
                ..files.clone()
            };
            let listener =
                TlsListener::new(admin, ServerTls::load(files, ADMIN_ALPN, "admin API")?)?;
            Box::pin(
                axum::serve(listener, router)
                    .with_graceful_shutdown(wait(stopped.clone()))
                    .into_future(),
            )
        }
        None => Box::pin(
            axum::serve(admin, router)
                .with_graceful_shutdown(wait(stopped.clone()))
                .into_future(),
        ),
    };
    match xds {
        Some(listener) => {
            let listener = match tls {
                Some(files) => {
                    let tls = ServerTls::load(files, ADS_ALPN, "ADS")?;
                    crate::xds::AdsListener::Tls {
                        client_auth: tls.transport() == crate::tls::Transport::MutualTls,
                        incoming: TlsIncoming::new(listener, tls),
                    }
                }
                None => crate::xds::AdsListener::Plain(listener),
            };
            let grpc = crate::xds::serve(state, settings, snapshots, listener, wait(stopped));
            let (http, grpc) = tokio::join!(http, grpc);
            http?;
            grpc?;
        }
        None => http.await?,
    }
    jobs.abort();
    alerts.abort();
    spikes.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    watcher.abort();
    Ok(())
}
