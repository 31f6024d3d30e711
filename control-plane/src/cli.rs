//! The `tokenward` command line: arguments → validated settings → one operation of the
//! control plane → output as text or JSON (`-o json`, for scripts). `main` maps errors to exit
//! codes: 0 done, 1 the operation failed, 2 the command line is wrong (clap's own).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use tokenward_filter::config::{
    CredentialSource, ModelProvider, PlanConfig, PriceConfig, ProviderConfig, RouteConfig,
    SpikeConfig, SyncConfig,
};

use crate::crypto::MasterKey;
use crate::plane::{
    ApiKeyRequest, ControlPlane, EntryKind, InitSettings, PlaneError, ProviderSecret, Revocation,
    TokenRequest,
};
use crate::store::{Location, SqliteStore, Store};
use crate::view;

mod args;
mod serve;

pub use args::*;
use serve::{proxy_status, serve};

/// `NotFound` unless the selection holds an entry.
fn found<T>(entries: &[T], kind: &str, name: &str) -> Result<(), PlaneError> {
    if entries.is_empty() {
        return Err(PlaneError::NotFound(format!("{kind} {name:?}")));
    }
    Ok(())
}

/// An error and its causes on one line, each said once: a cause whose text the message
/// before it already holds (`thiserror`'s `{0}` with `#[from]`) is not repeated.
pub fn error_message(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
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
    // With --database, nothing else made the data directory.
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating {}", cli.data_dir.display()))?;
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

/// The store the command line names: --database, or SQLite in --data-dir. A SQLite file
/// that does not exist is refused but by `init` (and `migrate`): a mistyped path must not
/// quietly start an empty installation.
fn open_store(cli: &Cli) -> anyhow::Result<Box<dyn Store>> {
    let creates = matches!(cli.command, Command::Init { .. } | Command::Migrate);
    let sqlite = match cli.database.as_deref().map(Location::parse) {
        Some(Location::Postgres(url)) => {
            return crate::store::open(url, cli.database_ca.as_deref())
                .context("opening the Postgres database");
        }
        Some(Location::Sqlite(path)) => std::path::PathBuf::from(path),
        None => {
            if creates {
                std::fs::create_dir_all(&cli.data_dir)
                    .with_context(|| format!("creating {}", cli.data_dir.display()))?;
            }
            cli.data_dir.join("tokenward.db")
        }
    };
    if !creates && !sqlite.exists() {
        match cli.database {
            Some(_) => bail!(
                "no tokenward database at {}: run `tokenward init` first, or point --database (TOKENWARD_DATABASE_URL) at the installation",
                sqlite.display()
            ),
            None => bail!(
                "no tokenward database in {}: run `tokenward init` there first, or point --data-dir (TOKENWARD_DATA_DIR) at the installation",
                cli.data_dir.display()
            ),
        }
    }
    Ok(Box::new(SqliteStore::open(&sqlite)?))
}

/// `migrate`: opening migrated the database; say where it stands.
fn print_migrated(cli: &Cli, store: &dyn Store, out: &mut dyn Write) -> anyhow::Result<()> {
    let revision = store.revision()?;
    let what = match cli.database.as_deref().map(Location::parse) {
        Some(Location::Postgres(_)) => "the Postgres database",
        _ => "the SQLite database",
    };
    if cli.output == Output::Json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"migrated": true, "revision": revision})
        )?;
    } else {
        writeln!(
            out,
            "{what} is at this binary's schema (configuration revision {revision})"
        )?;
    }
    Ok(())
}

/// `migrate-store`: everything from one store into another that was never initialised.
fn migrate_store(cli: &Cli, from: &str, to: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let open_existing = |url: &str| -> anyhow::Result<Box<dyn Store>> {
        if let Location::Sqlite(path) = Location::parse(url) {
            if !std::path::Path::new(path).exists() {
                bail!("no SQLite database at {path}");
            }
        }
        crate::store::open(url, cli.database_ca.as_deref())
            .with_context(|| format!("opening {}", redact_url(url)))
    };
    let source = open_existing(from)?;
    let dump = source.export().context("reading the source store")?;
    if dump.settings.is_empty() {
        bail!(
            "{} holds no installation: nothing to copy",
            redact_url(from)
        );
    }
    let target = crate::store::open(to, cli.database_ca.as_deref())
        .with_context(|| format!("opening {}", redact_url(to)))?;
    target
        .import(&dump)
        .with_context(|| format!("writing into {}", redact_url(to)))?;
    let copied = target.export().context("reading the copy back")?;
    if copied != dump {
        bail!("the copy differs from the source: check the target store");
    }
    let counts = dump.counts();
    if cli.output == Output::Json {
        let counts: serde_json::Map<String, serde_json::Value> = counts
            .iter()
            .map(|(what, n)| (what.to_string(), serde_json::json!(n)))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"copied": counts}))?
        )?;
    } else {
        writeln!(out, "copied {} into {}:", redact_url(from), redact_url(to))?;
        for (what, n) in counts {
            writeln!(out, "  {n} {what}")?;
        }
        writeln!(out, "Point --database (TOKENWARD_DATABASE_URL) of every replica at the new store, with the same master key.")?;
    }
    Ok(())
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
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
    if let Command::MigrateStore { from, to } = &cli.command {
        return migrate_store(cli, from, to, out);
    }
    let store = open_store(cli)?;
    if let Command::Migrate = cli.command {
        return print_migrated(cli, store.as_ref(), out);
    }
    let master = master_key(cli, err)?;
    let plane: ControlPlane<dyn Store> =
        ControlPlane::new(std::sync::Arc::<dyn Store>::from(store), master, "cli");
    if let Command::Serve(args) = &cli.command {
        return serve(plane, args, err);
    }
    let now = now()?;
    if cli.output == Output::Csv && !matches!(cli.command, Command::Usage { .. }) {
        bail!("-o csv is for `usage`; use -o text or -o json here");
    }
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
    let show = |out: &mut dyn Write, view: view::View| print(out, view.json, view.text);
    let remove = |out: &mut dyn Write, kind: EntryKind, name: &str, force: bool| {
        let gone = plane.remove_entry(kind, name, force, now)?;
        show(out, view::removal(kind.label(), name, &gone))
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
            show(out, view::rotated(&key))?;
        }
        Command::Key(KeyCommand::List) => {
            show(out, view::signing_keys(&plane.key_states(now)?))?;
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
            show(out, view::minted(&minted))?;
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
            show(out, view::revoked(&what, count))?;
        }
        Command::Token(TokenCommand::List { subject }) => {
            let tokens = plane.live_tokens(now, subject.as_deref(), None)?;
            show(out, view::tokens(&tokens))?;
        }
        Command::Apikey(ApiKeyCommand::List { subject, tenant }) => {
            let keys = plane.api_keys(subject.as_deref(), tenant.as_deref())?;
            show(out, view::api_keys(&keys, now))?;
        }
        Command::Token(TokenCommand::Show { jti }) => {
            let token = plane
                .store()
                .token(jti)?
                .ok_or_else(|| PlaneError::NotFound(format!("token {jti:?}")))?;
            show(out, view::tokens(&[token]).single())?;
        }
        Command::Apikey(ApiKeyCommand::Show { id }) => {
            let keys: Vec<_> = plane
                .store()
                .api_keys()?
                .into_iter()
                .filter(|k| &k.id == id)
                .collect();
            found(&keys, "API key", id)?;
            show(out, view::api_keys(&keys, now).single())?;
        }
        Command::Provider(ProviderCommand::Show { name }) => {
            let listing: Vec<_> = plane
                .provider_listing(None, &[])?
                .into_iter()
                .filter(|p| &p.stored.config.name == name)
                .collect();
            found(&listing, "provider", name)?;
            show(out, view::providers(&listing).single())?;
        }
        Command::Route(RouteCommand::Show { name }) => {
            let mut routes = plane.store().routes()?;
            routes.retain(|r| &r.name == name);
            found(&routes, "route", name)?;
            show(out, view::routes(&routes).single())?;
        }
        Command::Plan(PlanCommand::Show { name }) => {
            let mut plans = plane.store().plans()?;
            plans.retain(|(n, _)| n == name);
            found(&plans, "plan", name)?;
            let mut one = view::plans(&plans, plane.default_plan()?.as_deref());
            one.json = one.json["plans"][name.as_str()].clone();
            show(out, one)?;
        }
        Command::Price(PriceCommand::Show { model }) => {
            let mut prices = plane.store().prices()?;
            prices.retain(|p| &p.model == model);
            found(&prices, "price", model)?;
            show(out, view::prices(&prices).single())?;
        }
        Command::Revocations => show(out, view::revocations(&plane.revocations(now)?))?,
        Command::Route(RouteCommand::List) => show(out, view::routes(&plane.store().routes()?))?,
        Command::Plan(PlanCommand::List) => {
            let plans = plane.store().plans()?;
            show(out, view::plans(&plans, plane.default_plan()?.as_deref()))?;
        }
        Command::Price(PriceCommand::List) => show(out, view::prices(&plane.store().prices()?))?,
        Command::Token(TokenCommand::Unrevoke { subject }) => {
            plane.unrevoke_subject(subject, now)?;
            show(out, view::unrevoked(subject))?;
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
            show(out, view::api_key_created(&created))?;
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
            when_header,
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
                when_header: when_header.as_ref().map(|h| h.to_ascii_lowercase()),
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
            unreachable,
            rate_limit_headers,
            spike_multiple,
            spike_metric,
            spike_min_baseline,
            spike_action,
        }) => {
            // clap has made the three go together.
            let spike = match (spike_multiple, spike_metric, spike_min_baseline) {
                (Some(multiple), Some(metric), Some(min_baseline)) => Some(SpikeConfig {
                    multiple: *multiple,
                    metric: *metric,
                    min_baseline: *min_baseline,
                    action: spike_action.map(Into::into).unwrap_or_default(),
                }),
                _ => None,
            };
            plane.put_plan(
                name,
                PlanConfig {
                    limits: limits.clone(),
                    shadow: *shadow,
                    clamp_max_tokens: *clamp_max_tokens,
                    default_output_tokens: *default_output_tokens,
                    unreachable: (*unreachable).into(),
                    rate_limit_headers: (*rate_limit_headers).into(),
                    spike,
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
            let keys = (!env_keys.is_empty()).then_some(env_keys.as_slice());
            show(out, view::providers(&plane.provider_listing(keys, &[])?))?;
        }
        Command::Provider(ProviderCommand::Remove { name, force }) => {
            remove(out, EntryKind::Provider, name, *force)?;
        }
        Command::Route(RouteCommand::Remove { name }) => {
            remove(out, EntryKind::Route, name, false)?;
        }
        Command::Plan(PlanCommand::Remove { name, force }) => {
            remove(out, EntryKind::Plan, name, *force)?;
        }
        Command::Price(PriceCommand::Remove { model }) => {
            remove(out, EntryKind::Price, model, false)?;
        }
        Command::Config(ConfigCommand::Render {
            out: path,
            format,
            wasm_url,
            namespace,
            host,
            sync_url,
            proxy_credential_env,
            proxy_credential,
            max_staleness_seconds,
        }) => {
            let config = plane.render(now)?;
            let pull = match sync_url {
                Some(url) => {
                    let credential = match (proxy_credential_env, proxy_credential) {
                        (Some(var), _) => CredentialSource::Env(var.clone()),
                        (None, Some(key)) => CredentialSource::Inline(key.clone()),
                        (None, None) => bail!(
                            "--sync-url needs the proxy credential: --proxy-credential-env VAR or --proxy-credential KEY (tokenward proxy-credential create)"
                        ),
                    };
                    Some(crate::mesh::PullSettings {
                        url: url.clone(),
                        credential,
                        max_staleness_seconds: *max_staleness_seconds,
                        trust_anchor: plane.jwks(now)?,
                    })
                }
                None => None,
            };
            let mesh = crate::mesh::MeshSettings {
                wasm_url: wasm_url.clone(),
                namespace: namespace.clone(),
                host: host.clone(),
                pull,
            };
            let document = match (format, &mesh.pull) {
                (RenderFormat::Json, Some(pull)) => crate::mesh::envoy_bootstrap(pull)?,
                (RenderFormat::Json, None) => serde_json::to_value(&config)?,
                (RenderFormat::Istio, _) => crate::mesh::istio(&config, &mesh)?,
                (RenderFormat::EnvoyGateway, _) => crate::mesh::envoy_gateway(&config, &mesh)?,
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
        Command::Serve(_)
        | Command::ProxyStatus { .. }
        | Command::Tls(_)
        | Command::Migrate
        | Command::MigrateStore { .. } => {}
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
        Command::ProxyCredential(ProxyCredentialCommand::Create { name }) => {
            let created = plane.create_proxy_credential(name, now)?;
            print(
                out,
                serde_json::json!({"id": created.id, "key": created.key, "subject": created.record.subject}),
                format!(
                    "proxy credential {} for {name} (shown once, scope tokenward:sync only):\n{}",
                    created.id, created.key
                ),
            )?;
        }
        Command::Sync(SyncCommand::Set {
            cluster,
            authority,
            credential_env,
            report_interval_ms,
        }) => {
            let channel = SyncConfig {
                cluster: cluster.clone(),
                authority: authority.clone(),
                credential: CredentialSource::Env(credential_env.clone()),
                report_interval_ms: *report_interval_ms,
                max_staleness_seconds: tokenward_filter::config::default_max_staleness(),
                trust_anchor: Default::default(),
            };
            plane.set_sync_channel(Some(&channel), now)?;
            print(
                out,
                serde_json::to_value(&channel)?,
                format!("usage is reported on cluster {cluster} every {report_interval_ms} ms (credential from ${credential_env})"),
            )?;
        }
        Command::Sync(SyncCommand::Off) => {
            plane.set_sync_channel(None, now)?;
            print(
                out,
                serde_json::json!({"sync": null}),
                "no sync channel: filters report nothing".into(),
            )?;
        }
        Command::Guard(GuardCommand::Set {
            threshold,
            window,
            block,
            exempt,
            off,
        }) => {
            let settings = tokenward_filter::config::FailedAuthConfig {
                enabled: !off,
                threshold: *threshold,
                window_seconds: *window,
                block_seconds: *block,
                exempt: exempt.clone(),
            };
            plane.set_guard(settings.clone(), now)?;
            print(out, serde_json::to_value(&settings)?, guard_text(&settings))?;
        }
        Command::Guard(GuardCommand::Show) => {
            let settings = plane.guard_settings()?;
            print(out, serde_json::to_value(&settings)?, guard_text(&settings))?;
        }
        Command::Sync(SyncCommand::Show) => {
            let channel = plane.sync_channel()?;
            let text = match &channel {
                Some(c) => format!("cluster {} every {} ms", c.cluster, c.report_interval_ms),
                None => "no sync channel".to_string(),
            };
            print(out, serde_json::to_value(&channel)?, text)?;
        }
        Command::Usage {
            since,
            subject,
            tenant,
            credential,
            model,
            provider,
            by,
        } => {
            let query = crate::plane::UsageQuery {
                since: since.unwrap_or(now.saturating_sub(24 * 3600)),
                subject: subject.clone(),
                tenant: tenant.clone(),
                credential: credential.clone(),
                model: model.clone(),
                provider: provider.clone(),
                by: *by,
            };
            let ledger = plane.usage_ledger(&query)?;
            if cli.output == Output::Csv {
                write!(out, "{}", view::usage_csv(&ledger))?;
            } else {
                match &ledger {
                    crate::plane::UsageLedger::Hours(rows) => show(out, view::usage(rows))?,
                    crate::plane::UsageLedger::Totals(_, totals) => {
                        show(out, view::usage_totals(totals))?
                    }
                }
            }
        }
        Command::Alert(AlertCommand::Set { plan, limit, at }) => {
            plane.set_alert_rule(
                crate::plane::alerts::AlertRule {
                    plan: plan.clone(),
                    limit: limit.clone(),
                    thresholds: at.clone(),
                },
                now,
            )?;
            print(
                out,
                serde_json::json!({"plan": plan, "limit": limit, "thresholds": at}),
                format!("alerts on {plan}/{limit} set"),
            )?;
        }
        Command::Alert(AlertCommand::Remove { plan, limit }) => {
            if !plane.remove_alert_rule(plan, limit, now)? {
                bail!("no alerts on {plan}/{limit}");
            }
            print(
                out,
                serde_json::json!({"removed": {"plan": plan, "limit": limit}}),
                format!("alerts on {plan}/{limit} removed"),
            )?;
        }
        Command::Alert(AlertCommand::List { limit }) => {
            let webhook = plane.alert_webhook()?.map(|w| w.url);
            show(
                out,
                view::alerts(
                    &plane.alert_rules()?,
                    webhook.as_deref(),
                    &plane.alert_events(*limit)?,
                ),
            )?;
        }
        Command::Alert(AlertCommand::Webhook { url }) => {
            let secret = plane.set_alert_webhook(url, now)?;
            print(
                out,
                serde_json::json!({"url": url, "secret": secret}),
                format!(
                    "alerts go to {url}\nsigning secret (shown only now): {secret}\n\
                     each delivery carries x-tokenward-timestamp and x-tokenward-signature: \
                     v1=<hex HMAC-SHA256 of \"<timestamp>.<body>\" under the secret>"
                ),
            )?;
        }
        Command::Quota(QuotaCommand::Show { subject, tenant }) => {
            let states = plane.quota_state(subject.as_deref(), tenant.as_deref(), now)?;
            show(out, view::quota(&states))?;
        }
        Command::Audit { limit } => {
            show(out, view::audit(&plane.store().audit_log(*limit)?))?;
        }
    }
    Ok(())
}

/// The guard's settings in a line.
fn guard_text(settings: &tokenward_filter::config::FailedAuthConfig) -> String {
    if !settings.enabled || settings.threshold == 0 {
        return "the failed-authentication guard is off".to_string();
    }
    let exempt = if settings.exempt.is_empty() {
        String::new()
    } else {
        format!("; exempt: {}", settings.exempt.join(", "))
    };
    format!(
        "{} failed authentications in {} s block the address or credential for {} s{exempt}",
        settings.threshold, settings.window_seconds, settings.block_seconds
    )
}

#[cfg(test)]
mod tests;
