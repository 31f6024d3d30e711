//! The `tokenward` command line: arguments → validated settings → one operation of the
//! control plane → output as text or JSON (`-o json`, for scripts). `main` maps errors to exit
//! codes: 0 done, 1 the operation failed, 2 the command line is wrong (clap's own).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokenward_filter::config::{
    LimitConfig, LimitScope, Metric, ModelProvider, ModelSource, PlanConfig, PriceConfig,
    ProviderConfig, ProviderStyle, RouteConfig,
};
use tokenward_filter::window::Window;

use crate::crypto::MasterKey;
use crate::model::Alg;
use crate::plane::{
    ApiKeyRequest, ControlPlane, InitSettings, ProviderSecret, Revocation, TokenRequest,
};
use crate::store::{SqliteStore, Store};

#[derive(Debug, Parser)]
#[command(
    name = "tokenward",
    version,
    about = "tokenward's control plane: keys, tokens, API keys, revocations, providers, routes and plans"
)]
pub struct Cli {
    /// Where the database lives.
    #[arg(
        long,
        env = "TOKENWARD_DATA_DIR",
        default_value = "tokenward-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// A file holding the master key (64 hex characters). Or set TOKENWARD_MASTER_KEY.
    #[arg(long, env = "TOKENWARD_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,
    /// Development mode: without a master key, make one and keep it next to the database.
    /// Anyone who can read the data directory can then read every secret in it.
    #[arg(long, global = true)]
    pub dev: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text", global = true)]
    pub output: Output,
    /// How `serve` writes its log on standard error: text lines, or one JSON object per line.
    #[arg(
        long,
        value_enum,
        env = "TOKENWARD_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: crate::logging::LogFormat,
    /// The least severe log events written.
    #[arg(
        long,
        value_enum,
        env = "TOKENWARD_LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    pub log_level: crate::logging::LogLevel,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database, set the issuer and audiences, and make the first signing key.
    Init {
        #[arg(long)]
        issuer: String,
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        #[arg(long, default_value = "EdDSA", value_parser = parse_alg)]
        alg: Alg,
    },
    /// Signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// JWTs.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Opaque API keys.
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Providers the gateway forwards to.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// Routes: paths, methods, scopes and providers.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Quota plans.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Model prices for cost limits.
    #[command(subcommand)]
    Price(PriceCommand),
    /// The filter's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Numeric settings: max_token_ttl_seconds, clock_skew_seconds, key_overlap_seconds.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The public signing keys as a JWKS document.
    Jwks,
    /// Serve the admin API, the OAuth token endpoint and the JWKS (and ADS with
    /// --xds-listen) until Ctrl-C.
    Serve(ServeArgs),
    /// What each Envoy connected to a running control plane runs: versions ACKed, NACKs
    /// with their error, last seen. Asks the server's admin API.
    ProxyStatus {
        /// The admin API of `tokenward serve` (https:// when it serves TLS).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// A credential with admin:read (or set TOKENWARD_ADMIN_KEY).
        #[arg(long, env = "TOKENWARD_ADMIN_KEY", hide_env_values = true)]
        admin_key: String,
        /// For https: the CA certificates (PEM) to trust for the server's certificate.
        #[arg(
            long,
            env = "TOKENWARD_SERVER_CA",
            default_value = "/etc/ssl/certs/ca-certificates.crt"
        )]
        server_ca: PathBuf,
    },
    /// Certificates for TLS.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// A consistent copy of the database (safe while `serve` runs). Secrets in it stay sealed:
    /// keep the master key, separately, too.
    Backup {
        #[arg(long)]
        out: PathBuf,
    },
    /// The newest audit log entries.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a development CA, a server certificate and an Envoy client certificate per node
    /// id into a directory (keys mode 0600). Files that exist are kept: run it again to add a
    /// node, signed by the same CA. Needs no database.
    DevCerts {
        #[arg(long)]
        out: PathBuf,
        /// An Envoy node to make a client certificate for (its SAN is
        /// spiffe://tokenward/node/<id>).
        #[arg(long = "node-id")]
        node_ids: Vec<String>,
        /// DNS names and IP addresses of the server certificate.
        #[arg(long = "server-name", default_values_t = [crate::tls::dev_certs::SERVER_NAME.to_string(), "localhost".to_string(), "127.0.0.1".to_string()])]
        server_names: Vec<String>,
        /// Lifetime of the server and node certificates, in days (the CA's is ten times it).
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

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

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a new signing key: published now, signing after the overlap.
    Rotate {
        #[arg(long, default_value = "EdDSA", value_parser = parse_alg)]
        alg: Alg,
        /// Seconds between publishing and signing (default: the key_overlap_seconds setting, 600).
        #[arg(long, conflicts_with = "now")]
        overlap: Option<u64>,
        /// Sign with the new key at once (tokens it signs fail on proxies that lack it).
        #[arg(long)]
        now: bool,
    },
    /// Every key and its state.
    List,
    /// Revoke a signing key (compromised): unpublished at once, every token it signed
    /// refused. Rotate a new key in first (`key rotate --now`) if it is the active one.
    Revoke { kid: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a JWT.
    Mint(MintArgs),
    /// Revoke JWTs (and, by subject or tenant, API keys).
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct MintArgs {
    #[arg(long)]
    pub subject: String,
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Model patterns the token may use (`gpt-4o*`); none: no model at all.
    #[arg(long = "model")]
    pub models: Vec<String>,
    #[arg(long)]
    pub plan: Option<String>,
    /// Lifetime in seconds (at most the max_token_ttl_seconds setting, 3600).
    #[arg(long)]
    pub ttl: Option<u64>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    #[arg(long)]
    pub jti: Option<String>,
    #[arg(long)]
    pub subject: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key; it is shown once.
    Create {
        #[arg(long)]
        subject: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long = "model")]
        models: Vec<String>,
        #[arg(long)]
        plan: Option<String>,
        /// Unix seconds after which the key is refused.
        #[arg(long)]
        expires_at: Option<u64>,
    },
    /// Revoke an API key by id.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Add or replace a provider.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_style)]
        style: ProviderStyle,
        /// The Envoy cluster (default: the name).
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        authority: String,
        /// The credential is this environment variable of Envoy's Wasm VM.
        #[arg(long, conflicts_with = "credential_stdin")]
        credential_env: Option<String>,
        /// Read the credential from standard input and keep it sealed in the database.
        #[arg(long, conflicts_with = "credential_file")]
        credential_stdin: bool,
        /// Read the credential from this file and keep it sealed in the database.
        #[arg(long, conflicts_with = "credential_env")]
        credential_file: Option<PathBuf>,
        /// Extra headers for every request to the provider, `name=value`.
        #[arg(long = "header", value_parser = parse_pair)]
        headers: Vec<(String, String)>,
    },
    /// Every provider, where its credential comes from, and whether it can load.
    List {
        /// The variables `tokenward serve --env-key` passes into Envoy's Wasm VM: a provider
        /// reading another one cannot load. Without: such providers are `unknown`.
        #[arg(long = "env-key")]
        env_keys: Vec<String>,
    },
    /// Remove a provider. Refused while a route uses it, unless --force.
    Remove {
        name: String,
        /// Remove the routes that use it too.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Add or replace a route (new routes match after the existing ones).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        path_prefix: String,
        #[arg(long = "method")]
        methods: Vec<String>,
        #[arg(long = "scope")]
        required_scopes: Vec<String>,
        #[arg(long, default_value = "none", value_parser = parse_model_source)]
        model_source: ModelSource,
        #[arg(long)]
        provider: Option<String>,
        /// `pattern=provider`, for routes that choose the provider by model.
        #[arg(long = "model-provider", value_parser = parse_pair)]
        model_providers: Vec<(String, String)>,
        #[arg(long, default_value_t = tokenward_filter::config::default_max_body_bytes())]
        max_body_bytes: u64,
    },
    /// Remove a route.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Add or replace a plan.
    Set {
        name: String,
        /// `name:metric:window:limit[:tenant]`, e.g. `rpm:requests:minute:60`.
        #[arg(long = "limit", value_parser = parse_limit)]
        limits: Vec<LimitConfig>,
        #[arg(long)]
        shadow: bool,
        #[arg(long)]
        clamp_max_tokens: bool,
        #[arg(long, default_value_t = tokenward_filter::config::default_output_tokens())]
        default_output_tokens: u64,
    },
    /// The plan of credentials that name none (`--none` to have no default).
    Default {
        #[arg(required_unless_present = "none")]
        name: Option<String>,
        #[arg(long)]
        none: bool,
    },
    /// Remove a plan (never the default one). Refused while an API key names it, unless
    /// --force.
    Remove {
        name: String,
        /// Revoke the API keys that name it (and the tokens exchanged for them).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PriceCommand {
    /// Add or replace a model's price, in micro-USD per million tokens.
    Set {
        #[arg(long)]
        model: String,
        #[arg(long)]
        input_price: u64,
        #[arg(long)]
        output_price: u64,
        #[arg(long)]
        cached_input_price: Option<u64>,
    },
    /// Remove a model's price (not the last one while a plan counts cost).
    Remove {
        /// The model pattern, as it was set.
        model: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    /// The filter's configuration document.
    Json,
    /// A WasmPlugin on the egress gateway, with a ServiceEntry, DestinationRule and route per provider.
    Istio,
    /// An EnvoyExtensionPolicy on an HTTPRoute, with a Backend and BackendTLSPolicy per provider.
    EnvoyGateway,
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Every setting and its value.
    Show,
    /// Change one.
    Set { name: String, value: u64 },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write the filter's configuration (for a static Envoy config, without the server), or
    /// the Kubernetes manifests that attach it in Istio or Envoy Gateway.
    Render {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "json")]
        format: RenderFormat,
        /// The module as the mesh fetches it (istio, envoy-gateway).
        #[arg(long, default_value = "oci://ghcr.io/tokenward/tokenward:0.1.0")]
        wasm_url: String,
        /// The namespace of the manifests.
        #[arg(long, default_value = "ai-egress")]
        namespace: String,
        /// The host clients call (the egress gateway's or the HTTPRoute's).
        #[arg(long, default_value = "ai-gateway.internal")]
        host: String,
    },
}

fn parse_alg(text: &str) -> Result<Alg, String> {
    Alg::parse(text).ok_or_else(|| format!("{text:?}: use EdDSA or ES256"))
}

fn parse_style(text: &str) -> Result<ProviderStyle, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| format!("{text:?}: use openai, anthropic, gemini or azure_openai"))
}

fn parse_model_source(text: &str) -> Result<ModelSource, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| format!("{text:?}: use none, body or gemini_path"))
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| format!("{text:?}: expected name=value"))
}

fn parse_limit(text: &str) -> Result<LimitConfig, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let usage = || format!("{text:?}: expected name:metric:window:limit[:tenant]");
    let (name, metric, window, limit, per) = match parts.as_slice() {
        [n, m, w, l] => (n, m, w, l, LimitScope::Subject),
        [n, m, w, l, "tenant"] => (n, m, w, l, LimitScope::Tenant),
        [n, m, w, l, "subject"] => (n, m, w, l, LimitScope::Subject),
        _ => return Err(usage()),
    };
    let metric: Metric = serde_json::from_value(serde_json::Value::String(metric.to_string()))
        .map_err(|_| format!("{metric:?}: use requests, input_tokens, output_tokens, total_tokens or cost_micro_usd"))?;
    let window: Window = serde_json::from_value(serde_json::Value::String(window.to_string()))
        .map_err(|_| format!("{window:?}: use minute, hour, day or month"))?;
    Ok(LimitConfig {
        name: name.to_string(),
        metric,
        window,
        limit: limit.parse().map_err(|_| usage())?,
        per,
    })
}

fn now() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs())
}

/// The master key: TOKENWARD_MASTER_KEY, the key file, or (dev mode only) one kept in the
/// data directory. Without one the control plane refuses to start.
fn master_key(cli: &Cli, err: &mut dyn Write) -> anyhow::Result<MasterKey> {
    if let Ok(hex) = std::env::var("TOKENWARD_MASTER_KEY") {
        return MasterKey::from_hex(&hex).context("TOKENWARD_MASTER_KEY");
    }
    if let Some(path) = &cli.master_key_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return MasterKey::from_hex(&text).with_context(|| path.display().to_string());
    }
    if !cli.dev {
        bail!("no master key: set TOKENWARD_MASTER_KEY (64 hex characters) or --master-key-file, or pass --dev for a throwaway setup");
    }
    let path = cli.data_dir.join("dev-master.key");
    writeln!(
        err,
        "WARNING: development mode. The master key is {} next to the database: anyone who can read that directory can read every secret in it. Never use --dev in production.",
        path.display()
    )?;
    if let Ok(text) = std::fs::read_to_string(&path) {
        return MasterKey::from_hex(&text).with_context(|| path.display().to_string());
    }
    let key = MasterKey::generate()?;
    write_private(&path, format!("{}\n", key.to_hex()).as_bytes())?;
    Ok(key)
}

/// Writes a file only its owner can read, also when it existed with looser permissions:
/// written beside it, made private, then moved over it.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path.file_name().context("a file name is needed")?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs one command; `out` gets the result, `err` warnings.
pub fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    if let Command::ProxyStatus {
        server,
        admin_key,
        server_ca,
    } = &cli.command
    {
        return proxy_status(
            server,
            admin_key,
            server_ca,
            cli.output == Output::Json,
            out,
        );
    }
    if let Command::Tls(TlsCommand::DevCerts {
        out: dir,
        node_ids,
        server_names,
        days,
    }) = &cli.command
    {
        let files = crate::tls::dev_certs::write(&crate::tls::dev_certs::DevCertRequest {
            out: dir.clone(),
            node_ids: node_ids.clone(),
            server_names: server_names.clone(),
            days: *days,
        })?;
        if cli.output == Output::Json {
            writeln!(out, "{}", serde_json::to_string_pretty(&files)?)?;
        } else {
            for file in files {
                let what = if file.written { "written" } else { "kept" };
                writeln!(out, "{what}: {}", file.path.display())?;
            }
        }
        return Ok(());
    }
    if let Command::Serve(args) = &cli.command {
        // Before the master key and the database: a wrong command line changes nothing.
        args.check_exposure()?;
    }
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating {}", cli.data_dir.display()))?;
    let master = master_key(cli, err)?;
    let store = SqliteStore::open(&cli.data_dir.join("tokenward.db"))?;
    let plane = ControlPlane::new(store, master, "cli");
    if let Command::Serve(args) = &cli.command {
        return serve(plane, args, err);
    }
    let now = now()?;
    let json = cli.output == Output::Json;
    let print =
        |out: &mut dyn Write, value: serde_json::Value, text: String| -> anyhow::Result<()> {
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                writeln!(out, "{text}")?;
            }
            Ok(())
        };
    match &cli.command {
        Command::Init {
            issuer,
            audiences,
            alg,
        } => {
            let (key, admin) = plane.init(
                &InitSettings {
                    issuer: issuer.clone(),
                    audiences: audiences.clone(),
                    alg: *alg,
                },
                now,
            )?;
            print(
                out,
                serde_json::json!({"issuer": issuer, "audiences": audiences, "kid": key.kid, "admin_key": admin.key, "admin_key_id": admin.id}),
                format!(
                    "initialised: issuer {issuer}, first signing key {}\nadmin API key (shown only now; scopes admin:read admin:write): {}",
                    key.kid, admin.key
                ),
            )?;
        }
        Command::Key(KeyCommand::Rotate {
            alg,
            overlap,
            now: at_once,
        }) => {
            let key = plane.rotate_key(*alg, if *at_once { Some(0) } else { *overlap }, now)?;
            print(
                out,
                serde_json::json!({"kid": key.kid, "activate_at": key.activate_at}),
                format!(
                    "new key {}: published now, signing from {}",
                    key.kid, key.activate_at
                ),
            )?;
        }
        Command::Key(KeyCommand::List) => {
            let keys = plane.key_states(now)?;
            let rows: Vec<_> = keys.iter().map(|(k, s)| serde_json::json!({"kid": k.kid, "alg": k.alg.as_str(), "state": s, "activate_at": k.activate_at, "retired_at": k.retired_at, "publish_until": k.publish_until})).collect();
            let text = keys
                .iter()
                .map(|(k, s)| format!("{}  {}  {:?}", k.kid, k.alg.as_str(), s))
                .collect::<Vec<_>>()
                .join("\n");
            print(out, serde_json::Value::Array(rows), text)?;
        }
        Command::Key(KeyCommand::Revoke { kid }) => {
            plane.revoke(&Revocation::Key(kid.clone()), now)?;
            print(
                out,
                serde_json::json!({"revoked": kid}),
                format!("signing key {kid} revoked"),
            )?;
        }
        Command::Token(TokenCommand::Mint(args)) => {
            let minted = plane.mint_token(
                &TokenRequest {
                    subject: args.subject.clone(),
                    tenant: args.tenant.clone(),
                    scopes: args.scopes.clone(),
                    models: (!args.models.is_empty()).then(|| args.models.clone()),
                    plan: args.plan.clone(),
                    ttl_seconds: args.ttl,
                },
                now,
            )?;
            print(out, serde_json::to_value(&minted)?, minted.token.clone())?;
        }
        Command::Token(TokenCommand::Revoke(args)) => {
            let what = match (&args.jti, &args.subject, &args.tenant) {
                (Some(jti), _, _) => Revocation::Jti {
                    jti: jti.clone(),
                    expires_at: None,
                },
                (_, Some(subject), _) => Revocation::Subject(subject.clone()),
                (_, _, Some(tenant)) => Revocation::Tenant(tenant.clone()),
                _ => bail!("name what to revoke: --jti, --subject or --tenant"),
            };
            let count = plane.revoke(&what, now)?;
            print(out, serde_json::json!({"revoked": count}), format!("revoked ({count} credentials reached); push or render the configuration to take effect"))?;
        }
        Command::Apikey(ApiKeyCommand::Create {
            subject,
            tenant,
            scopes,
            models,
            plan,
            expires_at,
        }) => {
            let created = plane.create_api_key(
                &ApiKeyRequest {
                    subject: subject.clone(),
                    tenant: tenant.clone(),
                    scopes: scopes.clone(),
                    models: models.clone(),
                    plan: plan.clone(),
                    expires_at: *expires_at,
                },
                now,
            )?;
            print(
                out,
                serde_json::json!({"id": created.id, "key": created.key}),
                format!(
                    "{}\n(id {}; the key is shown only now)",
                    created.key, created.id
                ),
            )?;
        }
        Command::Apikey(ApiKeyCommand::Revoke { id }) => {
            plane.revoke(&Revocation::ApiKey(id.clone()), now)?;
            print(
                out,
                serde_json::json!({"revoked": id}),
                format!("revoked {id}"),
            )?;
        }
        Command::Provider(ProviderCommand::Add {
            name,
            style,
            cluster,
            authority,
            credential_env,
            credential_stdin,
            credential_file,
            headers,
        }) => {
            let secret = match (credential_env, credential_stdin, credential_file) {
                (Some(var), _, _) => ProviderSecret::Env(var.clone()),
                (None, true, _) => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text)?;
                    ProviderSecret::Sealed(text.trim().to_string())
                }
                (None, false, Some(path)) => ProviderSecret::Sealed(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?
                        .trim()
                        .to_string(),
                ),
                (None, false, None) => bail!(
                    "give the credential: --credential-env VAR, --credential-file PATH or --credential-stdin"
                ),
            };
            let provider = ProviderConfig {
                name: name.clone(),
                style: *style,
                cluster: cluster.clone().unwrap_or_else(|| name.clone()),
                authority: authority.clone(),
                credential: tokenward_filter::config::CredentialSource::Env(String::new()),
                headers: headers.iter().cloned().collect(),
            };
            plane.put_provider(provider, secret, now)?;
            print(
                out,
                serde_json::json!({"provider": name}),
                format!("provider {name} saved"),
            )?;
        }
        Command::Route(RouteCommand::Add {
            name,
            path_prefix,
            methods,
            required_scopes,
            model_source,
            provider,
            model_providers,
            max_body_bytes,
        }) => {
            let route = RouteConfig {
                name: name.clone(),
                path_prefix: path_prefix.clone(),
                methods: methods.clone(),
                required_scopes: required_scopes.clone(),
                model_source: *model_source,
                provider: provider.clone(),
                model_providers: model_providers
                    .iter()
                    .map(|(pattern, provider)| ModelProvider {
                        pattern: pattern.clone(),
                        provider: provider.clone(),
                    })
                    .collect(),
                max_body_bytes: *max_body_bytes,
                allow_query_credential: false,
            };
            plane.put_route(route, now)?;
            print(
                out,
                serde_json::json!({"route": name}),
                format!("route {name} saved"),
            )?;
        }
        Command::Plan(PlanCommand::Set {
            name,
            limits,
            shadow,
            clamp_max_tokens,
            default_output_tokens,
        }) => {
            plane.put_plan(
                name,
                PlanConfig {
                    limits: limits.clone(),
                    shadow: *shadow,
                    clamp_max_tokens: *clamp_max_tokens,
                    default_output_tokens: *default_output_tokens,
                },
                now,
            )?;
            print(
                out,
                serde_json::json!({"plan": name}),
                format!("plan {name} saved"),
            )?;
        }
        Command::Plan(PlanCommand::Default { name, none }) => {
            let name = if *none { None } else { name.as_deref() };
            plane.set_default_plan(name, now)?;
            print(
                out,
                serde_json::json!({"default_plan": name}),
                format!("default plan: {}", name.unwrap_or("none")),
            )?;
        }
        Command::Price(PriceCommand::Set {
            model,
            input_price,
            output_price,
            cached_input_price,
        }) => {
            plane.put_price(
                PriceConfig {
                    model: model.clone(),
                    input: *input_price,
                    output: *output_price,
                    cached_input: *cached_input_price,
                },
                now,
            )?;
            print(
                out,
                serde_json::json!({"price": model}),
                format!("price for {model} saved"),
            )?;
        }
        Command::Provider(ProviderCommand::List { env_keys }) => {
            let stored = plane.store().providers()?;
            let configs: Vec<ProviderConfig> = stored.iter().map(|p| p.config.clone()).collect();
            let keys = (!env_keys.is_empty()).then_some(env_keys.as_slice());
            let availability = crate::model::provider_availability(&configs, keys, &[]);
            let mut rows = Vec::new();
            let mut lines = Vec::new();
            for (provider, (_, availability)) in stored.iter().zip(availability) {
                let credential = match (&provider.config.credential, &provider.credential_sealed) {
                    (tokenward_filter::config::CredentialSource::Env(var), None) => {
                        format!("env {var}")
                    }
                    _ => "sealed".to_string(),
                };
                let mut row = serde_json::json!({
                    "name": provider.config.name,
                    "authority": provider.config.authority,
                    "credential": credential,
                });
                if let (Some(map), serde_json::Value::Object(status)) =
                    (row.as_object_mut(), serde_json::to_value(&availability)?)
                {
                    map.extend(status);
                }
                let status = row["status"].as_str().unwrap_or("").to_string();
                let mut line = format!(
                    "{}  {}  {credential}  {status}",
                    provider.config.name, provider.config.authority
                );
                if let Some(reason) = row["reason"].as_str() {
                    line.push_str(&format!(": {reason}"));
                }
                lines.push(line);
                rows.push(row);
            }
            print(out, serde_json::Value::Array(rows), lines.join("\n"))?;
        }
        Command::Provider(ProviderCommand::Remove { name, force }) => {
            let gone = plane.remove_provider(name, *force, now)?;
            print_removal(out, json, "provider", name, &gone)?;
        }
        Command::Route(RouteCommand::Remove { name }) => {
            let gone = plane.remove_route(name, now)?;
            print_removal(out, json, "route", name, &gone)?;
        }
        Command::Plan(PlanCommand::Remove { name, force }) => {
            let gone = plane.remove_plan(name, *force, now)?;
            print_removal(out, json, "plan", name, &gone)?;
        }
        Command::Price(PriceCommand::Remove { model }) => {
            let gone = plane.remove_price(model, now)?;
            print_removal(out, json, "price", model, &gone)?;
        }
        Command::Config(ConfigCommand::Render {
            out: path,
            format,
            wasm_url,
            namespace,
            host,
        }) => {
            let config = plane.render(now)?;
            let mesh = crate::mesh::MeshSettings {
                wasm_url: wasm_url.clone(),
                namespace: namespace.clone(),
                host: host.clone(),
            };
            let document = match format {
                RenderFormat::Json => serde_json::to_value(&config)?,
                RenderFormat::Istio => crate::mesh::istio(&config, &mesh),
                RenderFormat::EnvoyGateway => crate::mesh::envoy_gateway(&config, &mesh),
            };
            let text = serde_json::to_string_pretty(&document)?;
            match path {
                // A rendered config may hold sealed provider credentials in clear.
                Some(path) => {
                    write_private(path, format!("{text}\n").as_bytes())?;
                    print(
                        out,
                        serde_json::json!({"version": config.version, "path": path}),
                        format!(
                            "configuration {} written to {}",
                            config.version.as_deref().unwrap_or(""),
                            path.display()
                        ),
                    )?;
                }
                None => writeln!(out, "{text}")?,
            }
        }
        Command::Serve(_) | Command::ProxyStatus { .. } | Command::Tls(_) => {}
        Command::Settings(SettingsCommand::Show) => {
            let settings = plane.settings()?;
            let map: serde_json::Map<String, serde_json::Value> = settings
                .iter()
                .map(|(n, v)| (n.to_string(), serde_json::Value::from(*v)))
                .collect();
            let text = settings
                .iter()
                .map(|(n, v)| format!("{n} = {v}"))
                .collect::<Vec<_>>()
                .join("\n");
            print(out, serde_json::Value::Object(map), text)?;
        }
        Command::Settings(SettingsCommand::Set { name, value }) => {
            plane.set_setting(name, *value, now)?;
            print(
                out,
                serde_json::json!({ name.as_str(): value }),
                format!("{name} = {value}"),
            )?;
        }
        Command::Backup { out: path } => {
            if path.exists() {
                bail!("{} exists: choose a new file", path.display());
            }
            plane.store().backup(path)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            print(
                out,
                serde_json::json!({"backup": path}),
                format!("database copied to {}", path.display()),
            )?;
        }
        Command::Jwks => {
            writeln!(out, "{}", serde_json::to_string_pretty(&plane.jwks(now)?)?)?;
        }
        Command::Audit { limit } => {
            let entries = plane.store().audit_log(*limit)?;
            let text = entries
                .iter()
                .map(|e| {
                    format!(
                        "{}  {}  {}  {}  {}",
                        e.at, e.actor, e.action, e.target, e.detail
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(out, serde_json::to_value(&entries)?, text)?;
        }
    }
    Ok(())
}

/// What a removal prints: the entry, and what a forced one took with it.
fn print_removal(
    out: &mut dyn Write,
    json: bool,
    kind: &str,
    name: &str,
    gone: &crate::plane::Removed,
) -> anyhow::Result<()> {
    if json {
        let value = serde_json::json!({
            "removed": {"kind": kind, "name": name},
            "routes": gone.routes,
            "revoked_api_keys": gone.revoked_api_keys,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let mut text = format!("{kind} {name} removed");
    if !gone.routes.is_empty() {
        text.push_str(&format!(", with routes {}", gone.routes.join(", ")));
    }
    if !gone.revoked_api_keys.is_empty() {
        text.push_str(&format!(
            ", API keys revoked: {}",
            gone.revoked_api_keys.join(", ")
        ));
    }
    writeln!(out, "{text}")?;
    Ok(())
}

/// `proxy-status`: GET /admin/v1/proxies from a running server, over plain HTTP/1.1 or, for an
/// https:// server, TLS trusting `server_ca` (a hand-written request: one GET needs no client
/// library).
fn proxy_status(
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
fn serve(
    plane: ControlPlane<SqliteStore>,
    args: &ServeArgs,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let state = std::sync::Arc::new(crate::state::ServerState::new(
        plane,
        Box::new(|| now().unwrap_or(0)),
    ));
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
            admin,
            xds,
            args.tls_files(),
            shutdown,
        )
        .await
    })
}

#[cfg(test)]
mod tests;
