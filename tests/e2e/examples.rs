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

/// The metric names a Prometheus query uses (`tokenward_…` identifiers).
fn metrics_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tokenward_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn the_grafana_dashboard_charts_what_envoy_exports() {
    use tokenward_filter::config::{Metric, PriceConfig};
    use tokenward_filter::testing::{limit, plan};
    use tokenward_filter::window::Window;

    let gw = Gateway::start_with(crate::gateway::Options::default(), |config, _| {
        config.prices.push(PriceConfig {
            model: "gpt-4o*".into(),
            input: 2_500_000,
            output: 10_000_000,
            cached_input: None,
        });
        config.plans.insert(
            "one".into(),
            plan(vec![limit("rpm", Metric::Requests, Window::Minute, 1)], 16),
        );
    });
    // Traffic that makes every series the dashboard charts: usage with a price, a refusal,
    // a quota refusal, and an answer without usage (the mock has no such endpoint).
    let token = gw.token();
    assert_eq!(gw.chat(&token, "gpt-4o-mini").status, 200);
    assert_eq!(gw.send("GET", "/v1/models", &[], None).status, 401);
    let one = gw.mint(TokenSpec {
        subject: "one-a-minute".into(),
        plan: Some("one".into()),
        ..TokenSpec::default()
    });
    assert_eq!(gw.chat(&one, "gpt-4o-mini").status, 200);
    assert_eq!(gw.chat(&one, "gpt-4o-mini").status, 429);
    let missing = gw.send(
        "POST",
        "/v1/chat/completions/nothing-here",
        &[("authorization", &tokenward_e2e::client::bearer(&token))],
        Some(r#"{"model":"gpt-4o-mini","messages":[]}"#),
    );
    assert_eq!(missing.status, 404, "{}", missing.body);

    let scraped = gw.envoy.prometheus();
    let exported: std::collections::BTreeSet<&str> = scraped
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let path = tokenward_e2e::repo_root().join("examples/grafana/tokenward.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut charted = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for metric in metrics_in(expr) {
                assert!(
                    exported.contains(metric.as_str()),
                    "panel {:?} charts {metric}, which Envoy does not export; it exports:\n{}",
                    panel["title"],
                    exported
                        .iter()
                        .filter(|m| m.starts_with("tokenward"))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                charted += 1;
            }
        }
    }
    assert!(charted >= 10, "{charted} metrics charted");
    // And the labels the panels group by are there.
    for label in ["code=", "provider=", "model=", "plan=", "limit="] {
        assert!(
            scraped
                .lines()
                .any(|l| l.starts_with("tokenward") && l.contains(label)),
            "no tokenward series has the label {label}"
        );
    }
}
