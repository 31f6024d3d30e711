//! The failed-authentication guard in a real Envoy (docs/guard.md): a burst of bad tokens
//! from one address is refused with `429 temporarily_blocked` after the threshold, before
//! their signatures are checked, while a client on another address goes on.

use std::net::{IpAddr, Ipv4Addr};

use tokenward_e2e::client::{self, bearer, Reply};

use crate::gateway::{Gateway, Options};

const VERIFICATIONS: &str = "wasmcustom.tokenward.auth.verifications";
const WORKERS: u32 = 2;
/// The default threshold: the test runs on the configuration's defaults.
const THRESHOLD: usize = 20;

fn models(
    gw: &Gateway,
    client: &reqwest::blocking::Client,
    token: &str,
    extra: &[(&str, &[u8])],
) -> Reply {
    let auth = bearer(token);
    let mut headers = vec![("authorization", auth.as_slice())];
    headers.extend_from_slice(extra);
    client::send_with(client, "GET", &gw.envoy.url("/v1/models"), &headers, None).unwrap()
}

/// A token whose signature is wrong: it reaches the signature check.
fn forged(gw: &Gateway, i: usize) -> String {
    let token = gw.token();
    let (head, _) = token.rsplit_once('.').unwrap();
    format!("{head}.{}", "A".repeat(80 + i % 7))
}

#[test]
fn a_burst_of_bad_tokens_is_blocked_before_signature_checks_and_other_clients_go_on() {
    let gw = Gateway::start_with(
        Options {
            concurrency: WORKERS,
            ..Options::default()
        },
        |_, _| {},
    );
    let attacker = client::client();
    let valid = gw.token();
    // The attacker's address held a valid token before the burst (cached in a worker).
    assert_eq!(models(&gw, &attacker, &valid, &[]).status, 200);

    let replies: Vec<Reply> = (0..200)
        .map(|i| models(&gw, &attacker, &forged(&gw, i), &[]))
        .collect();
    let unauthorized = replies.iter().filter(|r| r.status == 401).count();
    assert_eq!(
        unauthorized, THRESHOLD,
        "one at a time, exactly the threshold is heard"
    );
    let blocked = &replies[THRESHOLD..];
    for reply in blocked {
        assert_eq!(reply.status, 429, "{}", reply.body);
        assert_eq!(reply.error_code().as_deref(), Some("temporarily_blocked"));
        assert_eq!(reply.json()["error"]["type"], "rate_limit_error");
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=300).contains(&retry), "Retry-After {retry}");
    }
    let verified = gw.envoy.stat(VERIFICATIONS);
    assert!(
        verified <= (THRESHOLD + 1) as u64 + u64::from(WORKERS),
        "{verified} credentials reached a signature check"
    );

    // A valid token from another address is served during the block...
    let neighbour = client::client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(models(&gw, &neighbour, &gw.token(), &[]).status, 200);
    assert_eq!(models(&gw, &neighbour, &valid, &[]).status, 200);
    // ...and from the blocked address refused, cached or not, once every worker's timer
    // has heard of the block.
    std::thread::sleep(std::time::Duration::from_millis(300));
    for token in [valid.clone(), gw.token()] {
        let reply = models(&gw, &attacker, &token, &[]);
        assert_eq!(reply.error_code().as_deref(), Some("temporarily_blocked"));
    }
    assert!(gw.envoy.stat("wasmcustom.tokenward.guard.blocked.address") >= 1);
    assert!(
        gw.envoy
            .stat("wasmcustom.tokenward.requests.refused.temporarily_blocked")
            >= 180
    );
    let log = gw.envoy.log();
    assert!(
        log.contains("guard: address 127.0.0.1 blocked"),
        "the block is logged"
    );
    gw.assert_log_clean(&[&valid]);
}

#[test]
fn a_forged_forwarded_for_header_does_not_hide_the_address() {
    let gw = Gateway::start();
    let attacker = client::client();
    for i in 0..(THRESHOLD + 5) {
        let xff = format!("198.51.100.{}", i + 1);
        models(
            &gw,
            &attacker,
            &forged(&gw, i),
            &[("x-forwarded-for", xff.as_bytes())],
        );
    }
    let reply = models(
        &gw,
        &attacker,
        &gw.token(),
        &[("x-forwarded-for", b"203.0.113.9")],
    );
    assert_eq!(
        reply.error_code().as_deref(),
        Some("temporarily_blocked"),
        "{}",
        reply.body
    );
}

#[test]
fn a_configured_threshold_holds_and_the_guard_can_be_turned_off() {
    use tokenward_filter::config::{FailedAuthConfig, GuardConfig};
    let gw = Gateway::start_with(Options::default(), |config, _| {
        config.guard = Some(GuardConfig {
            failed_auth: FailedAuthConfig {
                threshold: 3,
                ..FailedAuthConfig::default()
            },
        });
    });
    let c = client::client();
    let codes: Vec<u16> = (0..5)
        .map(|i| models(&gw, &c, &forged(&gw, i), &[]).status)
        .collect();
    assert_eq!(codes, [401, 401, 401, 429, 429]);

    let gw = Gateway::start_with(Options::default(), |config, _| {
        config.guard = Some(GuardConfig {
            failed_auth: FailedAuthConfig {
                enabled: false,
                ..FailedAuthConfig::default()
            },
        });
    });
    let refused = (0..40)
        .filter(|i| models(&gw, &c, &forged(&gw, *i), &[]).status == 429)
        .count();
    assert_eq!(refused, 0, "off means off");
}
