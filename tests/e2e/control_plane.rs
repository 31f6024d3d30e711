//! The control plane without its server: an operator sets it up with the `tokenward` CLI,
//! renders the filter's configuration, and a real Envoy enforces it — minted tokens and API
//! keys pass with the provider's credential swapped in, and a revocation rendered and
//! applied (a config update, no restart) refuses them.

use std::path::Path;
use tokenward_control_plane::testing::body_route_args;

use clap::Parser;
use tokenward_control_plane::cli::{run, Cli};
use tokenward_e2e::client::bearer;
use tokenward_e2e::setup::{ProviderSecrets, SigningKey};

use crate::gateway::{Gateway, Options};

/// `tokenward --dev --data-dir <dir> <args>`, in process, as the binary runs it.
fn tokenward(dir: &Path, args: &[&str]) -> String {
    let mut argv = vec!["tokenward", "--dev", "--data-dir", dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(&argv).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    if let Err(e) = run(&cli, &mut out, &mut err) {
        panic!("tokenward {args:?}: {e:#}");
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn a_rendered_configuration_is_enforced_by_envoy_and_a_revocation_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secrets = ProviderSecrets::generate();
    let secret_file = d.join("openai.key");
    std::fs::write(&secret_file, secrets.get("openai")).unwrap();
    tokenward(
        d,
        &[
            "init",
            "--issuer",
            "https://cp.test",
            "--audience",
            "gateway",
        ],
    );
    tokenward(
        d,
        &[
            "provider",
            "add",
            "--name",
            "openai",
            "--style",
            "openai",
            "--authority",
            "api.openai.com",
            "--credential-file",
            secret_file.to_str().unwrap(),
        ],
    );
    tokenward(
        d,
        &body_route_args("chat", "/v1/chat/completions", "openai"),
    );
    tokenward(
        d,
        &[
            "plan",
            "set",
            "standard",
            "--limit",
            "rpm:requests:minute:100",
        ],
    );
    tokenward(d, &["plan", "default", "standard"]);
    let minted: serde_json::Value = serde_json::from_str(&tokenward(
        d,
        &[
            "-o",
            "json",
            "token",
            "mint",
            "--subject",
            "alice",
            "--tenant",
            "acme",
            "--scope",
            "chat",
            "--model",
            "gpt-4o*",
        ],
    ))
    .unwrap();
    let token = minted["token"].as_str().unwrap().to_string();
    let created: serde_json::Value = serde_json::from_str(&tokenward(
        d,
        &[
            "-o",
            "json",
            "apikey",
            "create",
            "--subject",
            "ci",
            "--tenant",
            "acme",
            "--scope",
            "chat",
            "--model",
            "gpt-4o-mini",
        ],
    ))
    .unwrap();
    let api_key = created["key"].as_str().unwrap().to_string();
    let rendered = d.join("filter.json");
    tokenward(
        d,
        &["config", "render", "--out", rendered.to_str().unwrap()],
    );

    let mut gw = Gateway::start_raw(
        Options {
            updatable: true,
            ..Options::default()
        },
        Some(&std::fs::read_to_string(&rendered).unwrap()),
        SigningKey::generate("unused"),
        secrets,
    );
    let reply = gw.chat(&token, "gpt-4o");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("x-ratelimit-limit-requests"),
        Some("100"),
        "the plan applies"
    );
    let reply = gw.send(
        "POST",
        "/v1/chat/completions",
        &[("authorization", &bearer(&api_key))],
        Some(r#"{"model":"gpt-4o-mini","messages":[]}"#),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let expected = format!("Bearer {}", gw.secrets.get("openai"));
    let received = gw.received("openai");
    assert!(received
        .iter()
        .all(|r| r.header("authorization").as_deref() == Some(expected.as_str())));
    gw.assert_never_forwarded(&token);
    gw.assert_never_forwarded(&api_key);

    // Revoke the whole tenant, render again, hand Envoy the new configuration.
    tokenward(d, &["token", "revoke", "--tenant", "acme"]);
    tokenward(
        d,
        &["config", "render", "--out", rendered.to_str().unwrap()],
    );
    let config = serde_json::from_str(&std::fs::read_to_string(&rendered).unwrap()).unwrap();
    gw.update_config(&config);
    assert_eq!(
        gw.chat(&token, "gpt-4o").error_code().as_deref(),
        Some("token_revoked")
    );
    let reply = gw.send(
        "POST",
        "/v1/chat/completions",
        &[("authorization", &bearer(&api_key))],
        Some(r#"{"model":"gpt-4o-mini","messages":[]}"#),
    );
    assert_eq!(reply.error_code().as_deref(), Some("invalid_api_key"));
    gw.assert_log_clean(&[&token, &api_key]);
}
