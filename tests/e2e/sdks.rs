//! The official OpenAI and Anthropic Python SDKs (examples/), unchanged but for base_url and
//! the key, against the gateway: a normal call, a streamed call, and a refusal that surfaces
//! as the SDK's own exception with tokenward's code and message.

use std::process::Command;

use tokenward_e2e::setup::TokenSpec;

use crate::gateway::Gateway;

/// Runs `examples/<name>/example.py`; its JSON lines by step.
fn run_example(
    gw: &Gateway,
    name: &str,
    token: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let script = tokenward_e2e::repo_root()
        .join("examples")
        .join(name)
        .join("example.py");
    // The SDKs are in the project's virtual environment (`make deps`), not the system's.
    let venv = tokenward_e2e::repo_root().join(".venv/bin/python3");
    let python = if venv.is_file() {
        venv
    } else {
        "python3".into()
    };
    let output = Command::new(&python)
        .arg(&script)
        .env("TOKENWARD_BASE_URL", gw.envoy.url(""))
        .env("TOKENWARD_TOKEN", token)
        .output()
        .unwrap_or_else(|e| panic!("{} is needed ({e}): run `make deps`", python.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the SDKs are missing: run `make deps` (pip install -r examples/requirements.txt)\n{stderr}"
    );
    assert!(output.status.success(), "{name} failed:\n{stderr}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .map(|v| (v["step"].as_str().unwrap().to_string(), v))
        .collect()
}

#[test]
fn the_official_sdks_work_unchanged_and_raise_their_own_errors_on_refusals() {
    let gw = Gateway::start();
    let token = gw.mint(TokenSpec {
        models: Some(vec!["gpt-4o*".into(), "claude-3-5-haiku*".into()]),
        ..TokenSpec::default()
    });

    let openai = run_example(&gw, "openai-python", &token);
    assert_eq!(openai["chat"]["content"], "Hello from the mock provider");
    assert!(openai["chat"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(openai["stream"]["content"], "Hello from the mock provider");
    assert!(
        openai["stream"]["total_tokens"].as_u64().is_some(),
        "the usage chunk the client asked for reached the SDK"
    );
    // Not asked for: `chunk.choices[0]` on every chunk works, nothing is missing.
    assert_eq!(
        openai["plain_stream"]["content"],
        "Hello from the mock provider"
    );
    assert_eq!(
        openai["responses"]["content"],
        "Hello from the mock provider"
    );
    assert!(openai["responses"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(openai["refusal"]["error"], "PermissionDeniedError");
    assert_eq!(openai["refusal"]["status"], 403);
    assert_eq!(openai["refusal"]["code"], "model_not_allowed");
    assert!(openai["refusal"]["message"]
        .as_str()
        .unwrap()
        .contains("o1-preview"));

    let anthropic = run_example(&gw, "anthropic-python", &token);
    assert!(!anthropic["chat"]["content"].as_str().unwrap().is_empty());
    assert_eq!(anthropic["chat"]["output_tokens"], 7);
    assert!(!anthropic["stream"]["content"].as_str().unwrap().is_empty());
    assert_eq!(anthropic["stream"]["output_tokens"], 7);
    assert!(anthropic["count_tokens"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(anthropic["refusal"]["error"], "PermissionDeniedError");
    assert_eq!(anthropic["refusal"]["code"], "model_not_allowed");
    // Anthropic's own error shape: the SDK's body carries its type and our code.
    assert_eq!(anthropic["refusal"]["type"], "permission_error");

    // The SDKs' requests reached the providers with the providers' keys, never the token.
    gw.assert_never_forwarded(&token);
    let expected = format!("Bearer {}", gw.secrets.get("openai"));
    assert!(gw
        .received("openai")
        .iter()
        .all(|r| r.header("authorization").as_deref() == Some(expected.as_str())));
    let anthropic_key = gw.secrets.get("anthropic").to_string();
    assert!(gw
        .received("anthropic")
        .iter()
        .all(|r| r.header("x-api-key").as_deref() == Some(anthropic_key.as_str())));
}
