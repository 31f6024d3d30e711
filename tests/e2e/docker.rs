//! The bundled docker setup, checked without a Docker engine (none runs here): the compose
//! file, the Dockerfile and the entrypoint script must agree with each other and with what the
//! tests run — the Envoy version, envoy/envoy-xds.yaml and its addresses, the module path, the
//! mock providers' ports. envoy-xds.yaml itself runs in a local Envoy in xds.rs and make demo.

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
    let cluster = &bootstrap["static_resources"]["clusters"][0];
    assert_eq!(cluster["name"], "tokenward_control_plane");
    let address = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    let xds = format!(
        "{}:{}",
        address["address"].as_str().unwrap(),
        address["port_value"].as_u64().unwrap()
    );
    assert!(
        script.contains(&format!("--xds-listen {xds}")),
        "the control plane listens where the bootstrap looks ({xds})"
    );
    assert!(
        script.contains("--wasm-path dist/tokenward.wasm"),
        "the same vm_config as the bootstrap's default"
    );
}
