//! Several control-plane replicas over one Postgres database and the Envoys they feed, for the
//! end-to-end tests and `make bench`: a database of its own, an installation in it (a provider
//! in front of a mock, a chat route), replicas in process or as `tokenward serve` processes,
//! and the admin calls both make.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::model::Alg;
use tokenward_control_plane::plane::{ControlPlane, InitSettings, ProviderSecret};
use tokenward_control_plane::store::Store;
use tokenward_control_plane::testing::TestDatabase;
use tokenward_control_plane::xds::snapshot::SnapshotSettings;

use tokenward_control_plane::mesh::{PullSettings, SYNC_CLUSTER};
use tokenward_filter::config::{CredentialSource, JwkSet, SyncConfig};

use crate::client::{self, bearer, Reply};
use crate::control_plane::{plane_at, unix_now, ServeProcess, Served};
use crate::envoy::{wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use crate::mock_provider::MockProvider;

/// One installation on Postgres, ready for replicas.
pub struct Fleet {
    pub db: TestDatabase,
    pub master: String,
    /// The master key as a file, for `tokenward serve` processes.
    pub master_file: PathBuf,
    /// An admin API key (admin:read and admin:write).
    pub admin_key: String,
    pub openai: MockProvider,
    pub settings: SnapshotSettings,
    /// Holds the master key file and the processes' data directories.
    pub dir: tempfile::TempDir,
}

impl Fleet {
    pub fn create() -> Fleet {
        let db = TestDatabase::create();
        let master = MasterKey::generate().unwrap().to_hex();
        let dir = tempfile::tempdir().unwrap();
        let master_file = dir.path().join("master.key");
        std::fs::write(&master_file, format!("{master}\n")).unwrap();
        let openai = MockProvider::start("openai").unwrap();
        let operator = Fleet::operator_on(&db.url, &master);
        let (_, admin) = operator
            .init(
                &InitSettings {
                    issuer: "https://cp.test".into(),
                    audiences: vec!["gateway".into()],
                    alg: Alg::EdDSA,
                },
                unix_now(),
            )
            .unwrap();
        let secrets = crate::setup::ProviderSecrets::generate();
        operator
            .put_provider(
                tokenward_control_plane::testing::openai_provider(),
                ProviderSecret::Sealed(secrets.get("openai").to_string()),
                unix_now(),
            )
            .unwrap();
        operator
            .put_route(
                tokenward_filter::testing::chat_route("chat", "/v1/chat/completions", "openai"),
                unix_now(),
            )
            .unwrap();
        let wasm = wasm_module().unwrap();
        let settings = SnapshotSettings {
            wasm_path: wasm.display().to_string(),
            env_keys: vec![],
            upstream_overrides: [("openai".to_string(), openai.addr)].into(),
            ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
        };
        Fleet {
            db,
            master,
            master_file,
            admin_key: admin.key,
            openai,
            settings,
            dir,
        }
    }

    fn operator_on(url: &str, master: &str) -> ControlPlane<dyn Store> {
        plane_at(url, master).unwrap()
    }

    /// A handle on the database, as an operator's `tokenward --database …` has one.
    pub fn operator(&self) -> ControlPlane<dyn Store> {
        Fleet::operator_on(&self.db.url, &self.master)
    }

    /// For a test whose client sends a revoked token over and over from one address on
    /// purpose: a failed-authentication threshold it never reaches (guard.rs tests the guard).
    pub fn tolerate_auth_failures(&self) {
        tolerate_auth_failures(&self.operator());
    }

    /// A replica in this process (its servers in a thread).
    pub fn replica(&self, name: &str) -> Served {
        Served::start_replica(&self.db.url, &self.master, self.settings.clone(), name).unwrap()
    }

    /// A replica as a `tokenward serve` process, for what only a process suffers (SIGKILL).
    pub fn replica_process(&self, name: &str) -> ServeProcess {
        self.replica_process_on(name, free_port())
    }

    /// A replica process whose HTTP API listens on `admin` (a replica restarted in place).
    pub fn replica_process_on(&self, name: &str, admin: SocketAddr) -> ServeProcess {
        let xds = free_port();
        let data = self.dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        let mut args: Vec<String> = vec![
            "--database".into(),
            self.db.url.clone(),
            "--replica-id".into(),
            name.into(),
            "--wasm-path".into(),
            self.settings.wasm_path.clone(),
        ];
        for (cluster, addr) in &self.settings.upstream_overrides {
            args.push("--upstream".into());
            args.push(format!("{cluster}={addr}"));
        }
        ServeProcess::start(&data, &self.master_file, admin, xds, &args).unwrap()
    }

    /// An Envoy on the shipped pushed-mode bootstrap, its ADS cluster listing `replicas`.
    pub fn envoy(&self, node: &str, replicas: &[SocketAddr]) -> Envoy {
        let config = EnvoyConfig::shipped_xds()
            .unwrap()
            .with_control_planes(replicas, &wasm_module().unwrap())
            .unwrap()
            .with_node_id(node);
        Envoy::start(config, &EnvoyOptions::default()).unwrap()
    }
}

/// A proxy credential of the installation (scope tokenward:sync only).
pub fn proxy_credential(operator: &ControlPlane<dyn Store>) -> String {
    operator
        .create_proxy_credential("mesh", unix_now())
        .unwrap()
        .key
}

impl Fleet {
    /// A replica in this process and an Envoy of two workers fed by it over ADS that reports
    /// its usage on the sync channel the pushed configuration names (every 500 ms, with a
    /// proxy credential from its environment).
    pub fn reporting_envoy(&self, node: &str) -> (Served, Envoy) {
        const CREDENTIAL_ENV: &str = "TOKENWARD_PROXY_CREDENTIAL";
        let operator = self.operator();
        let credential = proxy_credential(&operator);
        operator
            .set_sync_channel(
                Some(&SyncConfig {
                    cluster: "tokenward_sync".into(),
                    authority: None,
                    credential: CredentialSource::Env(CREDENTIAL_ENV.into()),
                    report_interval_ms: 500,
                    max_staleness_seconds: 300,
                    trust_anchor: JwkSet::default(),
                }),
                unix_now(),
            )
            .unwrap();
        let settings = SnapshotSettings {
            env_keys: vec![CREDENTIAL_ENV.into()],
            ..self.settings.clone()
        };
        let replica = Served::start_replica(&self.db.url, &self.master, settings, "cp").unwrap();
        let config = EnvoyConfig::shipped_xds()
            .unwrap()
            .with_control_planes(&[replica.xds], &wasm_module().unwrap())
            .unwrap()
            .with_cluster("tokenward_sync", replica.admin)
            .unwrap()
            .with_node_id(node);
        let options = EnvoyOptions {
            concurrency: 2,
            env: [(CREDENTIAL_ENV.to_string(), credential)].into(),
            ..EnvoyOptions::default()
        };
        (replica, Envoy::start(config, &options).unwrap())
    }

    /// An Envoy as a mesh starts it, without ADS: the shipped static listener whose plugin
    /// configuration is only a bootstrap (pull mode) naming the control plane at
    /// `control_plane` (its HTTP API), and `concurrency` workers.
    pub fn pull_envoy(
        &self,
        node: &str,
        control_plane: SocketAddr,
        credential: &str,
        concurrency: u32,
    ) -> Envoy {
        let bootstrap = tokenward_control_plane::mesh::envoy_bootstrap(&PullSettings {
            url: format!("http://{control_plane}"),
            credential: CredentialSource::Inline(credential.to_string()),
            max_staleness_seconds: 300,
            trust_anchor: self.operator().jwks(unix_now()).unwrap(),
        })
        .unwrap();
        let config = EnvoyConfig::shipped()
            .unwrap()
            .with_wasm(&wasm_module().unwrap())
            .unwrap()
            .with_filter_config(&bootstrap.to_string())
            .unwrap()
            .with_upstream("openai", self.openai.addr)
            .unwrap()
            .with_cluster(SYNC_CLUSTER, control_plane)
            .unwrap()
            .with_node_id(node);
        let options = EnvoyOptions {
            concurrency,
            ..EnvoyOptions::default()
        };
        Envoy::start(config, &options).unwrap()
    }
}

pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An admin API call: its status and JSON body (Null when none).
pub fn admin_call(
    admin: SocketAddr,
    key: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string());
    let mut headers = vec![("authorization", format!("Bearer {key}"))];
    if body.is_some() {
        headers.push(("content-type", "application/json".to_string()));
    }
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    match client::send(
        method,
        &format!("http://{admin}{path}"),
        &headers,
        body.as_deref(),
    ) {
        Ok(reply) => {
            let json = serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null);
            (reply.status, json)
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// Mints a token through a replica's admin API: (token, jti).
pub fn mint(admin: SocketAddr, key: &str, subject: &str) -> (String, String) {
    let (status, minted) = admin_call(
        admin,
        key,
        "POST",
        "/admin/v1/tokens",
        Some(serde_json::json!({"subject": subject, "scopes": ["chat"], "models": ["*"]})),
    );
    assert_eq!(status, 200, "minting through {admin}: {minted}");
    (
        minted["token"].as_str().unwrap().to_string(),
        minted["jti"].as_str().unwrap().to_string(),
    )
}

pub fn chat(envoy: &Envoy, token: &str) -> Reply {
    client::send(
        "POST",
        &envoy.url("/v1/chat/completions"),
        &[("authorization", &bearer(token))],
        Some(r#"{"model":"gpt-4o-mini","messages":[]}"#),
    )
    .unwrap_or_else(|e| Reply {
        status: 0,
        headers: Vec::new(),
        body: e.to_string(),
    })
}

/// Polls `envoy` with `token` until `done` holds; how long it took. Fails after `limit`
/// (a hang guard: the figures are the bench's).
pub fn until(
    envoy: &Envoy,
    token: &str,
    limit: Duration,
    done: impl Fn(&Reply) -> bool,
) -> Duration {
    until_in_a_row(envoy, token, limit, 1, done)
}

/// As `until`, but `done` must hold for 12 replies in a row (new connections, spread over
/// the workers): each worker takes a pulled configuration on its own timer, so one reply
/// speaks for one worker only. For tests that go on to assert every reply.
pub fn until_every_worker(
    envoy: &Envoy,
    token: &str,
    limit: Duration,
    done: impl Fn(&Reply) -> bool,
) {
    until_in_a_row(envoy, token, limit, 12, done);
}

/// Polls until `done` holds for `settled` replies in a row; how long until the first of them.
fn until_in_a_row(
    envoy: &Envoy,
    token: &str,
    limit: Duration,
    settled: usize,
    done: impl Fn(&Reply) -> bool,
) -> Duration {
    let start = Instant::now();
    let (mut first, mut in_a_row) = (None, 0);
    loop {
        let reply = chat(envoy, token);
        if done(&reply) {
            let at = *first.get_or_insert(start.elapsed());
            in_a_row += 1;
            if in_a_row == settled {
                return at;
            }
            continue;
        }
        (first, in_a_row) = (None, 0);
        assert!(
            start.elapsed() < limit,
            "after {limit:?} still {} {}",
            reply.status,
            reply.body
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Revokes a token through a replica's admin API.
pub fn revoke_jti(admin: SocketAddr, key: &str, jti: &str) {
    let (status, body) = admin_call(
        admin,
        key,
        "POST",
        "/admin/v1/revocations",
        Some(serde_json::json!({"jti": jti})),
    );
    assert_eq!(status, 200, "{body}");
}

/// One trial: a token minted through `minter` works at `envoy`; revoked through `revoker`'s
/// admin API; how long until `envoy` refuses it.
pub fn revocation_trial(
    envoy: &Envoy,
    minter: SocketAddr,
    revoker: SocketAddr,
    key: &str,
    subject: &str,
) -> Duration {
    let (token, jti) = mint(minter, key, subject);
    until(envoy, &token, Duration::from_secs(10), |r| r.status == 200);
    revoke_jti(revoker, key, &jti);
    until(envoy, &token, Duration::from_secs(10), |r| {
        r.error_code().as_deref() == Some("token_revoked")
    })
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// What one minute of `drive` saw, over every Envoy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteCount {
    /// Answered 200 by the provider.
    pub admitted: u64,
    /// Input plus output tokens the provider reported for them.
    pub tokens: u64,
    /// Refused with 429.
    pub refused: u64,
    /// Anything else (a 503, a connection error): none expected unless a test says so.
    pub other: u64,
}

/// Drives one client per Envoy URL (`urls[i]` at `per_minute[i]` requests a minute, evenly
/// paced) through `minutes` whole minutes, starting at the next minute boundary, with `token`
/// and `body`. A request is not sent within 200 ms of a boundary, so each one falls in the
/// minute the client thinks it does whatever the few milliseconds it takes. Returns each
/// minute's counts and the first Unix second of the first minute.
pub fn drive(
    urls: &[String],
    token: &str,
    per_minute: &[u64],
    body: &str,
    minutes: u64,
) -> (Vec<MinuteCount>, u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let first = now.as_secs() - now.as_secs() % 60 + 60;
    let start = Instant::now() + (Duration::from_secs(first) - now);
    let threads: Vec<_> = urls
        .iter()
        .zip(per_minute)
        .filter(|(_, rate)| **rate > 0)
        .map(|(url, rate)| {
            let (url, token, body, rate) =
                (url.clone(), token.to_string(), body.to_string(), *rate);
            std::thread::spawn(move || {
                let mut counts = vec![MinuteCount::default(); minutes as usize];
                let gap = Duration::from_secs(60) / u32::try_from(rate).unwrap();
                let total = rate * minutes;
                for k in 0..total {
                    let at = start + gap * u32::try_from(k).unwrap();
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let into = at.duration_since(start);
                    let minute = (into.as_secs() / 60) as usize;
                    let second = into.as_millis() % 60_000;
                    if !(200..59_800).contains(&second) || minute >= counts.len() {
                        continue;
                    }
                    let reply = client::send(
                        "POST",
                        &url,
                        &[("authorization", &bearer(&token))],
                        Some(&body),
                    );
                    let count = &mut counts[minute];
                    match reply {
                        Ok(reply) if reply.status == 200 => {
                            count.admitted += 1;
                            let usage = &reply.json()["usage"];
                            count.tokens += usage["prompt_tokens"].as_u64().unwrap_or(0)
                                + usage["completion_tokens"].as_u64().unwrap_or(0);
                        }
                        Ok(reply) if reply.status == 429 => count.refused += 1,
                        _ => count.other += 1,
                    }
                }
                counts
            })
        })
        .collect();
    let mut total = vec![MinuteCount::default(); minutes as usize];
    for thread in threads {
        for (sum, count) in total.iter_mut().zip(thread.join().unwrap()) {
            sum.admitted += count.admitted;
            sum.tokens += count.tokens;
            sum.refused += count.refused;
            sum.other += count.other;
        }
    }
    (total, first)
}

/// A chat body of about `tokens` prompt tokens (the mock counts four bytes a token, as the
/// filter estimates), asking for at most `max_tokens` of output.
pub fn chat_body(tokens: u64, max_tokens: u64) -> String {
    let filler = "x".repeat((tokens * 4).saturating_sub(90) as usize);
    format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"{filler}"}}]}}"#
    )
}

/// Sets the failed-authentication guard's threshold to its maximum: on, and never reached
/// by a test that fails authentication thousands of times from one address on purpose.
pub fn tolerate_auth_failures<S: Store + ?Sized>(operator: &ControlPlane<S>) {
    operator
        .set_guard(
            tokenward_filter::config::FailedAuthConfig {
                threshold: 1_000_000,
                ..Default::default()
            },
            unix_now(),
        )
        .unwrap();
}
