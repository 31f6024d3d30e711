//! examples/curl/refusals.sh against the gateway: every line it prints is the refusal its
//! README promises.

use std::process::Command;

use tokenward_e2e::setup::TokenSpec;

use crate::gateway::Gateway;

#[test]
fn the_curl_example_shows_every_refusal_it_promises() {
    let gw = Gateway::start();
    // As the README says: chat scope, gpt-4o* models.
    let token = gw.mint(TokenSpec {
        models: Some(vec!["gpt-4o*".into()]),
        ..TokenSpec::default()
    });
    let script = tokenward_e2e::repo_root().join("examples/curl/refusals.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("GATEWAY", gw.envoy.url(""))
        .env("TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let expected = [
        ("no credential", 401, "missing_credential"),
        ("a token that is not a JWT", 401, "invalid_token"),
        ("an API key with a bad checksum", 401, "invalid_api_key"),
        ("two credentials", 400, "ambiguous_credential"),
        ("the token in the URL", 400, "token_in_url"),
        ("a model the token may not use", 403, "model_not_allowed"),
        ("no model in the body", 400, "missing_model"),
        ("a body that is not JSON", 400, "invalid_json"),
        ("a path no route serves", 404, "route_not_found"),
        (
            "headers larger than 60 KiB",
            431,
            "request_header_too_large",
        ),
        ("an encoded slash in the path", 400, "bad_request"),
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, (what, status, code)) in lines.iter().zip(expected) {
        assert!(line.starts_with(what), "{line}");
        let rest = line[what.len()..].trim_start();
        let (got_status, body) = rest.split_once(' ').unwrap();
        assert_eq!(got_status, status.to_string(), "{line}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], code, "{line}");
    }
    assert!(
        gw.all_received().is_empty(),
        "no refused request reached a provider"
    );
    gw.assert_log_clean(&[&token]);
}
