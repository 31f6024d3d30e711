//! Writes what bench/wasm-host/host.js feeds the module, into the directory given: the
//! filter configuration as `make bench` has it (`hot.json`), the same with its quota plan
//! (`quota.json`), a token it accepts (`token`), and for the stream mode `make bench`'s 2 MB
//! chat-completions stream (`stream.sse`) with a token whose scopes include chat
//! (`chat-token`), and for the cold path 20 000 distinct tokens, one per line
//! (`cold-tokens`). Keys and secrets are made afresh.

use anyhow::Context;
use tokenward_e2e::setup::{bench_plan, gateway_config, ProviderSecrets, SigningKey, TokenSpec};

fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: wasm_host_inputs <directory>")?,
    );
    std::fs::create_dir_all(&dir)?;
    let key = SigningKey::generate("bench");
    let secrets = ProviderSecrets::generate();
    let mut config = gateway_config(&[&key], &secrets);
    config.cache.max_entries = 10_000;
    std::fs::write(dir.join("hot.json"), serde_json::to_string(&config)?)?;
    config.plans.insert("bench".into(), bench_plan());
    config.default_plan = Some("bench".into());
    std::fs::write(dir.join("quota.json"), serde_json::to_string(&config)?)?;
    let spec = TokenSpec {
        scopes: vec!["models".into()],
        ..TokenSpec::default()
    };
    std::fs::write(dir.join("token"), key.mint(&spec))?;
    std::fs::write(dir.join("chat-token"), key.mint(&TokenSpec::default()))?;
    let cold: Vec<String> = (0..20_000)
        .map(|i| {
            key.mint(&TokenSpec {
                jti: format!("{i:032x}"),
                subject: format!("user-{i:06}"),
                ..spec.clone()
            })
        })
        .collect();
    std::fs::write(dir.join("cold-tokens"), cold.join("\n"))?;
    std::fs::write(
        dir.join("stream.sse"),
        tokenward_e2e::streaming::chat_completion_stream(tokenward_e2e::streaming::STREAM_BYTES),
    )?;
    Ok(())
}
