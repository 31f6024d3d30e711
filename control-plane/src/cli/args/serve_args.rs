//! `serve`'s flags, and the check that refuses an exposed listener without TLS before anything
//! is opened.

use std::path::PathBuf;

use clap::Args;

use super::parse_pair;

/// A command line clap accepts but tokenward refuses: exit code 2, like clap's own errors.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Exposure(#[from] crate::tls::ExposureError),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address for the HTTP API (admin, token endpoint, JWKS). Beyond loopback it needs
    /// --tls-cert (or --insecure).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Address for ADS (gRPC); without it no xDS is served. Beyond loopback it needs
    /// --tls-cert and --xds-client-ca (or --insecure).
    #[arg(long)]
    pub xds_listen: Option<std::net::SocketAddr>,
    /// The server certificate chain (PEM, leaf first): the admin API and ADS then speak TLS
    /// only. Re-read when the file changes: no restart to rotate.
    #[arg(long, env = "TOKENWARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, env = "TOKENWARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) of the Envoys' client certificates: ADS then requires mutual TLS,
    /// and a stream's node id must be named by its certificate (a URI SAN
    /// spiffe://<trust domain>/node/<id>, or a DNS SAN equal to the id).
    #[arg(long, env = "TOKENWARD_XDS_CLIENT_CA", requires = "tls_cert")]
    pub xds_client_ca: Option<PathBuf>,
    /// Allow plain listeners beyond loopback (and ADS without client certificates): only on
    /// a network where nobody else can listen or connect.
    #[arg(long)]
    pub insecure: bool,
    /// The module's path on the Envoy hosts (must equal the bootstrap's default config).
    #[arg(long, default_value = "dist/tokenward.wasm")]
    pub wasm_path: String,
    /// Environment variables the Wasm VM may read (provider credentials by `env`).
    #[arg(long = "env-key", default_values_t = ["OPENAI_API_KEY".to_string(), "ANTHROPIC_API_KEY".to_string(), "GEMINI_API_KEY".to_string()])]
    pub env_keys: Vec<String>,
    /// Send a cluster to a plain-HTTP address instead of TLS to the provider: `cluster=host:port`.
    #[arg(long = "upstream", value_parser = parse_upstream)]
    pub upstreams: Vec<(String, std::net::SocketAddr)>,
    /// The CA bundle on the Envoy hosts, for TLS to the providers.
    #[arg(long, default_value = "/etc/ssl/certs/ca-certificates.crt")]
    pub ca_bundle: String,
    /// This replica's name in `proxy-status` and in the leases of the jobs it runs (several
    /// replicas over one Postgres database). Default: <host>-<pid>.
    #[arg(long, env = "TOKENWARD_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Rotate the signing key when the newest one is this old (`30d`, `12h`); one replica
    /// does it, under a lease. Without it keys rotate only by `tokenward key rotate`.
    #[arg(long, value_parser = super::units::parse_duration)]
    pub rotate_keys_every: Option<u64>,
    /// Export the usage the filters report as OpenTelemetry GenAI metrics
    /// (`gen_ai.client.token.usage`) to this OTLP/HTTP endpoint (`http://collector:4318`;
    /// `/v1/metrics` is added unless the URL names a path).
    #[arg(long, env = "TOKENWARD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// How often the OTLP export runs (`10s`, `1m`).
    #[arg(long, value_parser = super::units::parse_duration, default_value = "10")]
    pub otlp_interval: u64,
}

impl ServeArgs {
    /// The TLS files, when TLS is configured.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.xds_client_ca.clone(),
        })
    }

    /// Refuses listeners beyond loopback that would be plain (or ADS without client
    /// authentication), unless --insecure.
    pub fn check_exposure(&self) -> Result<(), UsageError> {
        use crate::tls::{check_exposure, Role, Transport};
        let (admin, ads) = match (&self.tls_cert, &self.xds_client_ca) {
            (None, _) => (Transport::Plain, Transport::Plain),
            (Some(_), None) => (Transport::Tls, Transport::Tls),
            (Some(_), Some(_)) => (Transport::Tls, Transport::MutualTls),
        };
        check_exposure(Role::Admin, self.listen, admin, self.insecure)?;
        if let Some(addr) = self.xds_listen {
            check_exposure(Role::Ads, addr, ads, self.insecure)?;
        }
        Ok(())
    }

    pub fn job_settings(&self) -> crate::jobs::JobSettings {
        crate::jobs::JobSettings {
            rotate_every: self.rotate_keys_every.map(std::time::Duration::from_secs),
            otlp: self
                .otlp_endpoint
                .as_ref()
                .map(|endpoint| crate::otlp::OtlpSettings {
                    endpoint: crate::otlp::metrics_url(endpoint),
                    interval: std::time::Duration::from_secs(self.otlp_interval.max(1)),
                }),
        }
    }

    pub fn snapshot_settings(&self) -> crate::xds::snapshot::SnapshotSettings {
        crate::xds::snapshot::SnapshotSettings {
            wasm_path: self.wasm_path.clone(),
            env_keys: self.env_keys.clone(),
            upstream_overrides: self.upstreams.iter().cloned().collect(),
            ca_bundle: self.ca_bundle.clone(),
        }
    }
}

fn parse_upstream(text: &str) -> Result<(String, std::net::SocketAddr), String> {
    let (name, addr) = parse_pair(text)?;
    Ok((
        name,
        addr.parse()
            .map_err(|_| format!("{addr:?}: expected host:port with an IP address"))?,
    ))
}
