//! The command line's shape: every command, flag and value, as clap reads them, with the
//! parsers of the values clap cannot read by itself.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokenward_filter::config::{LimitConfig, LimitScope, Metric, ModelSource, ProviderStyle};
use tokenward_filter::window::Window;

use crate::model::Alg;

pub use serve_args::{ServeArgs, UsageError};
use units::{parse_duration, parse_price, parse_time};

mod serve_args;
mod units;

#[derive(Debug, Parser)]
#[command(
    name = "tokenward",
    version,
    about = "tokenward's control plane: keys, tokens, API keys, revocations, providers, routes and plans"
)]
pub struct Cli {
    /// Where the database lives (SQLite, `tokenward.db` in it), unless --database names one.
    #[arg(
        long,
        env = "TOKENWARD_DATA_DIR",
        default_value = "tokenward-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// The database: `postgres://user@host/db` (several replicas over one database) or
    /// `sqlite://<file>`. Without it, SQLite in --data-dir.
    #[arg(
        long,
        env = "TOKENWARD_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database: Option<String>,
    /// CA certificates (PEM) that verify the Postgres server's TLS certificate (the system's
    /// roots otherwise; `sslmode=disable` in the URL turns TLS off).
    #[arg(long, env = "TOKENWARD_DATABASE_CA", global = true)]
    pub database_ca: Option<PathBuf>,
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
    /// `usage` only: the ledger as CSV.
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database, set the issuer and audiences, and make the first signing key.
    Init {
        /// The token issuer (`iss`) the gateway accepts, e.g. https://tokens.example.com.
        #[arg(long)]
        issuer: String,
        /// An audience (`aud`) the gateway accepts; repeat for several.
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// The first signing key's algorithm: EdDSA (Ed25519) or ES256 (P-256).
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
    /// Numeric settings: max_token_ttl_seconds, clock_skew_seconds, key_overlap_seconds,
    /// usage_retention_days.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The public signing keys as a JWKS document.
    Jwks,
    /// Proxy credentials: what a filter calls the sync channel with (scope tokenward:sync
    /// only; never pushed to the filters).
    #[command(subcommand)]
    ProxyCredential(ProxyCredentialCommand),
    /// The sync channel the pushed configuration names (usage reports from pushed and
    /// static mode; pull mode names it in its bootstrap).
    #[command(subcommand)]
    Sync(SyncCommand),
    /// The failed-authentication guard every filter applies (docs/guard.md): on by default,
    /// 20 failures per address or credential in 60 s block it for 300 s.
    #[command(subcommand)]
    Guard(GuardCommand),
    /// Usage the filters reported, per hour, subject, tenant, plan, credential, provider and
    /// model.
    Usage {
        /// From this time (2027-01-01, an RFC 3339 time or Unix seconds); the last 24 hours
        /// when absent.
        #[arg(long, value_parser = parse_time)]
        since: Option<u64>,
        /// Only this subject's usage.
        #[arg(long)]
        subject: Option<String>,
        /// Only this tenant's usage.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this API key's (by id) or token's (by jti) usage.
        #[arg(long)]
        credential: Option<String>,
        /// Only this model's usage.
        #[arg(long)]
        model: Option<String>,
        /// Only this provider's usage.
        #[arg(long)]
        provider: Option<String>,
        /// Sum over the hours per subject, tenant, credential, model or provider (largest
        /// cost first) instead of one line per hour and key.
        #[arg(long, value_enum)]
        by: Option<crate::plane::UsageGroup>,
    },
    /// Fleet-wide quotas: what is left of a subject's or tenant's limits now.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Budget alerts: thresholds per plan limit, fired once per window to a webhook (signed)
    /// and into the audit log.
    #[command(subcommand)]
    Alert(AlertCommand),
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
        /// The new file (it must not exist yet); written with mode 0600.
        #[arg(long)]
        out: PathBuf,
    },
    /// What is revoked: token ids (and until when they are kept), subjects, signing keys.
    Revocations,
    /// Bring the database's schema up to this binary's and exit (`serve` and every command
    /// do it too; run it before a rollout to migrate once, ahead of the replicas). A database
    /// newer than the binary is refused.
    Migrate,
    /// Copy an installation from one store to another, e.g. from SQLite to Postgres: every
    /// key, credential, revocation, provider, route, plan, price and audit entry, secrets
    /// still sealed (keep the same master key). The target must never have been initialised.
    MigrateStore {
        /// The store to copy from: `sqlite://<file>` or `postgres://…`.
        #[arg(long)]
        from: String,
        /// The store to copy into: `postgres://…` or `sqlite://<file>`.
        #[arg(long)]
        to: String,
    },
    /// The newest audit log entries.
    Audit {
        /// How many entries, newest first.
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
        /// The directory to write into (created if needed).
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

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a new signing key: published now, signing after the overlap.
    Rotate {
        /// The new key's algorithm: EdDSA (Ed25519) or ES256 (P-256).
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
    /// One minted token, by id.
    Show { jti: String },
    /// Minted tokens still accepted, newest first.
    List {
        /// Only this subject's.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Lift a subject's revocation (audited), or its suspension after a spend spike: its
    /// credentials work again; API keys revoked one by one (or with `token revoke --subject`)
    /// stay revoked.
    Unrevoke {
        /// The subject whose revocation is lifted.
        #[arg(long)]
        subject: String,
    },
}

#[derive(Debug, Args)]
pub struct MintArgs {
    /// Who the token stands for (`sub`).
    #[arg(long)]
    pub subject: String,
    /// The tenant it belongs to; tenant limits and revocations apply to it.
    #[arg(long)]
    pub tenant: Option<String>,
    /// A scope it carries (`chat`, `embeddings`, `models`, …); repeat for several.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Model patterns the token may use (`gpt-4o*`); none: no model at all.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// The quota plan it is counted under (default: the default plan).
    #[arg(long)]
    pub plan: Option<String>,
    /// Lifetime: 600, 10m, 1h (at most the max_token_ttl_seconds setting, 3600 s).
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<u64>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    /// Revoke one token by its id (`jti`).
    #[arg(long)]
    pub jti: Option<String>,
    /// Revoke every credential of this subject, now and later (undo: `token unrevoke`).
    #[arg(long)]
    pub subject: Option<String>,
    /// Revoke every credential of this tenant that exists now.
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key; it is shown once.
    Create {
        /// Who the key stands for.
        #[arg(long)]
        subject: String,
        /// The tenant it belongs to; tenant limits and revocations apply to it.
        #[arg(long)]
        tenant: Option<String>,
        /// A scope it carries (`chat`, `admin:read`, `admin:write`, …); repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A model pattern it may use (`gpt-4o*`); repeat for several; none: no model at all.
        #[arg(long = "model")]
        models: Vec<String>,
        /// The quota plan it is counted under (default: the default plan).
        #[arg(long)]
        plan: Option<String>,
        /// When the key stops working: 2027-01-01 (midnight UTC), 2027-01-01T12:00:00Z, an
        /// RFC 3339 time with an offset, or Unix seconds.
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<u64>,
    },
    /// Revoke an API key by id.
    Revoke { id: String },
    /// One API key, by id (never the key or its hash).
    Show { id: String },
    /// API keys (never the keys or their hashes), with their status: active, expired, revoked.
    List {
        /// Only this subject's.
        #[arg(long)]
        subject: Option<String>,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// One provider and its status.
    Show { name: String },
    /// Add or replace a provider.
    Add {
        /// The provider's name, which routes refer to.
        #[arg(long)]
        name: String,
        /// Its API style: openai, azure_openai, anthropic or gemini (credential header and formats).
        #[arg(long, value_parser = parse_style)]
        style: ProviderStyle,
        /// The Envoy cluster (default: the name).
        #[arg(long)]
        cluster: Option<String>,
        /// The provider's host (and port), e.g. api.openai.com: the :authority of forwarded requests.
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
    /// Every route, in the order they match.
    List,
    /// One route.
    Show { name: String },
    /// Add or replace a route (new routes match after the existing ones).
    Add {
        /// The route's name.
        #[arg(long)]
        name: String,
        /// The path prefix it matches, e.g. /v1/chat/completions.
        #[arg(long)]
        path_prefix: String,
        /// A method it matches (POST, GET, …); repeat for several; none: every method.
        #[arg(long = "method")]
        methods: Vec<String>,
        /// A scope the credential must carry; repeat for several.
        #[arg(long = "scope")]
        required_scopes: Vec<String>,
        /// Where the model is read: none, body (the JSON body's "model") or gemini_path (…/models/{model}:…).
        #[arg(long, default_value = "none", value_parser = parse_model_source)]
        model_source: ModelSource,
        /// The provider it sends to (or give --model-provider instead).
        #[arg(long)]
        provider: Option<String>,
        /// `pattern=provider`, for routes that choose the provider by model.
        #[arg(long = "model-provider", value_parser = parse_pair)]
        model_providers: Vec<(String, String)>,
        /// The largest request body it accepts, in bytes.
        #[arg(long, default_value_t = tokenward_filter::config::default_max_body_bytes())]
        max_body_bytes: u64,
        /// Match only requests that carry this header: a shared path (GET /v1/models) for the
        /// SDK that sends it (anthropic-version, x-goog-api-key).
        #[arg(long)]
        when_header: Option<String>,
    },
    /// Remove a route.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Every plan and its limits; the default one marked.
    List,
    /// One plan.
    Show { name: String },
    /// Add or replace a plan.
    Set {
        name: String,
        /// `name:metric:window:limit[:tenant]`, e.g. `rpm:requests:minute:60`.
        #[arg(long = "limit", value_parser = parse_limit)]
        limits: Vec<LimitConfig>,
        /// Count and report but refuse nothing (try a plan out before enforcing it).
        #[arg(long)]
        shadow: bool,
        /// Lower a request's output limit (max_tokens) to what the token and cost limits leave.
        #[arg(long)]
        clamp_max_tokens: bool,
        /// Output tokens reserved for a request that sets no output limit.
        #[arg(long, default_value_t = tokenward_filter::config::default_output_tokens())]
        default_output_tokens: u64,
        /// With several Envoys reporting over the sync channel the limits hold across all of
        /// them; while the control plane is unreachable an Envoy either keeps counting to its
        /// last allowance and share (`fallback`) or refuses the plan's requests with 503
        /// (`fail-closed`).
        #[arg(long, value_enum, default_value_t = UnreachableArg::Fallback)]
        unreachable: UnreachableArg,
        /// Which answers carry the rate-limit headers: every one (`always`), or only refusals
        /// and answers that leave a limit at a fifth of its quota or less (`near-limit`: far
        /// from the limits an answer costs the proxy nothing for them).
        #[arg(long, value_enum, default_value_t = RateLimitHeadersArg::Always)]
        rate_limit_headers: RateLimitHeadersArg,
        /// Spend spikes: a credential whose hourly rate of --spike-metric passes this multiple
        /// of its own baseline raises an alert (docs/quotas.md, "Spend spikes").
        #[arg(long, requires_all = ["spike_metric", "spike_min_baseline"])]
        spike_multiple: Option<u64>,
        /// What a spike's rate counts: requests, input_tokens, output_tokens, total_tokens or
        /// cost_micro_usd.
        #[arg(long, value_parser = parse_metric, requires = "spike_multiple")]
        spike_metric: Option<Metric>,
        /// The least baseline, per hour in the metric's unit: a new or quiet credential is
        /// judged against it.
        #[arg(long, requires = "spike_multiple")]
        spike_min_baseline: Option<u64>,
        /// `alert`, or `suspend`: also revoke the credential's subject until an operator lifts
        /// it (`tokenward token unrevoke --subject S`).
        #[arg(long, value_enum, requires = "spike_multiple")]
        spike_action: Option<SpikeActionArg>,
    },
    /// The plan of credentials that name none (`--none` to have no default).
    Default {
        /// The plan credentials without one are counted under.
        #[arg(required_unless_present = "none")]
        name: Option<String>,
        /// No default plan: credentials without one are unlimited.
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
pub enum QuotaCommand {
    /// Used and remaining of every limit counter of a subject or tenant in the windows in
    /// force, summed over the Envoys that report over the sync channel (every counter,
    /// fullest first, when neither is named).
    Show {
        /// The subject's counters (and those of tenant limits, when it has no tenant).
        #[arg(long)]
        subject: Option<String>,
        /// The tenant's counters.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Alert when a counter of this limit reaches these percents of it in a window (each
    /// once per counter and window). Replaces the limit's thresholds.
    Set {
        /// The plan.
        #[arg(long)]
        plan: String,
        /// The limit's name in the plan.
        #[arg(long)]
        limit: String,
        /// A threshold in percent of the limit (1 to 1000); repeat for several (80, 100).
        #[arg(long = "at", required = true)]
        at: Vec<u64>,
    },
    /// Stop alerting on a limit.
    Remove {
        /// The plan.
        #[arg(long)]
        plan: String,
        /// The limit's name in the plan.
        #[arg(long)]
        limit: String,
    },
    /// The thresholds, the webhook, and the newest alerts with their delivery.
    List {
        /// How many alerts.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Where alerts are POSTed (JSON, signed with HMAC-SHA256); prints a new signing secret,
    /// shown only now.
    Webhook {
        /// An http:// or https:// URL.
        #[arg(long)]
        url: String,
    },
}

/// `--unreachable`: what an Envoy does with the plan while the control plane is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnreachableArg {
    Fallback,
    FailClosed,
}

impl From<UnreachableArg> for tokenward_filter::config::Unreachable {
    fn from(arg: UnreachableArg) -> Self {
        match arg {
            UnreachableArg::Fallback => tokenward_filter::config::Unreachable::Fallback,
            UnreachableArg::FailClosed => tokenward_filter::config::Unreachable::FailClosed,
        }
    }
}

/// `--rate-limit-headers`: which answers of a plan carry its rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RateLimitHeadersArg {
    Always,
    NearLimit,
}

impl From<RateLimitHeadersArg> for tokenward_filter::config::RateLimitHeaders {
    fn from(arg: RateLimitHeadersArg) -> Self {
        match arg {
            RateLimitHeadersArg::Always => tokenward_filter::config::RateLimitHeaders::Always,
            RateLimitHeadersArg::NearLimit => tokenward_filter::config::RateLimitHeaders::NearLimit,
        }
    }
}

/// `--spike-action`: what a spend spike does besides its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpikeActionArg {
    Alert,
    Suspend,
}

impl From<SpikeActionArg> for tokenward_filter::config::SpikeAction {
    fn from(arg: SpikeActionArg) -> Self {
        match arg {
            SpikeActionArg::Alert => tokenward_filter::config::SpikeAction::Alert,
            SpikeActionArg::Suspend => tokenward_filter::config::SpikeAction::Suspend,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PriceCommand {
    /// Every price, in USD per million tokens.
    List,
    /// One model pattern's price.
    Show { model: String },
    /// Add or replace a model's price, in USD per million tokens.
    Set {
        /// The model pattern (`*` matches any run of characters).
        #[arg(long)]
        model: String,
        /// USD per million input tokens: 2.50.
        #[arg(long, value_parser = parse_price)]
        input_price: u64,
        /// USD per million output tokens: 10.
        #[arg(long, value_parser = parse_price)]
        output_price: u64,
        /// USD per million input tokens served from the provider's prompt cache (default:
        /// the input price).
        #[arg(long, value_parser = parse_price)]
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
pub enum ProxyCredentialCommand {
    /// A new proxy credential, shown once. Put it in the Envoys' environment (pushed mode,
    /// `sync set --credential-env`) or in the bootstrap (`config render --sync-url`).
    Create {
        /// What it is for (e.g. the mesh or the Envoy fleet), 1-128 visible ASCII characters.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Name the channel in every pushed configuration.
    Set {
        /// The Envoy cluster that reaches this control plane's HTTP API.
        #[arg(long)]
        cluster: String,
        /// The :authority of the calls (the cluster's name when absent).
        #[arg(long)]
        authority: Option<String>,
        /// The environment variable of the Wasm VM that holds the proxy credential
        /// (pass it to the VM with `serve --env-key`).
        #[arg(long)]
        credential_env: String,
        /// How often usage is reported, in milliseconds (100 to 3600000).
        #[arg(long, default_value_t = 1000)]
        report_interval_ms: u64,
    },
    /// Stop naming a channel: filters stop reporting.
    Off,
    /// The channel the pushed configuration names, if any.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum GuardCommand {
    /// Set the threshold, window, cool-down and exempt networks (or turn the guard off).
    Set {
        /// Failed authentications in one window that block the source (0: off).
        #[arg(long, default_value_t = tokenward_filter::config::default_guard_threshold())]
        threshold: u32,
        /// The window failures are counted in (90, 90s, 15m, 1h).
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        window: u64,
        /// How long a blocked source is refused.
        #[arg(long, value_parser = parse_duration, default_value = "300s")]
        block: u64,
        /// A client network never blocked by address (CIDR; repeat for several).
        #[arg(long)]
        exempt: Vec<String>,
        /// Turn the guard off.
        #[arg(long, conflicts_with_all = ["threshold", "window", "block", "exempt"])]
        off: bool,
    },
    /// The guard's settings in force.
    Show,
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
        /// json (the filter's configuration), istio (WasmPlugin and friends) or envoy-gateway (EnvoyExtensionPolicy and friends).
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
        /// Render the bootstrap (pull mode) instead of the whole configuration: the filter
        /// fetches it, and every change, from this control plane (https://host[:port] of its
        /// HTTP API as the Envoys reach it). json: the plugin configuration alone, naming the
        /// cluster tokenward_sync.
        #[arg(long)]
        sync_url: Option<String>,
        /// With --sync-url: the proxy credential (`proxy-credential create`) the filter calls
        /// with, taken from this environment variable of the gateway.
        #[arg(long, conflicts_with = "proxy_credential")]
        proxy_credential_env: Option<String>,
        /// With --sync-url: the proxy credential itself, written into the plugin
        /// configuration (it opens nothing but the sync channel).
        #[arg(long, env = "TOKENWARD_PROXY_CREDENTIAL", hide_env_values = true)]
        proxy_credential: Option<String>,
        /// With --sync-url: seconds without an answer from the control plane after which
        /// the filter refuses every request (0: never).
        #[arg(long, default_value_t = 300)]
        max_staleness_seconds: u64,
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

fn parse_metric(text: &str) -> Result<Metric, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
        format!(
            "{text:?}: use requests, input_tokens, output_tokens, total_tokens or cost_micro_usd"
        )
    })
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
    let metric = parse_metric(metric)?;
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
