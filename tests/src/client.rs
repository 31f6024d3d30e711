//! A client as users have one: HTTP requests through Envoy (and HTTPS to the control plane),
//! with raw header bytes (for the non-UTF-8 and repeated-header cases), and the reply as the
//! user sees it.

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
    pub fn error_code(&self) -> Option<String> {
        self.json()
            .pointer("/error/code")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// reqwest is built without a TLS provider of its own (tests/Cargo.toml): ring, installed
/// once for the process, as the control plane uses it.
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client() -> Client {
    install_ring();
    Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
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
