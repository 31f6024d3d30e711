//! A client as users have one: HTTP requests through Envoy (and HTTPS to the control plane),
//! with raw header bytes (for the non-UTF-8 and repeated-header cases), bytes written to the
//! socket as given (for what no HTTP client sends), and the reply as the user sees it.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The `error.code` of an OpenAI-shaped error body.
    /// tokenward's error code, in whichever provider's shape the error came: OpenAI's and
    /// Anthropic's `error.code`, or Google's `ErrorInfo` reason (its `error.code` is the
    /// HTTP status).
    pub fn error_code(&self) -> Option<String> {
        let json = self.json();
        json.pointer("/error/code")
            .and_then(Value::as_str)
            .or_else(|| {
                json.pointer("/error/details/0/reason")
                    .and_then(Value::as_str)
            })
            .map(str::to_string)
    }
}

/// reqwest is built without a TLS provider of its own (tests/Cargo.toml): ring, installed
/// once for the process, as the control plane uses it.
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client() -> Client {
    client_with(Client::builder())
}

/// A client built from `builder` (the caller's redirect policy, say), TLS on ring.
pub fn client_with(builder: reqwest::blocking::ClientBuilder) -> Client {
    install_ring();
    builder
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("cannot build an HTTP client: {e}");
            std::process::exit(2)
        })
}

/// A client whose connections come from `source`, a loopback address other than 127.0.0.1
/// (Linux routes all of 127/8 to loopback): a second client as Envoy sees it.
pub fn client_from(source: std::net::IpAddr) -> Client {
    install_ring();
    Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .local_address(source)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("cannot build an HTTP client: {e}");
            std::process::exit(2)
        })
}

/// A client for https:// URLs whose server certificate comes from the CA in `ca` (PEM) —
/// the control plane's admin API under a CA the test made.
pub fn tls_client(ca: &Path) -> anyhow::Result<Client> {
    install_ring();
    let config = tokenward_control_plane::tls::client_config(ca)?;
    Ok(Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .tls_backend_preconfigured(config)
        .build()?)
}

/// Sends a request with raw header values (appended, so repeats are kept).
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &[u8])],
    body: Option<&str>,
) -> anyhow::Result<Reply> {
    send_with(&client(), method, url, headers, body)
}

/// `send` with a given client.
pub fn send_with(
    client: &Client,
    method: &str,
    url: &str,
    headers: &[(&str, &[u8])],
    body: Option<&str>,
) -> anyhow::Result<Reply> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_bytes(value)?,
        );
    }
    let mut request = client.request(method.parse()?, url).headers(map);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send()?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response.text()?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

/// Writes `request` to the socket exactly as given — a NUL in a header, a path that is not
/// UTF-8, 60 KB of headers: what an HTTP client library refuses to send — and reads the
/// HTTP/1.1 reply (a `content-length` body, as Envoy's local replies have).
pub fn send_raw(port: u16, request: &[u8]) -> anyhow::Result<Reply> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // Envoy may answer and close before it has read all of an oversized request.
    let _ = stream.write_all(request);
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(reply) = parse_reply(&received)? {
            return Ok(reply);
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            // A reset after the reply was written: what arrived is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e.into()),
        }
    }
    parse_reply(&received)?.ok_or_else(|| {
        anyhow::anyhow!(
            "the connection closed before a whole reply: {:?}",
            String::from_utf8_lossy(&received)
        )
    })
}

/// A whole reply from `bytes`, or `None` while part of it is missing.
fn parse_reply(bytes: &[u8]) -> anyhow::Result<Option<Reply>> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP status line: {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body = &bytes[end + 4..];
    if body.len() < length {
        return Ok(None);
    }
    Ok(Some(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body[..length]).into_owned(),
    }))
}
