//! `make bench` (third part): several control-plane replicas over one Postgres database, one
//! run. Cross-replica revocation: committed through replica 1's admin API, refused by an
//! Envoy fed by replica 2, p50 and p99 over many trials. Failover: the replica an Envoy
//! streams from is SIGKILLed; how long until that Envoy enforces the next change committed
//! through the other. Admin writes: token mints per second through the admin API at 32
//! connections, Postgres beside SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::model::Alg;
use tokenward_control_plane::plane::{ApiKeyRequest, InitSettings, SCOPE_ADMIN_WRITE};
use tokenward_control_plane::xds::snapshot::SnapshotSettings;
use tokenward_e2e::control_plane::{plane_at, unix_now, ServeProcess, Served};
use tokenward_e2e::fleet::{admin_call, mint, percentile, revocation_trial, until, Fleet};

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Which replica (by name) the Envoy `node` streams from, as `admin` sees the fleet.
fn serving(fleet: &Fleet, admin: std::net::SocketAddr, node: &str) -> Option<String> {
    let (_, proxies) = admin_call(admin, &fleet.admin_key, "GET", "/admin/v1/proxies", None);
    let entry = &proxies[node];
    (entry["connected"] == true)
        .then(|| entry["replica"].as_str().map(str::to_string))
        .flatten()
}

/// Mints per second through `admin`'s POST /admin/v1/tokens, `wrk` with 32 connections.
fn mint_throughput(admin: std::net::SocketAddr, key: &str) -> anyhow::Result<(f64, Duration)> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("mint.lua");
    std::fs::write(
        &script,
        r#"wrk.method = "POST"
wrk.body = '{"subject":"bench","scopes":["chat"],"ttl_seconds":600}'
wrk.headers["Content-Type"] = "application/json"
"#,
    )?;
    let output = std::process::Command::new("wrk")
        .args(["-t2", "-c32", "-d10s", "--latency", "-s"])
        .arg(&script)
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .arg(format!("http://{admin}/admin/v1/tokens"))
        .output()
        .map_err(|e| anyhow::anyhow!("running wrk (make bench installs it): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        !text.contains("Non-2xx"),
        "mints were refused under load:\n{text}"
    );
    let (throughput, p99) = tokenward_e2e::wrk::report(&text)?;
    Ok((throughput, p99.unwrap_or_default()))
}

fn main() -> anyhow::Result<()> {
    let trials: usize = std::env::var("BENCH_REVOCATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let fleet = Fleet::create();

    eprintln!("cross-replica revocation: {trials} trials…");
    let (one, two) = (fleet.replica("replica-1"), fleet.replica("replica-2"));
    let envoy_b = fleet.envoy("envoy-b", &[two.xds]);
    let mut delays: Vec<Duration> = (0..trials)
        .map(|i| {
            revocation_trial(
                &envoy_b,
                two.admin,
                one.admin,
                &fleet.admin_key,
                &format!("t{i}"),
            )
        })
        .collect();
    delays.sort();
    drop(envoy_b);
    drop((one, two));

    eprintln!("failover: the Envoy's replica SIGKILLed, 3 times…");
    let mut replicas = [
        Some(fleet.replica_process("replica-1")),
        Some(fleet.replica_process("replica-2")),
    ];
    let addrs: Vec<(std::net::SocketAddr, std::net::SocketAddr)> = replicas
        .iter()
        .map(|r| r.as_ref().map(|r| (r.admin, r.xds)).unwrap())
        .collect();
    let envoy = fleet.envoy("envoy-a", &[addrs[0].1, addrs[1].1]);
    let (token, _) = mint(addrs[0].0, &fleet.admin_key, "warmup");
    until(&envoy, &token, Duration::from_secs(30), |r| r.status == 200);
    let mut failovers = Vec::new();
    for round in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let on = loop {
            if let Some(on) = serving(&fleet, addrs[0].0, "envoy-a")
                .or_else(|| serving(&fleet, addrs[1].0, "envoy-a"))
            {
                break on;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the Envoy shows in no replica's fleet"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let doomed = if on == "replica-1" { 0 } else { 1 };
        let survivor = addrs[1 - doomed].0;
        let (token, jti) = mint(survivor, &fleet.admin_key, &format!("f{round}"));
        until(&envoy, &token, Duration::from_secs(30), |r| r.status == 200);
        replicas[doomed].take().unwrap().kill()?;
        let started = Instant::now();
        let (status, _) = admin_call(
            survivor,
            &fleet.admin_key,
            "POST",
            "/admin/v1/revocations",
            Some(serde_json::json!({"jti": jti})),
        );
        anyhow::ensure!(status == 200, "revoking through the survivor: {status}");
        until(&envoy, &token, Duration::from_secs(30), |r| r.status == 401);
        let enforced = started.elapsed();
        // ACKed: the survivor shows the Envoy as its own.
        let name = if doomed == 0 {
            "replica-2"
        } else {
            "replica-1"
        };
        while serving(&fleet, survivor, "envoy-a").as_deref() != Some(name) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the Envoy never reconnected"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        failovers.push((enforced, started.elapsed()));
        // Back on the same ports for the next round.
        let (admin, xds) = addrs[doomed];
        let data = fleet.dir.path().join(format!("restart-{round}"));
        std::fs::create_dir_all(&data)?;
        let mut args: Vec<String> = vec![
            "--database".into(),
            fleet.db.url.clone(),
            "--replica-id".into(),
            format!("replica-{}", doomed + 1),
            "--wasm-path".into(),
            fleet.settings.wasm_path.clone(),
        ];
        for (cluster, addr) in &fleet.settings.upstream_overrides {
            args.push("--upstream".into());
            args.push(format!("{cluster}={addr}"));
        }
        replicas[doomed] = Some(ServeProcess::start(
            &data,
            &fleet.master_file,
            admin,
            xds,
            &args,
        )?);
    }
    drop(envoy);
    drop(replicas);

    eprintln!("admin writes: token mints at 32 connections, Postgres and SQLite…");
    let writer = fleet.operator().create_api_key(
        &ApiKeyRequest {
            subject: "bench-writer".into(),
            scopes: vec![SCOPE_ADMIN_WRITE.into()],
            ..ApiKeyRequest::default()
        },
        unix_now(),
    )?;
    let replica = fleet.replica("replica-mint");
    let (pg_mints, pg_p99) = mint_throughput(replica.admin, &writer.key)?;
    drop(replica);
    let dir = tempfile::tempdir()?;
    let sqlite = dir.path().join("tokenward.db");
    let master = MasterKey::generate()?.to_hex();
    let operator = plane_at(&sqlite.display().to_string(), &master)?;
    let (_, sqlite_admin) = operator.init(
        &InitSettings {
            issuer: "https://cp.bench".into(),
            audiences: vec!["gateway".into()],
            alg: Alg::EdDSA,
        },
        unix_now(),
    )?;
    let served = Served::start(&sqlite, &master, SnapshotSettings::default(), 0)?;
    let (sqlite_mints, sqlite_p99) = mint_throughput(served.admin, &sqlite_admin.key)?;

    println!("\ntokenward control plane, several replicas over one Postgres, one run");
    println!("| measure | value | target |");
    println!("|---|---:|---:|");
    println!("| revocation through replica 1 → refused by an Envoy on replica 2, p50 ({trials} trials) | {} | |", ms(percentile(&delays, 0.5)));
    println!(
        "| same, p99 | {} | ≤ 1000 ms |",
        ms(percentile(&delays, 0.99))
    );
    for (i, (enforced, acked)) in failovers.iter().enumerate() {
        println!("| failover {}: the Envoy's replica SIGKILLed; next change through the other enforced / the Envoy shown on it | {} / {} | |", i + 1, ms(*enforced), ms(*acked));
    }
    println!("| token mints through the admin API, 32 connections, Postgres | {pg_mints:.0}/s (p99 {}) | |", ms(pg_p99));
    println!(
        "| same, SQLite | {sqlite_mints:.0}/s (p99 {}) | |",
        ms(sqlite_p99)
    );
    Ok(())
}
