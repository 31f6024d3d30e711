//! Several Envoy workers, each with its own VM and verified-token cache, serving clients in
//! parallel: every request gets the same answer whichever worker it lands on.

use std::sync::Arc;

use tokenward_e2e::setup::TokenSpec;

use crate::gateway::{Gateway, Options};

#[test]
fn four_workers_under_parallel_clients_swap_and_refuse_consistently() {
    let gw = Arc::new(Gateway::start_with(
        Options {
            concurrency: 4,
            ..Options::default()
        },
        |config, _| {
            config.revocations.subjects.push("banned".into());
            // 40 revoked requests from one address, on purpose: past the guard's default
            // threshold, which guard.rs tests.
            config.guard = Some(tokenward_filter::config::GuardConfig {
                failed_auth: tokenward_filter::config::FailedAuthConfig {
                    threshold: 1_000,
                    ..Default::default()
                },
            });
        },
    ));
    let good: Vec<String> = (0..4)
        .map(|i| {
            gw.mint(TokenSpec {
                subject: format!("user-{i}"),
                ..TokenSpec::default()
            })
        })
        .collect();
    let banned = gw.mint(TokenSpec {
        subject: "banned".into(),
        ..TokenSpec::default()
    });
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let gw = Arc::clone(&gw);
            let good = good.clone();
            let banned = banned.clone();
            std::thread::spawn(move || {
                let mut outcomes = (0, 0);
                for i in 0..25 {
                    // New connections each time, so requests spread over the workers.
                    if (t + i) % 5 == 0 {
                        let reply = gw.chat(&banned, "gpt-4o");
                        assert_eq!(reply.error_code().as_deref(), Some("token_revoked"));
                        outcomes.1 += 1;
                    } else {
                        let reply = gw.chat(&good[(t + i) % good.len()], "gpt-4o-mini");
                        assert_eq!(reply.status, 200, "{}", reply.body);
                        outcomes.0 += 1;
                    }
                }
                outcomes
            })
        })
        .collect();
    let (passed, refused) = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert_eq!(passed + refused, 200);
    let received = gw.received("openai");
    assert_eq!(
        received.len(),
        passed,
        "every admitted request, and only those, reached the provider"
    );
    let expected = format!("Bearer {}", gw.secrets.get("openai"));
    assert!(received
        .iter()
        .all(|r| r.header("authorization").as_deref() == Some(expected.as_str())));
    for token in good.iter().chain([&banned]) {
        gw.assert_never_forwarded(token);
    }
    let workers = gw.envoy.log().matches("configuration test-").count();
    assert!(
        workers >= 4,
        "expected the config applied in 4 workers, saw {workers}"
    );
}
