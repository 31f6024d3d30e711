//! Test support for every crate that drives the control plane (feature `test-support`): the
//! command lines the tests run more than once, and a Postgres database per test.

// Test support: a test that cannot get its database fails, saying how to get one.
#![allow(clippy::panic, clippy::unwrap_used)]

/// `route add` for a chat-style route: POST, scope `chat`, the model read from the body.
pub fn body_route_args<'a>(name: &'a str, prefix: &'a str, provider: &'a str) -> Vec<&'a str> {
    vec![
        "route",
        "add",
        "--name",
        name,
        "--path-prefix",
        prefix,
        "--method",
        "POST",
        "--scope",
        "chat",
        "--model-source",
        "body",
        "--provider",
        provider,
    ]
}

/// The OpenAI provider as the tests add it: its credential is given apart, as
/// `ControlPlane::put_provider` takes it.
pub fn openai_provider() -> tokenward_filter::config::ProviderConfig {
    tokenward_filter::config::ProviderConfig {
        name: "openai".into(),
        style: tokenward_filter::config::ProviderStyle::Openai,
        cluster: "openai".into(),
        authority: "api.openai.com".into(),
        credential: tokenward_filter::config::CredentialSource::Env(String::new()),
        headers: Default::default(),
    }
}

/// A database of its own on the Postgres server the tests use, dropped with it.
///
/// The server: `$TOKENWARD_TEST_DATABASE_URL` (any database on it; each test creates its
/// own), else the local one `make deps` starts — its Unix socket as the current user, or
/// 127.0.0.1:5432 as `postgres`. Unreachable: the test fails and says how to start it.
pub struct TestDatabase {
    /// The new database's URL, for `store::open` or `--database`.
    pub url: String,
    server: String,
    name: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let server = test_server_url();
        let mut admin = ::postgres::Client::connect(&server, ::postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {server}: {e}\n\
                 Start it: `make deps` installs and starts Debian's postgresql where it is missing; \
                 on a machine that has it, `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`; \
                 or point TOKENWARD_TEST_DATABASE_URL at a server where this user may create databases."
            )
        });
        let mut random = [0u8; 6];
        crate::crypto::random(&mut random).unwrap_or_default();
        let name = format!(
            "tokenward_test_{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating a test database on {server}: {e}"));
        TestDatabase {
            url: with_database(&server, &name),
            server,
            name,
        }
    }
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user tests connect as over the local socket.
    pub fn user() -> Option<String> {
        os_user()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = ::postgres::Client::connect(&self.server, ::postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn test_server_url() -> String {
    if let Ok(url) = std::env::var("TOKENWARD_TEST_DATABASE_URL") {
        return url;
    }
    let socket = std::path::Path::new("/var/run/postgresql/.s.PGSQL.5432");
    match os_user().filter(|_| socket.exists()) {
        Some(user) => format!("postgresql://{user}@%2Fvar%2Frun%2Fpostgresql/postgres"),
        None => "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_string(),
    }
}

/// The user this process runs as (the role a Unix-socket connection logs in as).
fn os_user() -> Option<String> {
    if let Ok(user) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        if !user.is_empty() {
            return Some(user);
        }
    }
    let output = std::process::Command::new("id").arg("-un").output().ok()?;
    let user = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (!user.is_empty()).then_some(user)
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A request as a `Recorder` got it: its headers and body.
pub type Recorded = (Vec<(String, String)>, String);

/// An HTTP server on loopback standing in for a webhook or an OTLP collector: it records each
/// request (headers, body) and answers with the statuses it was given, then 200.
pub struct Recorder {
    pub url: String,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start(path: &str, statuses: Vec<u16>) -> Recorder {
        use std::sync::{Arc, Mutex};
        let received: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let statuses = Arc::new(Mutex::new(std::collections::VecDeque::from(statuses)));
        let (seen, answers) = (Arc::clone(&received), Arc::clone(&statuses));
        let app = axum::Router::new().route(
            path,
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (seen, answers) = (Arc::clone(&seen), Arc::clone(&answers));
                async move {
                    let headers = headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    seen.lock().unwrap().push((headers, body));
                    let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Recorder {
            url: format!("http://{addr}{path}"),
            received,
            server,
        }
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}
