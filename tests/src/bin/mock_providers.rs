//! The mock providers as a program, for the bundled docker setup (envoy/docker-compose.yaml):
//! OpenAI, Anthropic and Gemini wire formats on fixed loopback ports until stopped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use tokenward_e2e::mock_provider::MockProvider;

/// Where each mock listens; envoy/compose-start.sh points the clusters here.
pub const PORTS: [(&str, u16); 3] = [("openai", 9101), ("anthropic", 9102), ("gemini", 9103)];

fn main() -> anyhow::Result<()> {
    let mut running = Vec::new();
    for (name, port) in PORTS {
        let mock = MockProvider::start_on(name, SocketAddr::from(([127, 0, 0, 1], port)))?;
        println!("mock {name} on http://{}", mock.addr);
        running.push(mock);
    }
    loop {
        std::thread::park();
    }
}
