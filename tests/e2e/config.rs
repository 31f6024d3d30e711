//! Configuration as Envoy applies it: none → fail closed with 503; an invalid document →
//! refused with its reason logged; every shipped Envoy config passes `envoy --mode validate`.

use std::process::Command;

use tokenward_e2e::envoy::{envoy_binary, wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::setup::{ProviderSecrets, SigningKey};

use crate::gateway::{Gateway, Options};

#[test]
fn without_configuration_every_request_gets_503_not_configured() {
    let gw = Gateway::start_raw(
        Options::default(),
        None,
        SigningKey::generate("k1"),
        ProviderSecrets::generate(),
    );
    let token = gw.token();
    for path in ["/v1/models", "/v1/chat/completions", "/anything"] {
        let reply = gw.send(
            "GET",
            path,
            &[("authorization", format!("Bearer {token}").as_bytes())],
            None,
        );
        assert_eq!(reply.status, 503, "{path}: {}", reply.body);
        assert_eq!(reply.error_code().as_deref(), Some("not_configured"));
    }
    assert!(gw.all_received().is_empty());
}

#[test]
fn invalid_configuration_is_refused_with_its_reason() {
    let config = EnvoyConfig::shipped()
        .unwrap()
        .with_wasm(&wasm_module().unwrap())
        .unwrap()
        .with_filter_config(
            r#"{"issuer":"x","audiences":["a"],"providers":[],"routes":[],"cach":{}}"#,
        )
        .unwrap();
    let error = match Envoy::start(config, &EnvoyOptions::default()) {
        Ok(_) => panic!("Envoy accepted an invalid filter configuration"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("configuration refused"), "{error}");
    assert!(
        error.contains("unknown field `cach`"),
        "the reason is logged: {error}"
    );
}

#[test]
fn every_shipped_envoy_config_validates() {
    let envoy = envoy_binary().unwrap();
    let root = tokenward_e2e::repo_root();
    // Envoy validates from a directory laid out as the bootstraps expect: dist/ (the module)
    // and tls/ (the mutual-TLS files envoy-xds.yaml names, made here as an operator would).
    let workdir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root.join("dist"), workdir.path().join("dist")).unwrap();
    tokenward_control_plane::tls::dev_certs::write(
        &tokenward_control_plane::tls::dev_certs::DevCertRequest {
            out: workdir.path().join("tls"),
            node_ids: vec!["tokenward-gateway-1".into()],
            server_names: vec!["tokenward-control-plane".into()],
            days: 1,
        },
    )
    .unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("envoy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml")
            || path.file_name().and_then(|n| n.to_str()) == Some("docker-compose.yaml")
        {
            continue;
        }
        // The shipped configs name their files relative to the working directory and read
        // provider keys from the environment, as a deployment would.
        let output = Command::new(&envoy)
            .current_dir(workdir.path())
            .args(["--mode", "validate", "-c"])
            .arg(&path)
            .env("OPENAI_API_KEY", "validate-only")
            .env("ANTHROPIC_API_KEY", "validate-only")
            .env("GEMINI_API_KEY", "validate-only")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{} does not validate:\n{text}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 1, "no Envoy config found under envoy/");
}

#[test]
fn shipped_config_without_provider_keys_starts_and_names_the_unavailable_providers() {
    let root = tokenward_e2e::repo_root();
    let output = Command::new(envoy_binary().unwrap())
        .current_dir(&root)
        .args(["--mode", "validate", "-c", "envoy/envoy.yaml"])
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    // Keys and revocations must apply whatever else is missing: the providers without
    // their key are unavailable (503 provider_unavailable), the configuration is not refused.
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("provider \"openai\" is unavailable")
            && text.contains("environment variable \"OPENAI_API_KEY\" is not set"),
        "{text}"
    );
}
