//! `serve` and `proxy-status`: running the servers, and asking a running one what each Envoy
//! reports.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};

use super::{now, ServeArgs};
use crate::plane::ControlPlane;
use crate::store::Store;

/// `proxy-status`: GET /admin/v1/proxies from a running server, over plain HTTP/1.1 or, for an
/// https:// server, TLS trusting `server_ca` (a hand-written request: one GET needs no client
/// library).
pub(super) fn proxy_status(
    server: &str,
    admin_key: &str,
    server_ca: &Path,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (tls, authority) = match (
        server.strip_prefix("https://"),
        server.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => bail!("--server must be an http:// or https:// URL"),
    };
    let authority = authority.trim_end_matches('/');
    let tcp = std::net::TcpStream::connect(authority)
        .with_context(|| format!("connecting to {authority}"))?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let request = format!(
        "GET /admin/v1/proxies HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {admin_key}\r\nConnection: close\r\n\r\n"
    );
    let response = if tls {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .with_context(|| format!("{host:?} is not a server name"))?;
        let config = crate::tls::client_config(server_ca)?;
        let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        stream.write_all(request.as_bytes())?;
        read_until_closed(&mut stream).with_context(|| format!("reading from {server}"))?
    } else {
        let mut tcp = tcp;
        tcp.write_all(request.as_bytes())?;
        read_until_closed(&mut tcp)?
    };
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("a malformed answer")?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        bail!("the server answered {status}: {body}");
    }
    let proxies: serde_json::Value =
        serde_json::from_str(body).context("the answer is not JSON")?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&proxies)?)?;
        return Ok(());
    }
    let Some(map) = proxies.as_object() else {
        bail!("unexpected answer: {proxies}");
    };
    if map.is_empty() {
        writeln!(out, "no Envoy has connected")?;
    }
    for (node, status) in map {
        let state = if status["connected"] == true {
            "connected"
        } else {
            "disconnected"
        };
        writeln!(
            out,
            "{node} ({}) {state}, last seen {}",
            status["cluster"].as_str().unwrap_or(""),
            status["last_seen"]
        )?;
        for kind in ["ecds", "cds", "rds"] {
            let acked = status["acked"][kind].as_str().unwrap_or("-");
            let nack = match &status["nacked"][kind] {
                serde_json::Value::Object(n) => format!(
                    "  NACKed {}: {}",
                    n.get("version").and_then(|v| v.as_str()).unwrap_or(""),
                    n.get("error").and_then(|v| v.as_str()).unwrap_or("")
                ),
                _ => String::new(),
            };
            writeln!(out, "  {kind}: {acked}{nack}")?;
        }
        write_reported(out, &status["reported"])?;
    }
    Ok(())
}

/// What an Envoy's stats sink reported: when, and each part of the configuration it could
/// not load (`unavailable: provider bad_one`).
fn write_reported(out: &mut dyn Write, reported: &serde_json::Value) -> anyhow::Result<()> {
    if !reported.is_object() {
        writeln!(
            out,
            "  stats: none reported (no metrics_service stats sink to the control plane?)"
        )?;
        return Ok(());
    }
    let live = match reported["live"].as_bool() {
        Some(true) => ", live",
        Some(false) => ", not live",
        None => "",
    };
    writeln!(out, "  stats: reported {}{live}", reported["at"])?;
    for part in reported["unavailable"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  unavailable: {} {}",
            part["kind"].as_str().unwrap_or(""),
            part["name"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}

/// Reads an answer sent with `Connection: close`. A TLS peer that closes without close_notify
/// after a complete answer is no error here: the body's JSON is checked anyway.
fn read_until_closed(stream: &mut dyn Read) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if let Err(error) = stream.read_to_end(&mut bytes) {
        if error.kind() != std::io::ErrorKind::UnexpectedEof || bytes.is_empty() {
            return Err(error.into());
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Runs the HTTP API (and ADS, when asked) until Ctrl-C.
pub(super) fn serve(
    plane: ControlPlane<dyn Store>,
    args: &ServeArgs,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut state = crate::state::ServerState::over(plane, Box::new(|| now().unwrap_or(0)));
    if let Some(replica) = &args.replica_id {
        state = state.with_replica(replica);
    }
    let state = std::sync::Arc::new(state);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let admin = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let scheme = if args.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        writeln!(
            err,
            "tokenward: admin API on {scheme}://{}",
            admin.local_addr()?
        )?;
        let xds = match args.xds_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr}"))?;
                let security = match (&args.tls_cert, &args.xds_client_ca) {
                    (None, _) => "plain gRPC",
                    (Some(_), None) => "TLS, clients not authenticated",
                    (Some(_), Some(_)) => {
                        "mutual TLS, node ids checked against client certificates"
                    }
                };
                writeln!(
                    err,
                    "tokenward: ADS on {} ({security})",
                    listener.local_addr()?
                )?;
                Some(listener)
            }
            None => None,
        };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        crate::server::run_servers(
            state,
            args.snapshot_settings(),
            args.job_settings(),
            admin,
            xds,
            args.tls_files(),
            shutdown,
        )
        .await
    })
}
