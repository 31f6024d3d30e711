//! `make bench` (dashboard): how long `tokenward serve` takes to answer each dashboard page
//! with 10 000 API keys and a million usage rows (30 days × ~1 390 keys an hour), on SQLite
//! and on Postgres, one run. Each page is fetched 30 times over loopback after a warm-up;
//! p50 and p95 of the whole exchange, which bounds the server's time from above (target:
//! p95 ≤ 500 ms).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::model::{Alg, ApiKeyRecord};
use tokenward_control_plane::plane::InitSettings;
use tokenward_control_plane::state::Plane;
use tokenward_control_plane::testing::TestDatabase;
use tokenward_control_plane::xds::snapshot::SnapshotSettings;
use tokenward_e2e::client;
use tokenward_e2e::control_plane::{plane_at, unix_now, Served};

const KEYS: usize = 10_000;
const HOURS: u64 = 720;
const ROWS_PER_HOUR: usize = 1_389;
const TRIALS: usize = 30;
const MODELS: &[(&str, &str)] = &[
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("anthropic", "claude-sonnet-4"),
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// 10 000 API keys and a million ledger rows, written through the store as reports land.
fn seed(plane: &Plane, now: u64) -> Duration {
    let started = Instant::now();
    let store = plane.store();
    for i in 0..KEYS {
        store
            .insert_api_key(&ApiKeyRecord {
                id: format!("key-bench-{i:05}"),
                sha256: format!("{:064x}", i + 1),
                subject: format!("team-{}", i % 500),
                tenant: Some(format!("tenant-{}", i % 50)),
                scopes: vec!["chat".into()],
                models: vec!["*".into()],
                plan: None,
                created_at: now - (KEYS - i) as u64,
                expires_at: None,
                revoked_at: None,
            })
            .unwrap();
    }
    let mut seq = 0;
    for h in 0..HOURS {
        let at = now - (HOURS - 1 - h) * 3600;
        let entries: Vec<serde_json::Value> = (0..ROWS_PER_HOUR)
            .map(|j| {
                let key = (h as usize * 7919 + j) % KEYS;
                let (provider, model) = MODELS[(key + h as usize) % MODELS.len()];
                let requests = 1 + (key as u64 * 31 + h) % 40;
                serde_json::json!({
                    "subject": format!("team-{}", key % 500),
                    "tenant": format!("tenant-{}", key % 50),
                    "credential": format!("key-bench-{key:05}"),
                    "provider": provider, "model": model, "requests": requests,
                    "input_tokens": requests * 350, "output_tokens": requests * 90,
                    "cached_input_tokens": 0, "cost_micro_usd": requests * 1_700,
                })
            })
            .collect();
        for half in entries.chunks(ROWS_PER_HOUR.div_ceil(2)) {
            seq += 1;
            let report =
                serde_json::json!({"node": "bench", "boot": "b", "seq": seq, "entries": half});
            plane
                .record_usage(&serde_json::from_value(report).unwrap(), at)
                .unwrap();
        }
    }
    started.elapsed()
}

fn measure(database: &str, label: &str) {
    let master = MasterKey::generate().unwrap().to_hex();
    let plane = plane_at(database, &master).unwrap();
    let now = unix_now();
    let (_, admin) = plane
        .init(
            &InitSettings {
                issuer: "https://cp.bench".into(),
                audiences: vec!["gateway".into()],
                alg: Alg::EdDSA,
            },
            now,
        )
        .unwrap();
    let seeded = seed(&plane, now);
    println!(
        "{label}: seeded {KEYS} API keys and {} usage rows in {seeded:.1?}",
        HOURS as usize * ROWS_PER_HOUR
    );
    let settings = SnapshotSettings {
        wasm_path: "/unused.wasm".into(),
        env_keys: vec![],
        upstream_overrides: Default::default(),
        ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
    };
    let served = Served::start_replica(database, &master, settings, "bench").unwrap();
    let base = format!("http://{}", served.admin);
    let form = format!("credential={}", admin.key);
    // As a browser: the sign-in's redirect is not followed, its cookie is kept.
    let http = client::client_with(
        reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()),
    );
    let login = client::send_with(
        &http,
        "POST",
        &format!("{base}/ui/login"),
        &[("content-type", b"application/x-www-form-urlencoded")],
        Some(&form),
    )
    .unwrap();
    let cookie = login
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {} {}", login.status, login.body))
        .to_string();
    let pages = [
        "/ui/keys",
        "/ui/keys?page=150",
        "/ui/keys?q=team-42",
        "/ui/usage",
        "/ui/usage?since=7d&by=model",
        "/ui/usage?since=30d&by=credential",
        "/ui/usage?since=30d&subject=team-42",
        "/ui/fleet",
        "/ui/signing-keys",
        "/ui/audit",
        "/ui/alerts",
        "/ui/usage.csv",
    ];
    println!("| page ({label}) | first load | p50 | p95 | bytes |");
    println!("|---|---|---|---|---|");
    for page in pages {
        let url = format!("{base}{page}");
        let fetch = || {
            let started = Instant::now();
            let reply =
                client::send_with(&http, "GET", &url, &[("cookie", cookie.as_bytes())], None)
                    .unwrap();
            assert_eq!(reply.status, 200, "{page}: {}", reply.body);
            (started.elapsed(), reply.body.len())
        };
        let (first, _) = fetch();
        let mut times = Vec::with_capacity(TRIALS);
        let mut bytes = 0;
        for _ in 0..TRIALS {
            let (time, size) = fetch();
            times.push(time);
            bytes = size;
        }
        times.sort();
        println!(
            "| `{page}` | {:.0} ms | {:.0} ms | {:.0} ms | {bytes} |",
            first.as_secs_f64() * 1000.0,
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.95).as_secs_f64() * 1000.0
        );
    }
    drop(served);
}

fn main() {
    let stores = std::env::var("DASHBOARD_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    for store in stores.split(',') {
        match store.trim() {
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("tokenward.db");
                measure(&path.display().to_string(), "SQLite");
            }
            "postgres" => {
                let db = TestDatabase::create();
                measure(&db.url, "Postgres");
            }
            other => panic!("DASHBOARD_STORES: unknown store {other:?} (sqlite, postgres)"),
        }
    }
}
