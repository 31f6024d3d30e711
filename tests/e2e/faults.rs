//! Faults: `tokenward serve` (the built binary, a child process) is SIGKILLed under steady
//! traffic through an Envoy on envoy/envoy-xds.yaml, while an operator keeps writing, and is
//! restarted on the same database and ADS port. Throughout: no valid token refused, no
//! revoked token accepted once Envoy enforced its revocation; while it is away Envoy enforces
//! the last configuration; what changed meanwhile, and the next change, are in force within a
//! second of its return.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::model::Alg;
use tokenward_control_plane::plane::{InitSettings, ProviderSecret, Revocation, TokenRequest};
use tokenward_e2e::control_plane::{plane, unix_now, ServeProcess};
use tokenward_e2e::envoy::{wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::mock_provider::MockProvider;
use tokenward_filter::config::{CredentialSource, ProviderConfig, ProviderStyle};

/// Client threads sending through Envoy, and how many requests each sends at most.
const CLIENTS: usize = 3;
const MAX_REQUESTS_PER_CLIENT: usize = 3000;
/// The promise under test: a control plane back from a crash has its changes in force
/// within this long.
const RETURN_TO_ENFORCEMENT: Duration = Duration::from_secs(1);

const UP: u8 = 0;
const DOWN: u8 = 1;
const BACK: u8 = 2;

/// A token that gets revoked during the run.
struct Doomed {
    token: String,
    jti: String,
    /// Set just before its revocation is written: a refusal before then is wrong.
    revoking_since: Mutex<Option<Instant>>,
    /// When a client first had its refusal back: from then Envoy's worker runs a
    /// configuration with the revocation (one worker; configurations only move forward), so
    /// accepting a request sent later is wrong. This is the revocation acknowledged.
    enforced_since: Mutex<Option<Instant>>,
}

impl Doomed {
    fn revoking(&self) {
        *self.revoking_since.lock().unwrap() = Some(Instant::now());
    }

    fn enforced(&self) -> Option<Instant> {
        *self.enforced_since.lock().unwrap()
    }

    fn saw_refused(&self, at: Instant) {
        let mut since = self.enforced_since.lock().unwrap();
        if since.is_none() {
            *since = Some(at);
        }
    }
}

/// What the clients saw, by phase (control plane up, down, back).
#[derive(Default)]
struct Observed {
    violations: Mutex<Vec<String>>,
    valid_passed: [AtomicUsize; 3],
    revoked_refused: [AtomicUsize; 3],
    requests: AtomicUsize,
}

fn chat(client: &Client, url: &str, token: &str) -> Result<(u16, Option<String>), String> {
    let response = client
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","messages":[]}"#)
        .send()
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status().as_u16();
    let body = response.text().map_err(|e| format!("body: {e}"))?;
    let code = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
    Ok((status, code))
}

/// Sends `token` until Envoy refuses it as revoked; returns when it first did.
fn until_refused(client: &Client, url: &str, doomed: &Doomed) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((401, Some(code))) = chat(client, url, &doomed.token) {
            if code == "token_revoked" {
                let at = Instant::now();
                doomed.saw_refused(at);
                return at;
            }
        }
        assert!(Instant::now() < deadline, "{} never refused", doomed.jti);
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn admin_post(
    client: &Client,
    admin: &str,
    key: &str,
    path: &str,
    body: serde_json::Value,
) -> Result<u16, String> {
    client
        .post(format!("http://{admin}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `tokenward token revoke --jti <jti>` against the database, as an operator's shell runs it.
fn cli_revoke(dir: &Path, key_file: &Path, jti: &str) {
    let cli = <tokenward_control_plane::cli::Cli as clap::Parser>::try_parse_from([
        "tokenward",
        "--data-dir",
        dir.to_str().unwrap(),
        "--master-key-file",
        key_file.to_str().unwrap(),
        "token",
        "revoke",
        "--jti",
        jti,
    ])
    .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    tokenward_control_plane::cli::run(&cli, &mut out, &mut err).unwrap();
}

#[test]
fn a_sigkilled_control_plane_loses_no_enforcement_and_its_return_is_in_force_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tokenward.db");
    let master = MasterKey::generate().unwrap().to_hex();
    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, &master).unwrap();
    let secrets = tokenward_e2e::setup::ProviderSecrets::generate();
    let openai = MockProvider::start("openai").unwrap();

    let operator = plane(&db, &master).unwrap();
    let (_, admin_key) = operator
        .init(
            &InitSettings {
                issuer: "https://cp.test".into(),
                audiences: vec!["gateway".into()],
                alg: Alg::EdDSA,
            },
            unix_now(),
        )
        .unwrap();
    operator
        .put_provider(
            ProviderConfig {
                name: "openai".into(),
                style: ProviderStyle::Openai,
                cluster: "openai".into(),
                authority: "api.openai.com".into(),
                credential: CredentialSource::Env(String::new()),
                headers: Default::default(),
            },
            ProviderSecret::Sealed(secrets.get("openai").to_string()),
            unix_now(),
        )
        .unwrap();
    let route =
        |name: &str, prefix: &str| tokenward_filter::testing::chat_route(name, prefix, "openai");

    operator
        .put_route(route("chat", "/v1/chat/completions"), unix_now())
        .unwrap();
    // The clients send revoked tokens thousands of times from one address on purpose: the
    // failed-authentication guard (guard.rs tests it) would block them after 20 by default.
    tokenward_e2e::fleet::tolerate_auth_failures(&operator);
    let mint = |subject: &str| {
        operator
            .mint_token(
                &TokenRequest {
                    subject: subject.into(),
                    scopes: vec!["chat".into()],
                    models: Some(vec!["*".into()]),
                    ..TokenRequest::default()
                },
                unix_now(),
            )
            .unwrap()
    };
    let valid = mint("alice").token;
    let revoked = mint("mallory");
    operator
        .revoke(
            &Revocation::Jti {
                jti: revoked.jti.clone(),
                expires_at: None,
            },
            unix_now(),
        )
        .unwrap();
    // Revoked through the admin API while it is up, by the CLI while it is up, by the CLI
    // while it is down, through the admin API right after it is back.
    let doomed: Arc<Vec<Doomed>> = Arc::new(
        ["bob", "carol", "dave", "erin"]
            .iter()
            .map(|subject| {
                let minted = mint(subject);
                Doomed {
                    token: minted.token,
                    jti: minted.jti,
                    revoking_since: Mutex::new(None),
                    enforced_since: Mutex::new(None),
                }
            })
            .collect(),
    );

    let wasm = wasm_module().unwrap();
    let (admin, xds) = (free_port(), free_port());
    let serve_args: Vec<String> = vec![
        "--wasm-path".into(),
        wasm.display().to_string(),
        "--upstream".into(),
        format!("openai={}", openai.addr),
    ];
    let serve = ServeProcess::start(dir.path(), &key_file, admin, xds, &serve_args).unwrap();
    let config = EnvoyConfig::shipped_xds()
        .unwrap()
        .with_control_plane(xds, &wasm)
        .unwrap();
    let envoy = Envoy::start(config, &EnvoyOptions::default()).unwrap();
    let url = envoy.url("/v1/chat/completions");
    let client = tokenward_e2e::client::client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while chat(&client, &url, &valid) != Ok((200, None)) {
        assert!(
            Instant::now() < deadline,
            "no configuration reached Envoy:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        chat(&client, &url, &revoked.token),
        Ok((401, Some("token_revoked".into())))
    );

    let phase = Arc::new(AtomicU8::new(UP));
    let stop = Arc::new(AtomicBool::new(false));
    let observed = Arc::new(Observed::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (phase, stop, observed, doomed) = (
                Arc::clone(&phase),
                Arc::clone(&stop),
                Arc::clone(&observed),
                Arc::clone(&doomed),
            );
            let (url, valid, revoked) = (url.clone(), valid.clone(), revoked.token.clone());
            std::thread::spawn(move || {
                let client = tokenward_e2e::client::client();
                let violation = |what: String| observed.violations.lock().unwrap().push(what);
                for n in 0..MAX_REQUESTS_PER_CLIENT {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    observed.requests.fetch_add(1, Ordering::SeqCst);
                    let at = phase.load(Ordering::SeqCst);
                    let slot = (n + i) % (2 + doomed.len());
                    match slot {
                        0 => match chat(&client, &url, &valid) {
                            Ok((200, _)) => {
                                observed.valid_passed[at as usize].fetch_add(1, Ordering::SeqCst);
                            }
                            other => {
                                violation(format!("valid token refused (phase {at}): {other:?}"))
                            }
                        },
                        1 => match chat(&client, &url, &revoked) {
                            Ok((401, Some(code))) if code == "token_revoked" => {
                                observed.revoked_refused[at as usize]
                                    .fetch_add(1, Ordering::SeqCst);
                            }
                            other => violation(format!(
                                "revoked token not refused (phase {at}): {other:?}"
                            )),
                        },
                        _ => {
                            let d = &doomed[slot - 2];
                            let enforced_before = d.enforced();
                            let reply = chat(&client, &url, &d.token);
                            let revoking = *d.revoking_since.lock().unwrap();
                            match reply {
                                Ok((200, _)) if enforced_before.is_some() => violation(format!(
                                    "{} accepted after its revocation was enforced (phase {at})",
                                    d.jti
                                )),
                                Ok((200, _)) => {}
                                Ok((401, Some(code)))
                                    if code == "token_revoked" && revoking.is_some() =>
                                {
                                    d.saw_refused(Instant::now());
                                    observed.revoked_refused[at as usize]
                                        .fetch_add(1, Ordering::SeqCst);
                                }
                                other => violation(format!("{} (phase {at}): {other:?}", d.jti)),
                            }
                        }
                    }
                }
            })
        })
        .collect();
    // The operator changes a route all along, through the admin API (refused while the
    // control plane is down: counted, not retried).
    let writes_ok = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let writer = {
        let (phase, stop, writes_ok, key) = (
            Arc::clone(&phase),
            Arc::clone(&stop),
            Arc::clone(&writes_ok),
            admin_key.key.clone(),
        );
        let churn = route("churn", "/v1/churn");
        std::thread::spawn(move || {
            let client = tokenward_e2e::client::client();
            for n in 0..200 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let mut route = churn.clone();
                route.path_prefix = format!("/v1/churn-{n}");
                let status = client
                    .put(format!("http://{admin}/admin/v1/routes/churn"))
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(serde_json::to_string(&route).unwrap())
                    .send()
                    .map(|r| r.status().as_u16());
                if matches!(status, Ok(204)) {
                    writes_ok[phase.load(Ordering::SeqCst) as usize].fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Up: revocations through the admin API and the CLI reach Envoy.
    std::thread::sleep(Duration::from_millis(300));
    doomed[0].revoking();
    let status = admin_post(
        &client,
        &admin.to_string(),
        &admin_key.key,
        "/admin/v1/revocations",
        serde_json::json!({"jti": doomed[0].jti}),
    );
    assert_eq!(status, Ok(200));
    until_refused(&client, &url, &doomed[0]);
    doomed[1].revoking();
    cli_revoke(dir.path(), &key_file, &doomed[1].jti);
    until_refused(&client, &url, &doomed[1]);
    std::thread::sleep(Duration::from_millis(300));

    // SIGKILL mid-traffic, mid-writes. Down for 1.5 s; the operator revokes meanwhile.
    serve.kill().unwrap();
    phase.store(DOWN, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    doomed[2].revoking();
    cli_revoke(dir.path(), &key_file, &doomed[2].jti);
    std::thread::sleep(Duration::from_millis(1300));
    // Envoy cannot know: its last configuration lets it through.
    assert_eq!(chat(&client, &url, &doomed[2].token), Ok((200, None)));

    // Back on the same database and ADS port; at once a new revocation through the API.
    let serve = ServeProcess::start(dir.path(), &key_file, admin, xds, &serve_args).unwrap();
    phase.store(BACK, Ordering::SeqCst);
    let returned = serve.listening_since;
    doomed[3].revoking();
    let api_deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // The admin API listens a moment after ADS does.
        let status = admin_post(
            &client,
            &admin.to_string(),
            &admin_key.key,
            "/admin/v1/revocations",
            serde_json::json!({"jti": doomed[3].jti}),
        );
        if status == Ok(200) {
            break;
        }
        assert!(
            Instant::now() < api_deadline,
            "admin API: {status:?}\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The first refusal any client saw (the end of its request: an upper bound).
    let in_force = |d: &Doomed| {
        until_refused(&client, &url, d);
        d.enforced().unwrap() - returned
    };
    let made_while_down = in_force(&doomed[2]);
    let made_after_return = in_force(&doomed[3]);
    println!(
        "control plane back → enforced: revocation made while it was down {made_while_down:?}, \
         made right after its return {made_after_return:?}"
    );
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    writer.join().unwrap();

    let violations = observed.violations.lock().unwrap();
    println!(
        "{} requests through Envoy, {} wrong answers; valid passed up/down/back {:?}, revoked refused {:?}",
        observed.requests.load(Ordering::SeqCst),
        violations.len(),
        observed.valid_passed.each_ref().map(|n| n.load(Ordering::SeqCst)),
        observed.revoked_refused.each_ref().map(|n| n.load(Ordering::SeqCst)),
    );
    assert!(
        violations.is_empty(),
        "{} wrong answers of {} requests, first: {:?}\ncontrol plane:\n{}",
        violations.len(),
        observed.requests.load(Ordering::SeqCst),
        &violations[..violations.len().min(10)],
        serve.log()
    );
    for (at, name) in [(UP, "up"), (DOWN, "down"), (BACK, "back")] {
        let (passed, refused) = (
            observed.valid_passed[at as usize].load(Ordering::SeqCst),
            observed.revoked_refused[at as usize].load(Ordering::SeqCst),
        );
        assert!(
            passed >= 10 && refused >= 10,
            "steady traffic while the control plane was {name}: {passed} valid passed, {refused} revoked refused"
        );
    }
    for (at, name) in [(UP, "up"), (BACK, "back")] {
        assert!(
            writes_ok[at as usize].load(Ordering::SeqCst) > 0,
            "route changes went through while it was {name}"
        );
    }
    assert!(
        made_while_down < RETURN_TO_ENFORCEMENT && made_after_return < RETURN_TO_ENFORCEMENT,
        "changes in force {made_while_down:?} and {made_after_return:?} after the control plane's return"
    );
    assert!(
        openai
            .received()
            .iter()
            .all(|r| !r.contains(&revoked.token)),
        "a client credential reached the provider"
    );
}
