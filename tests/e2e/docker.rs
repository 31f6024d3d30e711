//! The bundled docker setup, checked without a Docker engine (none runs here): the compose
//! file, the Dockerfile and the entrypoint script must agree with each other and with what the
//! tests run — the Envoy version, envoy/envoy-xds.yaml and its addresses, the module path, the
//! mock providers' ports, the certificates the entrypoint makes and the bootstrap reads.
//! envoy-xds.yaml itself runs in a local Envoy in xds.rs, tls.rs and make demo.

use std::process::Command;

use serde_yaml::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(tokenward_e2e::repo_root().join(path)).unwrap()
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_compose_file_runs_the_tested_envoy_on_the_shipped_bootstrap() {
    let compose = yaml("envoy/docker-compose.yaml");
    let services = &compose["services"];
    let envoy_version = read("scripts/install-deps.sh")
        .lines()
        .find_map(|l| l.strip_prefix("ENVOY_VERSION="))
        .unwrap()
        .to_string();
    let envoy = &services["envoy"];
    assert_eq!(
        envoy["image"].as_str(),
        Some(format!("envoyproxy/envoy:v{envoy_version}").as_str()),
        "the Envoy the tests use"
    );
    for service in ["envoy", "mock-providers"] {
        assert_eq!(
            services[service]["network_mode"], "service:control-plane",
            "{service} shares the control plane's addresses"
        );
    }
    // The bootstrap and the module are mounted where the command and the bootstrap look.
    let workdir = envoy["working_dir"].as_str().unwrap();
    let volumes = strings(&envoy["volumes"]);
    let mount = |source: &str| {
        volumes
            .iter()
            .find(|v| v.starts_with(source))
            .and_then(|v| v.split(':').nth(1))
            .unwrap_or_else(|| panic!("{source} is mounted"))
            .to_string()
    };
    let bootstrap_in_container = mount("./envoy-xds.yaml");
    assert_eq!(
        strings(&envoy["command"]),
        ["envoy", "-c", bootstrap_in_container.as_str()]
    );
    let bootstrap = yaml("envoy/envoy-xds.yaml");
    let default_module = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
        ["filters"][0]["typed_config"]["http_filters"][0]["config_discovery"]["default_config"]
        ["config"]["vm_config"]["code"]["local"]["filename"]
        .as_str()
        .unwrap();
    assert_eq!(
        mount("../dist/tokenward.wasm"),
        format!("{workdir}/{default_module}")
    );
    // Sources exist relative to the compose file.
    let envoy_dir = tokenward_e2e::repo_root().join("envoy");
    assert!(envoy_dir.join("envoy-xds.yaml").is_file());
    for service in ["control-plane", "mock-providers"] {
        let build = &services[service]["build"];
        let context = envoy_dir.join(build["context"].as_str().unwrap());
        assert!(
            context
                .join(build["dockerfile"].as_str().unwrap())
                .is_file(),
            "{service}'s Dockerfile"
        );
    }
    // The gateway's port is published (Envoy listens in the control plane's namespace).
    let listener_port = bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]
        ["port_value"]
        .as_u64()
        .unwrap();
    assert!(strings(&services["control-plane"]["ports"])
        .contains(&format!("{listener_port}:{listener_port}")));
}

#[test]
fn the_dockerfile_builds_binaries_that_exist_and_copies_files_that_exist() {
    let dockerfile = read("control-plane/Dockerfile");
    let root = tokenward_e2e::repo_root();
    assert_eq!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count(),
        2,
        "a build stage and a slim one"
    );
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let source = line.split_whitespace().nth(1).unwrap();
        assert!(root.join(source).exists(), "{line}");
    }
    let manifests = read("control-plane/Cargo.toml") + &read("tests/Cargo.toml");
    for bin in ["tokenward", "mock_providers"] {
        assert!(
            dockerfile.contains(&format!("--bin {bin}")),
            "{bin} is built"
        );
        assert!(
            manifests.contains(&format!("name = \"{bin}\"")),
            "{bin} is a binary of the workspace"
        );
        assert!(
            dockerfile.contains(&format!("target/release/{bin}")),
            "{bin} is copied"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let script = root.join("envoy/compose-start.sh");
    assert!(
        std::fs::metadata(&script).unwrap().permissions().mode() & 0o111 != 0,
        "the entrypoint is executable"
    );
}

#[test]
fn the_entrypoint_points_at_the_mocks_and_the_bootstrap_at_the_control_plane() {
    let script = read("envoy/compose-start.sh");
    let status = Command::new("sh")
        .arg("-n")
        .arg(tokenward_e2e::repo_root().join("envoy/compose-start.sh"))
        .status()
        .unwrap();
    assert!(status.success(), "compose-start.sh parses");
    let mocks = read("tests/src/bin/mock_providers.rs");
    for (name, port) in [("openai", 9101), ("anthropic", 9102), ("gemini", 9103)] {
        assert!(
            mocks.contains(&format!("(\"{name}\", {port})")),
            "the mock {name} listens on {port}"
        );
        assert!(
            script.contains(&format!("--upstream {name}=127.0.0.1:{port}")),
            "the {name} cluster goes to its mock"
        );
    }
    let bootstrap = yaml("envoy/envoy-xds.yaml");
    let endpoints = bootstrap_replicas(&bootstrap);
    assert_eq!(
        endpoints[0],
        format!("127.0.0.1:{}", script_default(&script, "XDS_PORT")),
        "the control plane listens where the bootstrap looks first"
    );
    assert!(
        script.contains("--xds-listen \"127.0.0.1:$XDS_PORT\""),
        "ADS on loopback, at XDS_PORT"
    );
    assert!(
        script.contains("--wasm-path dist/tokenward.wasm"),
        "the same vm_config as the bootstrap's default"
    );
}

/// The replicas (address:port) the bootstrap's ADS cluster lists.
fn bootstrap_replicas(bootstrap: &Value) -> Vec<String> {
    let cluster = &bootstrap["static_resources"]["clusters"][0];
    assert_eq!(cluster["name"], "tokenward_control_plane");
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            let address = &e["endpoint"]["address"]["socket_address"];
            format!(
                "{}:{}",
                address["address"].as_str().unwrap(),
                address["port_value"].as_u64().unwrap()
            )
        })
        .collect()
}

/// The default the script gives `NAME` (`NAME=${TOKENWARD_…:-default}`).
fn script_default(script: &str, name: &str) -> String {
    script
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=${{")))
        .and_then(|l| l.split_once(":-"))
        .and_then(|(_, rest)| rest.strip_suffix('}'))
        .unwrap_or_else(|| panic!("compose-start.sh sets {name}"))
        .to_string()
}

/// The script's commands, one per logical line (`\`-continued lines joined).
fn script_commands(script: &str) -> Vec<String> {
    let mut commands = vec![String::new()];
    for line in script.lines() {
        let current = commands.last_mut().unwrap();
        match line.trim_end().strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                commands.push(String::new());
            }
        }
    }
    commands.into_iter().map(|c| c.trim().to_string()).collect()
}

/// A `tokenward …` command of the script with its variables set, as argv.
fn tokenward_argv(command: &str, vars: &[(&str, &str)]) -> Vec<String> {
    let mut command = command.trim_start_matches("exec ").to_string();
    for (name, value) in vars {
        command = command.replace(&format!("${name}"), value);
    }
    command
        .split_whitespace()
        .map(|w| w.trim_matches('"').to_string())
        .collect()
}

#[test]
fn the_bundled_setup_makes_the_certificates_envoy_reads_and_serves_ads_over_mutual_tls() {
    use tokenward_control_plane::cli::{Cli, Command as CliCommand};
    use tokenward_control_plane::tls::dev_certs;
    let script = read("envoy/compose-start.sh");
    let compose = yaml("envoy/docker-compose.yaml");
    let bootstrap = yaml("envoy/envoy-xds.yaml");
    let services = &compose["services"];
    let tls_dir = script
        .lines()
        .find_map(|l| l.strip_prefix("TLS=${TOKENWARD_TLS_DIR:-"))
        .and_then(|l| l.strip_suffix('}'))
        .expect("compose-start.sh sets TLS")
        .to_string();
    let commands = script_commands(&script);

    // The script's dev-certs command, run here into a directory laid out as Envoy's working
    // directory: every file the bootstrap's TLS section names is made.
    let workdir = tempfile::tempdir().unwrap();
    let made = workdir.path().join("tls");
    let dev_certs_command = commands
        .iter()
        .find(|c| c.starts_with("tokenward tls dev-certs"))
        .expect("compose-start.sh makes certificates");
    let argv = tokenward_argv(dev_certs_command, &[("TLS", made.to_str().unwrap())]);
    let cli = <Cli as clap::Parser>::try_parse_from(&argv).unwrap();
    tokenward_control_plane::cli::run(&cli, &mut Vec::new(), &mut Vec::new()).unwrap();
    let cluster = &bootstrap["static_resources"]["clusters"][0];
    let tls_context = &cluster["transport_socket"]["typed_config"];
    let common = &tls_context["common_tls_context"];
    let bootstrap_files = [
        &common["tls_certificates"][0]["certificate_chain"]["filename"],
        &common["tls_certificates"][0]["private_key"]["filename"],
        &common["validation_context"]["trusted_ca"]["filename"],
    ];
    for file in bootstrap_files {
        let file = file.as_str().unwrap();
        assert!(file.starts_with("tls/"), "{file} is in the mounted tls/");
        assert!(
            workdir.path().join(file).is_file(),
            "{file} is made by the script"
        );
    }
    // The node certificate is the bootstrap's node's, and the server name it checks is the one
    // dev-certs puts in the server certificate by default.
    let node_id = bootstrap["node"]["id"].as_str().unwrap();
    assert!(dev_certs_command.contains(&format!("--node-id {node_id}")));
    assert_eq!(
        bootstrap_files[0].as_str().unwrap(),
        format!(
            "tls/{}",
            dev_certs::node_cert(std::path::Path::new(""), node_id).display()
        )
    );
    assert_eq!(tls_context["sni"], dev_certs::SERVER_NAME);
    assert_eq!(
        common["validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
        dev_certs::SERVER_NAME
    );
    assert!(
        !dev_certs_command.contains("--server-name"),
        "the default names"
    );

    // `tokenward serve` as the script runs it: accepted by the exposure rule (the published
    // admin API over TLS, ADS mutual TLS), with the files the dev-certs command made.
    let serve = commands
        .iter()
        .find(|c| c.starts_with("exec tokenward") && c.contains(" serve "))
        .unwrap();
    let argv = tokenward_argv(
        serve,
        &[
            ("TLS", &tls_dir),
            ("DATA", "/data"),
            ("ADMIN_PORT", "8080"),
            ("XDS_PORT", "18000"),
        ],
    );
    let cli = <Cli as clap::Parser>::try_parse_from(&argv).unwrap();
    let CliCommand::Serve(args) = &cli.command else {
        panic!("{argv:?} is not serve");
    };
    args.check_exposure().unwrap();
    let files = args.tls_files().expect("serve uses TLS");
    for path in [
        &files.cert,
        &files.key,
        files.client_ca.as_ref().expect("mutual TLS"),
    ] {
        let name = path.strip_prefix(&tls_dir).unwrap();
        assert!(
            made.join(name).is_file(),
            "{} is made by the script",
            path.display()
        );
    }

    // One volume: written by the control plane at $TLS, read by Envoy as tls/ in its working
    // directory, and Envoy waits until the control plane has written it.
    let mount_of = |service: &str, volume: &str| {
        strings(&services[service]["volumes"])
            .iter()
            .find_map(|v| v.strip_prefix(&format!("{volume}:")).map(str::to_string))
            .unwrap_or_else(|| panic!("{service} mounts {volume}"))
    };
    assert_eq!(mount_of("control-plane", "tokenward-tls"), tls_dir);
    let envoy = &services["envoy"];
    assert_eq!(
        mount_of("envoy", "tokenward-tls"),
        format!("{}/tls:ro", envoy["working_dir"].as_str().unwrap())
    );
    assert!(compose["volumes"]["tokenward-tls"].is_mapping());
    assert_eq!(
        envoy["depends_on"]["control-plane"]["condition"],
        "service_healthy"
    );
    let health = strings(&services["control-plane"]["healthcheck"]["test"]);
    let checked = health.last().unwrap();
    assert_eq!(
        checked.strip_prefix(&format!("{tls_dir}/")),
        bootstrap_files[0].as_str().unwrap().strip_prefix("tls/"),
        "healthy once the client certificate exists"
    );
    // The keys are 0600 and the control plane's: Envoy reads them as root.
    assert_eq!(envoy["environment"]["ENVOY_UID"], "0");
}

#[test]
fn the_ha_profile_runs_two_replicas_over_one_postgres_on_the_bootstrap_s_addresses() {
    let compose = yaml("envoy/docker-compose.yaml");
    let bootstrap = yaml("envoy/envoy-xds.yaml");
    let services = &compose["services"];
    let ha = [
        "postgres-ha",
        "control-plane-ha-1",
        "control-plane-ha-2",
        "mock-providers-ha",
        "envoy-ha",
    ];
    for service in ha {
        assert_eq!(strings(&services[service]["profiles"]), ["ha"], "{service}");
    }
    // One network namespace, held by Postgres (it outlives either replica): the bootstrap's
    // loopback addresses hold.
    for service in &ha[1..] {
        assert_eq!(
            services[*service]["network_mode"], "service:postgres-ha",
            "{service}"
        );
    }
    let env = |service: &str, name: &str| {
        services[service]["environment"][name]
            .as_str()
            .unwrap_or_else(|| panic!("{service} sets {name}"))
            .to_string()
    };
    let replicas = ["control-plane-ha-1", "control-plane-ha-2"];
    let mut xds_ports: Vec<String> = replicas
        .iter()
        .map(|r| format!("127.0.0.1:{}", env(r, "TOKENWARD_XDS_PORT")))
        .collect();
    xds_ports.sort();
    let mut listed = bootstrap_replicas(&bootstrap);
    listed.sort();
    assert_eq!(
        xds_ports, listed,
        "the replicas serve ADS where the bootstrap looks"
    );
    assert_ne!(
        env(replicas[0], "TOKENWARD_ADMIN_PORT"),
        env(replicas[1], "TOKENWARD_ADMIN_PORT")
    );
    assert_ne!(
        env(replicas[0], "TOKENWARD_REPLICA_ID"),
        env(replicas[1], "TOKENWARD_REPLICA_ID")
    );
    for replica in replicas {
        let url = env(replica, "TOKENWARD_DATABASE_URL");
        assert!(
            url.starts_with("postgres://") && url.contains("@127.0.0.1:5432/"),
            "{url}"
        );
        let volumes = strings(&services[replica]["volumes"]);
        assert!(
            volumes.contains(&"tokenward-ha-data:/data".to_string()),
            "one master key"
        );
        assert!(
            volumes.contains(&"tokenward-ha-tls:/tls".to_string()),
            "one CA"
        );
        // Each admin API published.
        let published = format!(":{}", env(replica, "TOKENWARD_ADMIN_PORT"));
        assert!(strings(&services["postgres-ha"]["ports"])
            .iter()
            .any(|p| p.ends_with(&published)));
    }
    assert_eq!(
        services["control-plane-ha-2"]["depends_on"]["control-plane-ha-1"]["condition"],
        "service_healthy"
    );
    assert_eq!(services["envoy-ha"]["image"], services["envoy"]["image"]);
    assert_eq!(
        services["envoy-ha"]["command"], services["envoy"]["command"],
        "the same bootstrap"
    );
    let listener = bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]
        ["port_value"]
        .as_u64()
        .unwrap();
    assert!(strings(&services["postgres-ha"]["ports"])
        .iter()
        .any(|p| p.ends_with(&format!(":{listener}"))));

    // The entrypoint as the profile runs it, twice over one (test) database: the first sets
    // the installation up, the second finds it; both serve ADS; an Envoy on the shipped
    // bootstrap, with the certificates the replicas share, gets its configuration.
    let db = tokenward_control_plane::testing::TestDatabase::create();
    let data = tempfile::tempdir().unwrap();
    let tls = tempfile::tempdir().unwrap();
    let binaries = tokenward_e2e::control_plane::tokenward_binary()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        binaries.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let port = || tokenward_e2e::fleet::free_port().port();
    let start = |replica: &str| {
        let (admin, xds) = (port(), port());
        let mut child = Command::new("sh")
            .arg(tokenward_e2e::repo_root().join("envoy/compose-start.sh"))
            .arg("control-plane")
            .current_dir(tokenward_e2e::repo_root())
            .env("PATH", &path)
            .env("TOKENWARD_DATABASE_URL", &db.url)
            .env("TOKENWARD_DATA_DIR", data.path())
            .env("TOKENWARD_TLS_DIR", tls.path())
            .env("TOKENWARD_REPLICA_ID", replica)
            .env("TOKENWARD_ADMIN_PORT", admin.to_string())
            .env("TOKENWARD_XDS_PORT", xds.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (serving, served) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut log = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.starts_with("tokenward: ADS on") {
                    let _ = serving.send(Ok(()));
                }
                log.push_str(&line);
                log.push('\n');
            }
            let _ = serving.send(Err(log));
        });
        match served.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            other => panic!("{replica} did not serve: {other:?}"),
        }
        (
            Killed(child),
            std::net::SocketAddr::from(([127, 0, 0, 1], xds)),
        )
    };
    let (_one, xds_one) = start("replica-1");
    let (_two, xds_two) = start("replica-2");
    let operator = tokenward_e2e::control_plane::plane_at(
        &db.url,
        std::fs::read_to_string(data.path().join("dev-master.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let audit = operator.store().audit_log(1000).unwrap();
    assert_eq!(
        audit.iter().filter(|e| e.action == "init").count(),
        1,
        "set up once"
    );
    let token = std::fs::read_to_string(data.path().join("token")).unwrap();
    let token = token.trim();
    let node = bootstrap["node"]["id"].as_str().unwrap();
    let config = tokenward_e2e::envoy::EnvoyConfig::shipped_xds()
        .unwrap()
        .with_control_planes_tls(
            &[xds_one, xds_two],
            &tokenward_e2e::envoy::wasm_module().unwrap(),
            &tokenward_e2e::envoy::ClientTls {
                ca: tls.path().join("ca.crt"),
                cert: tls.path().join(format!("node-{node}.crt")),
                key: tls.path().join(format!("node-{node}.key")),
            },
        )
        .unwrap();
    // In the repository, as the image's /tokenward: the module the replicas push is at
    // dist/tokenward.wasm.
    let envoy = tokenward_e2e::envoy::Envoy::start(
        config,
        &tokenward_e2e::envoy::EnvoyOptions {
            working_dir: Some(tokenward_e2e::repo_root()),
            ..tokenward_e2e::envoy::EnvoyOptions::default()
        },
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let bogus = tokenward_e2e::fleet::chat(&envoy, "tw_not_a_key");
        if bogus.status == 401 {
            // Configured: the installation's own token passes authentication (its provider,
            // the profile's mock, is not running here).
            let reply = tokenward_e2e::fleet::chat(&envoy, token);
            assert!(
                reply.status != 401 && reply.status != 403,
                "{} {}",
                reply.status,
                reply.body
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no configuration: {} {}\n{}",
            bogus.status,
            bogus.body,
            envoy.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
