//! The control plane for tests and measurements: `tokenward serve`'s HTTP and ADS servers
//! in process (on loopback ports, plain or TLS with certificates the test made, in a thread,
//! stopped when dropped), or the built binary as a child process, for what only a process
//! can suffer (SIGKILL).

use std::path::Path;
use std::sync::Arc;

use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::jobs::JobSettings;
use tokenward_control_plane::plane::ControlPlane;
use tokenward_control_plane::server::run_servers;
use tokenward_control_plane::state::ServerState;
use tokenward_control_plane::store::{SqliteStore, Store};
use tokenward_control_plane::tls::TlsFiles;
use tokenward_control_plane::xds::snapshot::SnapshotSettings;

/// A handle on the control plane's database, as a `tokenward` process has one.
pub fn plane(db: &Path, master: &str) -> anyhow::Result<ControlPlane<SqliteStore>> {
    Ok(ControlPlane::new(
        SqliteStore::open(db)?,
        MasterKey::from_hex(master)?,
        "operator",
    ))
}

/// The same on any store: a SQLite path or a `postgres://` URL.
pub fn plane_at(database: &str, master: &str) -> anyhow::Result<ControlPlane<dyn Store>> {
    Ok(ControlPlane::new(
        Arc::<dyn Store>::from(tokenward_control_plane::store::open(database, None)?),
        MasterKey::from_hex(master)?,
        "operator",
    ))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The control plane's servers on free loopback ports, in a thread; dropped: stopped.
pub struct Served {
    pub xds: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Starts the servers on the database at `db`; ADS on `xds_port` (0: any free port).
    pub fn start(
        db: &Path,
        master: &str,
        settings: SnapshotSettings,
        xds_port: u16,
    ) -> anyhow::Result<Served> {
        Served::start_with(
            &db.display().to_string(),
            master,
            settings,
            xds_port,
            None,
            None,
        )
    }

    /// A replica named `replica` over the database at `database` (a `postgres://` URL or a
    /// SQLite path), as `tokenward serve --replica-id` runs it.
    pub fn start_replica(
        database: &str,
        master: &str,
        settings: SnapshotSettings,
        replica: &str,
    ) -> anyhow::Result<Served> {
        Served::start_with(database, master, settings, 0, None, Some(replica))
    }

    /// The same over TLS (`tokenward serve --tls-cert … [--xds-client-ca …]`).
    pub fn start_tls(
        db: &Path,
        master: &str,
        settings: SnapshotSettings,
        tls: TlsFiles,
    ) -> anyhow::Result<Served> {
        Served::start_with(
            &db.display().to_string(),
            master,
            settings,
            0,
            Some(tls),
            None,
        )
    }

    fn start_with(
        database: &str,
        master: &str,
        settings: SnapshotSettings,
        xds_port: u16,
        tls: Option<TlsFiles>,
        replica: Option<&str>,
    ) -> anyhow::Result<Served> {
        let mut state = ServerState::over(plane_at(database, master)?, Box::new(unix_now));
        if let Some(replica) = replica {
            state = state.with_replica(replica);
        }
        let state = Arc::new(state);
        let runtime = tokio::runtime::Runtime::new()?;
        let (admin, xds) = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                tokio::net::TcpListener::bind("127.0.0.1:0").await?,
                tokio::net::TcpListener::bind(("127.0.0.1", xds_port)).await?,
            ))
        })?;
        let (admin_addr, xds_addr) = (admin.local_addr()?, xds.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                run_servers(
                    state,
                    settings,
                    JobSettings::default(),
                    admin,
                    Some(xds),
                    tls,
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap_or_else(|e| eprintln!("control plane: {e:#}"));
            });
        });
        Ok(Served {
            xds: xds_addr,
            admin: admin_addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The built `tokenward` binary: `$TOKENWARD_BIN`, or target/debug/tokenward beside this
/// test's own executable (target/debug/deps/…), which `cargo test --workspace` builds.
pub fn tokenward_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Ok(path) = std::env::var("TOKENWARD_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("tokenward"));
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "no target/debug/tokenward: run `cargo build -p tokenward-control-plane` (`make test` and `cargo test --workspace` build it) or set TOKENWARD_BIN"
    )
}

/// `tokenward serve` as a child process on fixed loopback ports (the same again after a
/// restart), killed when dropped.
pub struct ServeProcess {
    child: std::process::Child,
    pub admin: std::net::SocketAddr,
    pub xds: std::net::SocketAddr,
    /// When the ADS listener was bound (the process said so on stderr).
    pub listening_since: std::time::Instant,
    log: Arc<std::sync::Mutex<String>>,
}

impl ServeProcess {
    /// Starts `tokenward --data-dir <data_dir> --master-key-file <key> serve <args>` and
    /// waits until it listens on ADS.
    pub fn start(
        data_dir: &Path,
        master_key_file: &Path,
        admin: std::net::SocketAddr,
        xds: std::net::SocketAddr,
        args: &[String],
    ) -> anyhow::Result<ServeProcess> {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(tokenward_binary()?);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--master-key-file")
            .arg(master_key_file)
            .arg("serve")
            .arg("--listen")
            .arg(admin.to_string())
            .arg("--xds-listen")
            .arg(xds.to_string())
            .args(args)
            .env_remove("TOKENWARD_MASTER_KEY")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // The control plane dies with the test that started it, even on a crash.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let (listening, listening_rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("tokenward: ADS on") {
                    let _ = listening.send(std::time::Instant::now());
                }
                if let Ok(mut log) = lines.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let listening_since = match listening_rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(at) => at,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                anyhow::bail!("tokenward serve did not listen on ADS within 30 s:\n{log}");
            }
        };
        Ok(ServeProcess {
            child,
            admin,
            xds,
            listening_since,
            log,
        })
    }

    /// SIGKILL: no shutdown, no flush, streams cut mid-flight.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
