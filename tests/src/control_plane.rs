//! The control plane, run in process for tests and measurements: `tokenward serve`'s HTTP
//! and ADS servers on loopback ports (plain, or TLS with certificates the test made), in a
//! thread, stopped when dropped.

use std::path::Path;
use std::sync::Arc;

use tokenward_control_plane::admin::AdminState;
use tokenward_control_plane::cli::run_servers;
use tokenward_control_plane::crypto::MasterKey;
use tokenward_control_plane::plane::ControlPlane;
use tokenward_control_plane::store::SqliteStore;
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
        Served::start_with(db, master, settings, xds_port, None)
    }

    /// The same over TLS (`tokenward serve --tls-cert … [--xds-client-ca …]`).
    pub fn start_tls(
        db: &Path,
        master: &str,
        settings: SnapshotSettings,
        tls: TlsFiles,
    ) -> anyhow::Result<Served> {
        Served::start_with(db, master, settings, 0, Some(tls))
    }

    fn start_with(
        db: &Path,
        master: &str,
        settings: SnapshotSettings,
        xds_port: u16,
        tls: Option<TlsFiles>,
    ) -> anyhow::Result<Served> {
        let state = Arc::new(AdminState::new(plane(db, master)?, Box::new(unix_now)));
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
                run_servers(state, settings, admin, Some(xds), tls, async {
                    let _ = stopped.await;
                })
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
