//! TLS for the control plane's two listeners, on rustls with ring: the admin API (a server
//! certificate) and ADS (a server certificate and, with a client CA, mutual TLS whose client
//! certificate must name the node a stream claims: `identity`). This module owns loading the
//! PEM files (re-read when they change, so certificates rotate without a restart), the
//! handshakes (off the accept loop, bounded in time and number) and the rule of which listener
//! may be plain (`check_exposure`). What runs over the connections is `admin`'s and `xds`'s.

pub mod dev_certs;
pub mod identity;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use identity::CertName;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("the TLS configuration is refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client CA is refused: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
    #[error("a certificate cannot be parsed: {0}")]
    Certificate(String),
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The PEM files a listener serves with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// ADS only: the CA certificates that sign the Envoys' client certificates. With it, every
    /// client must present one.
    pub client_ca: Option<PathBuf>,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    /// A server certificate; clients are not authenticated by TLS.
    Tls,
    /// A server certificate, and a client certificate from the client CA is required.
    MutualTls,
}

/// The control plane's two listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Ads,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExposureError {
    #[error("the admin API on {0} would be plain HTTP beyond loopback, carrying admin credentials in clear: give --tls-cert and --tls-key, listen on 127.0.0.1, or pass --insecure if the network is trusted")]
    PlainAdmin(SocketAddr),
    #[error("ADS on {0} would be plain gRPC beyond loopback, and it carries provider credentials: give --tls-cert, --tls-key and --xds-client-ca, listen on 127.0.0.1, or pass --insecure if the network is trusted")]
    PlainAds(SocketAddr),
    #[error("ADS on {0} has TLS but no client authentication: anyone who reaches it gets the provider credentials. Give --xds-client-ca (the CA of the Envoys' client certificates), listen on 127.0.0.1, or pass --insecure if the network is trusted")]
    UnauthenticatedAds(SocketAddr),
}

/// Whether `role` may listen on `addr` with `transport`. Loopback is always allowed (only this
/// host can connect); beyond it the admin API needs TLS and ADS mutual TLS, since it hands
/// every client the provider credentials. `--insecure` lifts the rule for a trusted network.
pub fn check_exposure(
    role: Role,
    addr: SocketAddr,
    transport: Transport,
    insecure: bool,
) -> Result<(), ExposureError> {
    if insecure || addr.ip().is_loopback() {
        return Ok(());
    }
    match (role, transport) {
        (Role::Admin, Transport::Plain) => Err(ExposureError::PlainAdmin(addr)),
        (Role::Admin, Transport::Tls | Transport::MutualTls) => Ok(()),
        (Role::Ads, Transport::Plain) => Err(ExposureError::PlainAds(addr)),
        (Role::Ads, Transport::Tls) => Err(ExposureError::UnauthenticatedAds(addr)),
        (Role::Ads, Transport::MutualTls) => Ok(()),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file; none is an error.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |e: rustls_pki_types::pem::Error| TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            reason: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        reason: format!("no private key read: {e}"),
    })
}

/// A root store of every certificate in a PEM file.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    // A system bundle may hold a certificate webpki cannot use; the others still count.
    let (added, _) = roots.add_parsable_certificates(read_certificates(path)?);
    if added == 0 {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            reason: "no usable CA certificate in it".into(),
        });
    }
    Ok(roots)
}

fn load_server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(ca)?), provider())
                .build()?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(read_certificates(&files.cert)?, read_key(&files.key)?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// What identifies a file's content without reading it: a rotation (rewritten, or a new file
/// renamed or symlinked into place, as Kubernetes does with mounted secrets) changes it.
type FileStamp = Vec<Option<(std::time::SystemTime, u64, u64)>>;

fn stamp(files: &TlsFiles) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len(), meta.ino()))
    })
    .collect()
}

struct Loaded {
    config: Arc<ServerConfig>,
    stamp: FileStamp,
    checked: Instant,
}

/// A listener's server configuration, read again from its files when they change (looked at
/// on a new connection, at most once per `check_interval`). A new set that does not load
/// (a key written before its certificate, say) is logged and the previous one kept.
pub struct ServerTls {
    files: TlsFiles,
    alpn: &'static [&'static [u8]],
    what: &'static str,
    check_interval: Duration,
    loaded: Mutex<Loaded>,
}

impl ServerTls {
    pub fn load(
        files: TlsFiles,
        alpn: &'static [&'static [u8]],
        what: &'static str,
    ) -> Result<ServerTls, TlsError> {
        let config = Arc::new(load_server_config(&files, alpn)?);
        Ok(ServerTls {
            loaded: Mutex::new(Loaded {
                config,
                stamp: stamp(&files),
                checked: Instant::now(),
            }),
            files,
            alpn,
            what,
            check_interval: Duration::from_secs(1),
        })
    }

    /// How often the files are looked at (tests rotate without waiting).
    pub fn with_check_interval(mut self, interval: Duration) -> ServerTls {
        self.check_interval = interval;
        self
    }

    pub fn transport(&self) -> Transport {
        if self.files.client_ca.is_some() {
            Transport::MutualTls
        } else {
            Transport::Tls
        }
    }

    fn current(&self) -> Arc<ServerConfig> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.checked.elapsed() >= self.check_interval {
            loaded.checked = Instant::now();
            let now = stamp(&self.files);
            if now != loaded.stamp {
                loaded.stamp = now;
                match load_server_config(&self.files, self.alpn) {
                    Ok(config) => {
                        tracing::info!(
                            server = self.what,
                            cert = %self.files.cert.display(),
                            "TLS certificates reloaded"
                        );
                        loaded.config = Arc::new(config);
                    }
                    Err(error) => tracing::warn!(
                        server = self.what,
                        %error,
                        "keeping the previous TLS certificates"
                    ),
                }
            }
        }
        Arc::clone(&loaded.config)
    }
}

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; more wait for a slot, so a flood of idle connections costs
/// bounded memory and cannot starve the accept loop of tasks.
const MAX_HANDSHAKES: usize = 256;

/// The client of a TLS connection: its address and, when it presented a certificate (which
/// rustls then verified against the client CA), the names in it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub client_names: Option<Arc<Vec<CertName>>>,
}

/// A connection past its handshake.
pub struct Accepted {
    stream: TlsStream<TcpStream>,
    peer: PeerInfo,
}

/// Stops the accept loop (and so closes the listening socket) when its listener is dropped.
struct AcceptLoop(tokio::task::JoinHandle<()>);

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn spawn_accept_loop(
    listener: TcpListener,
    tls: Arc<ServerTls>,
) -> (mpsc::Receiver<Accepted>, AcceptLoop) {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let task = tokio::spawn(async move {
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (tcp, addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(server = tls.what, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = TlsAcceptor::from(tls.current());
            let (tx, what) = (tx.clone(), tls.what);
            tokio::spawn(async move {
                let _slot = slot;
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        // rustls' reasons name no secret: a wrong CA, no client certificate.
                        Ok(Err(error)) => {
                            tracing::info!(server = what, %addr, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                let client_names = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| {
                        // A verified certificate that x509-parser cannot read names no node.
                        Arc::new(identity::cert_names(leaf).unwrap_or_default())
                    });
                let _ = tx
                    .send(Accepted {
                        stream,
                        peer: PeerInfo { addr, client_names },
                    })
                    .await;
            });
        }
    });
    (rx, AcceptLoop(task))
}

/// The admin API's listener for axum: TLS connections, handshaken off the accept loop.
pub struct TlsListener {
    accepted: mpsc::Receiver<Accepted>,
    local: SocketAddr,
    _accept_loop: AcceptLoop,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: ServerTls) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (accepted, accept_loop) = spawn_accept_loop(listener, Arc::new(tls));
        Ok(TlsListener {
            accepted,
            local,
            _accept_loop: accept_loop,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => (accepted.stream, accepted.peer.addr),
            // The accept loop ends only with this listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// ADS's incoming connections for tonic: TLS connections carrying their `PeerInfo`, which
/// tonic puts into every request's extensions.
pub struct TlsIncoming {
    accepted: mpsc::Receiver<Accepted>,
    _accept_loop: AcceptLoop,
}

impl TlsIncoming {
    pub fn new(listener: TcpListener, tls: ServerTls) -> TlsIncoming {
        let (accepted, accept_loop) = spawn_accept_loop(listener, Arc::new(tls));
        TlsIncoming {
            accepted,
            _accept_loop: accept_loop,
        }
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = Result<TlsConnection, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.accepted
            .poll_recv(cx)
            .map(|accepted| accepted.map(|a| Ok(TlsConnection(a))))
    }
}

/// One ADS connection.
pub struct TlsConnection(Accepted);

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.0.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.stream.is_write_vectored()
    }
}

/// ALPN of each listener: the admin API is HTTP/1.1 only (axum without http2), ADS is gRPC.
pub const ADMIN_ALPN: &[&[u8]] = &[b"http/1.1"];
pub const ADS_ALPN: &[&[u8]] = &[b"h2"];

/// A rustls client configuration trusting the certificates of a PEM file (`proxy-status`).
pub fn client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(read_roots(ca)?)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests;
