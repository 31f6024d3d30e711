//! Calls the control plane makes itself: budget-alert webhooks and OTLP metrics. One POST of
//! a body over HTTP/1.1 with a timeout; `https://` is verified against the system's CA bundle
//! (`SSL_CERT_FILE`, else Debian's `/etc/ssl/certs/ca-certificates.crt`). Errors name the
//! host, never a header value (a webhook's signature, a collector's token).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("{0} is not an http:// or https:// URL with a host")]
    Url(String),
    #[error("{host}: {reason}")]
    Call { host: String, reason: String },
    #[error("{0}: no answer within the timeout")]
    Timeout(String),
}

/// The parts of an `http(s)://host[:port][/path]` URL a call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path and query, `/` at least.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, OutboundError> {
        let bad = || OutboundError::Url(url.to_string());
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            // Credentials in a URL end up in logs: not taken.
            return Err(bad());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host, port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Target {
            tls,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    fn authority(&self) -> String {
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => self.host.clone(),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// The roots `https://` calls are verified against.
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let bundle = std::env::var("SSL_CERT_FILE")
        .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".to_string());
    let roots = crate::tls::read_roots(Path::new(&bundle)).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// POSTs `body` to `url` with `headers` (and `content-type`); the answer's status.
pub async fn post(
    url: &str,
    content_type: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<u16, OutboundError> {
    let target = Target::parse(url)?;
    let host = target.host.clone();
    match tokio::time::timeout(timeout, call(&target, content_type, headers, body)).await {
        Ok(result) => result.map_err(|reason| OutboundError::Call { host, reason }),
        Err(_) => Err(OutboundError::Timeout(host)),
    }
}

async fn call(
    target: &Target,
    content_type: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<u16, String> {
    let mut request = hyper::Request::post(target.path.as_str())
        .header("host", target.authority())
        .header("content-type", content_type)
        .header(
            "user-agent",
            concat!("tokenward/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("the request could not be made: {e}"))?;
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if target.tls {
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| format!("not a server name: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(client_config()?);
        let stream = connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(stream), request).await
    }
}

async fn send<IO>(io: IO, request: hyper::Request<Full<Bytes>>) -> Result<u16, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    drop(response);
    driver.abort();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_with_their_default_ports_and_credentials_are_refused() {
        let t = Target::parse("https://hooks.example.com/tokenward?x=1").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (true, "hooks.example.com", 443, "/tokenward?x=1")
        );
        let t = Target::parse("http://127.0.0.1:4318").unwrap();
        assert_eq!((t.port, t.path.as_str()), (4318, "/"));
        let t = Target::parse("http://[::1]:9000/v1/metrics").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("https://user:pw@x.example").is_err());
        assert!(Target::parse("http://x:notaport/").is_err());
    }
}
