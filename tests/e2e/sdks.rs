//! The official SDKs (examples/): OpenAI, Anthropic and Google Gen AI, in Python and in Node,
//! unchanged but for the base URL and the key, against the gateway: normal and streamed
//! calls with the usage the SDK reads, and a refusal that surfaces as the SDK's own error
//! with tokenward's code and message. One test per provider family, both languages in it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};
use tokenward_e2e::mock_provider::{prompt_tokens, COMPLETION_TOKENS};
use tokenward_e2e::setup::TokenSpec;

use crate::gateway::Gateway;

/// The oldest Node the pinned Node SDKs support (openai and @google/genai declare >= 22).
const NODE_MAJOR: u32 = 22;

/// What one example printed: its JSON lines by step.
type Steps = Map<String, Value>;

/// Runs `examples/<name>/example.py` with the project's Python (`make deps`).
fn run_python(gw: &Gateway, name: &str, token: &str) -> Steps {
    let root = tokenward_e2e::repo_root();
    // The SDKs are in the project's virtual environment (`make deps`), not the system's.
    let venv = root.join(".venv/bin/python3");
    let python = if venv.is_file() {
        venv
    } else {
        "python3".into()
    };
    let script = root.join("examples").join(name).join("example.py");
    let mut command = Command::new(&python);
    command.arg(&script);
    let output = run(gw, command, token, &python);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the SDKs are missing: run `make deps` (pip install -r examples/requirements.txt)\n{stderr}"
    );
    steps(name, &output)
}

/// Runs `examples/node/<script>` with a Node >= 22 and the pinned SDKs (`make deps`).
fn run_node(gw: &Gateway, script: &str, token: &str) -> Steps {
    let dir = tokenward_e2e::repo_root().join("examples/node");
    let node = node_runtime();
    for sdk in ["openai", "@anthropic-ai/sdk", "@google/genai"] {
        assert!(
            dir.join("node_modules")
                .join(sdk)
                .join("package.json")
                .is_file(),
            "the Node SDK {sdk} is missing: run `make deps` (npm ci in examples/node)"
        );
    }
    let mut command = Command::new(&node);
    command.arg(dir.join(script)).current_dir(&dir);
    let output = run(gw, command, token, &node);
    steps(script, &output)
}

/// The Node `make deps` provides: its own under .venv/node, else the system's, if >= 22.
pub(crate) fn node_runtime() -> PathBuf {
    let local = tokenward_e2e::repo_root().join(".venv/node/bin/node");
    let node = if local.is_file() {
        local
    } else {
        "node".into()
    };
    let version = Command::new(&node)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "Node >= {NODE_MAJOR} is needed ({}: {e}): run `make deps`",
                node.display()
            )
        });
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    assert!(
        major.is_some_and(|m| m >= NODE_MAJOR),
        "Node >= {NODE_MAJOR} is needed, {} is {version:?}: run `make deps` (it installs one in .venv/node)",
        node.display()
    );
    node
}

fn run(gw: &Gateway, mut command: Command, token: &str, program: &Path) -> std::process::Output {
    command
        .env("TOKENWARD_BASE_URL", gw.envoy.url(""))
        .env("TOKENWARD_TOKEN", token)
        .output()
        .unwrap_or_else(|e| panic!("{} is needed ({e}): run `make deps`", program.display()))
}

fn steps(name: &str, output: &std::process::Output) -> Steps {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name} failed:\n{stderr}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("{name} printed a line that is not JSON ({e}): {line}"))
        })
        .map(|v| (v["step"].as_str().unwrap().to_string(), v))
        .collect()
}

/// The gateway metered every generating answer the SDKs got (streams included), at the
/// output the provider reported, and nothing else (listings, counts, embeddings).
fn assert_metered(gw: &Gateway, provider_model: &str, responses: u64) {
    let stat = |metric: &str| {
        gw.envoy.stat(&format!(
            "wasmcustom.tokenward.usage.{provider_model}.{metric}"
        ))
    };
    assert_eq!(stat("responses"), responses, "{provider_model}");
    assert_eq!(
        stat("output_tokens"),
        responses * COMPLETION_TOKENS,
        "{provider_model}"
    );
}

/// The reply every mock provider streams or returns.
const REPLY: &str = "Hello from the mock provider";

/// What both OpenAI SDKs saw.
fn assert_openai(sdk: &str, steps: &Steps) {
    assert_eq!(steps["chat"]["content"], REPLY, "{sdk}");
    assert!(
        steps["chat"]["total_tokens"].as_u64().unwrap() > COMPLETION_TOKENS,
        "{sdk}"
    );
    assert_eq!(steps["stream"]["content"], REPLY, "{sdk}");
    assert!(
        steps["stream"]["total_tokens"].as_u64().unwrap() > COMPLETION_TOKENS,
        "{sdk}: the usage chunk the client asked for reached the SDK"
    );
    // Not asked for: `chunk.choices[0]` on every chunk works, nothing is missing. The mock's
    // stream is a role chunk, three pieces and a finish chunk.
    assert_eq!(steps["plain_stream"]["content"], REPLY, "{sdk}");
    assert_eq!(steps["plain_stream"]["chunks"], 5, "{sdk}");
    assert_eq!(steps["responses"]["content"], REPLY, "{sdk}");
    assert!(
        steps["responses"]["total_tokens"].as_u64().unwrap() > COMPLETION_TOKENS,
        "{sdk}"
    );
    let refusal = &steps["refusal"];
    assert_eq!(refusal["error"], "PermissionDeniedError", "{sdk}");
    assert_eq!(refusal["status"], 403, "{sdk}");
    assert_eq!(refusal["code"], "model_not_allowed", "{sdk}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("may not use the model \"o1-preview\""),
        "{sdk}: {refusal}"
    );
}

#[test]
fn the_openai_sdks_python_and_node_work_unchanged_and_raise_their_own_errors() {
    let gw = Gateway::start();
    let token = gw.mint(TokenSpec {
        models: Some(vec!["gpt-4o*".into()]),
        ..TokenSpec::default()
    });

    assert_openai("openai (Python)", &run_python(&gw, "openai-python", &token));
    let node = run_node(&gw, "openai.mjs", &token);
    assert_openai("openai (Node)", &node);
    assert_eq!(node["refusal"]["type"], "permission_error");

    // Both SDKs' requests reached OpenAI with its key, never the token; the refused one not
    // at all. Per SDK: chat, two streams, responses.
    gw.assert_never_forwarded(&token);
    let received = gw.received("openai");
    assert_eq!(received.len(), 2 * 4);
    let expected = format!("Bearer {}", gw.secrets.get("openai"));
    for r in &received {
        assert_eq!(
            r.header("authorization").as_deref(),
            Some(expected.as_str())
        );
        assert!(!String::from_utf8_lossy(&r.body).contains("o1-preview"));
    }
    assert_metered(&gw, "openai.gpt-4o-mini", 2 * 4);
}

/// What both Anthropic SDKs saw.
fn assert_anthropic(sdk: &str, steps: &Steps) {
    assert_eq!(steps["chat"]["content"], REPLY, "{sdk}");
    assert_eq!(steps["chat"]["output_tokens"], COMPLETION_TOKENS, "{sdk}");
    assert_eq!(steps["stream"]["content"], REPLY, "{sdk}");
    assert_eq!(steps["stream"]["output_tokens"], COMPLETION_TOKENS, "{sdk}");
    assert!(
        steps["count_tokens"]["input_tokens"].as_u64().unwrap() > 0,
        "{sdk}"
    );
    let refusal = &steps["refusal"];
    assert_eq!(refusal["error"], "PermissionDeniedError", "{sdk}");
    assert_eq!(refusal["status"], 403, "{sdk}");
    // Anthropic's own error shape: the SDK reads its type; our code is beside it.
    assert_eq!(refusal["type"], "permission_error", "{sdk}");
    assert_eq!(refusal["code"], "model_not_allowed", "{sdk}");
    assert_eq!(
        refusal["message"], "the credential may not use the model \"claude-opus-4-1\"",
        "{sdk}"
    );
}

#[test]
fn the_anthropic_sdks_python_and_node_work_unchanged_and_raise_their_own_errors() {
    let gw = Gateway::start();
    let token = gw.mint(TokenSpec {
        models: Some(vec!["claude-3-5-haiku*".into()]),
        ..TokenSpec::default()
    });

    assert_anthropic(
        "anthropic (Python)",
        &run_python(&gw, "anthropic-python", &token),
    );
    assert_anthropic("anthropic (Node)", &run_node(&gw, "anthropic.mjs", &token));

    // Per SDK: a message, a stream, a count; the refused one never left the gateway.
    gw.assert_never_forwarded(&token);
    let received = gw.received("anthropic");
    assert_eq!(received.len(), 2 * 3);
    let key = gw.secrets.get("anthropic");
    for r in &received {
        assert_eq!(r.header("x-api-key").as_deref(), Some(key));
        assert!(!String::from_utf8_lossy(&r.body).contains("claude-opus-4-1"));
    }
    // Counting tokens generates nothing: a message and a stream per SDK.
    assert_metered(&gw, "anthropic.claude-3-5-haiku-latest", 2 * 2);
}

/// What both Google Gen AI SDKs saw. `counted` is what the provider answered to countTokens.
fn assert_gemini(sdk: &str, steps: &Steps, counted: u64) {
    let chat = &steps["chat"];
    assert_eq!(chat["content"], REPLY, "{sdk}");
    assert_eq!(chat["output_tokens"], COMPLETION_TOKENS, "{sdk}");
    let prompt = chat["prompt_tokens"].as_u64().unwrap();
    assert_eq!(chat["total_tokens"], prompt + COMPLETION_TOKENS, "{sdk}");
    // Three chunks, each repeating the usage so far; the SDK reads the last.
    let stream = &steps["stream"];
    assert_eq!(stream["content"], REPLY, "{sdk}");
    assert_eq!(stream["chunks"], 3, "{sdk}");
    assert_eq!(stream["output_tokens"], COMPLETION_TOKENS, "{sdk}");
    assert_eq!(steps["count_tokens"]["total_tokens"], counted, "{sdk}");
    assert_eq!(steps["embed"]["embeddings"], 1, "{sdk}");
    assert_eq!(steps["embed"]["dimensions"], 3, "{sdk}");
    assert_eq!(steps["embed_batch"]["embeddings"], 3, "{sdk}");
    assert_eq!(
        steps["models"]["names"],
        serde_json::json!(["models/gemini-2.0-flash"]),
        "{sdk}"
    );
    // Our code is the reason of Google's ErrorInfo detail.
    let refusal = &steps["refusal"];
    assert_eq!(refusal["reason"], "model_not_allowed", "{sdk}: {refusal}");
    assert_eq!(
        refusal["message"], "the credential may not use the model \"gemini-2.5-pro\"",
        "{sdk}"
    );
}

#[test]
fn the_google_genai_sdks_python_and_node_work_unchanged_and_raise_their_own_errors() {
    let gw = Gateway::start();
    let token = gw.mint(TokenSpec {
        models: Some(vec![
            "gemini-2.0-flash*".into(),
            "gemini-embedding-*".into(),
        ]),
        ..TokenSpec::default()
    });
    let counted = || {
        gw.received("gemini")
            .iter()
            .rev()
            .find(|r| r.path.ends_with(":countTokens"))
            .map(|r| prompt_tokens(&r.body))
            .unwrap()
    };

    let python = run_python(&gw, "gemini-python", &token);
    assert_gemini("google-genai (Python)", &python, counted());
    // The SDK's own typed error: ClientError (4xx), with the HTTP code and Google's status.
    assert_eq!(python["refusal"]["error"], "ClientError");
    assert_eq!(python["refusal"]["code"], 403);
    assert_eq!(python["refusal"]["status"], "PERMISSION_DENIED");
    let python_requests = gw.received("gemini").len();

    let node = run_node(&gw, "gemini.mjs", &token);
    // Its ApiError: the HTTP status, Google's in the body it carries.
    assert_eq!(node["refusal"]["error"], "ApiError");
    assert_eq!(node["refusal"]["status"], 403);
    assert_eq!(node["refusal"]["google_status"], "PERMISSION_DENIED");
    assert_gemini("@google/genai (Node)", &node, counted());

    // Both SDKs speak the API version they default to (v1), and send the key only in
    // x-goog-api-key: it arrived as the provider's key, never the token, and the refused
    // model never left the gateway.
    gw.assert_never_forwarded(&token);
    let received = gw.received("gemini");
    assert_eq!(received.len(), 2 * python_requests);
    let key = gw.secrets.get("gemini");
    for r in &received {
        assert_eq!(
            r.header("x-goog-api-key").as_deref(),
            Some(key),
            "{}",
            r.path
        );
        assert!(!r.path.contains("gemini-2.5-pro"));
    }
    let paths: Vec<&str> = received
        .iter()
        .map(|r| r.path.split('?').next().unwrap())
        .collect();
    // Per SDK: one of each, and two embedding calls (one content, then three).
    for (path, per_sdk) in [
        ("/v1/models/gemini-2.0-flash:generateContent", 1),
        ("/v1/models/gemini-2.0-flash:streamGenerateContent", 1),
        ("/v1/models/gemini-2.0-flash:countTokens", 1),
        ("/v1/models/gemini-embedding-001:batchEmbedContents", 2),
        ("/v1/models", 1),
    ] {
        let sent = paths.iter().filter(|p| **p == path).count();
        assert_eq!(sent, 2 * per_sdk, "{path} in {paths:?}");
    }
    // The batch: one request per content, in one call.
    assert!(received.iter().any(|r| {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        body["requests"].as_array().is_some_and(|a| a.len() == 3)
    }));
    // A generation and a stream per SDK.
    assert_metered(&gw, "gemini.gemini-2_0-flash", 2 * 2);
}
