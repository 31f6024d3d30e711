//! The admin API against its own OpenAPI document: schemathesis (a schema-driven fuzzer, from
//! PyPI, in the project's .venv) generates requests from the document, valid and invalid, and
//! checks every answer — no server error, only documented statuses, bodies and content types
//! as documented, invalid input refused, valid input accepted, authentication enforced.
//! `tests/schemathesis.toml` holds the settings and the few rules a schema cannot state.

use std::process::Command;

use tokenward_control_plane::model::Alg;
use tokenward_control_plane::plane::{InitSettings, ProviderSecret};
use tokenward_control_plane::xds::snapshot::SnapshotSettings;
use tokenward_e2e::control_plane::{plane, unix_now, Served};
use tokenward_e2e::setup::random_hex;

#[test]
fn a_schema_driven_fuzzer_finds_no_failure_in_the_admin_api() {
    let schemathesis = tokenward_e2e::repo_root().join(".venv/bin/schemathesis");
    assert!(
        schemathesis.is_file(),
        "{} is missing: run `make deps` (it installs tests/requirements.txt into .venv)",
        schemathesis.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tokenward.db");
    let master = random_hex(32);
    let operator = plane(&db, &master).unwrap();
    let (_, admin) = operator
        .init(
            &InitSettings {
                issuer: "https://tokens.test".into(),
                audiences: vec!["gateway".into()],
                alg: Alg::EdDSA,
            },
            unix_now(),
        )
        .unwrap();
    // A provider, so generated routes can name one that exists.
    operator
        .put_provider(
            tokenward_control_plane::testing::openai_provider(),
            ProviderSecret::Env("OPENAI_API_KEY".into()),
            unix_now(),
        )
        .unwrap();
    let served = Served::start(&db, &master, SnapshotSettings::default(), 0).unwrap();

    let mut command = Command::new(&schemathesis);
    command
        .arg("--config-file")
        .arg(tokenward_e2e::repo_root().join("tests/schemathesis.toml"))
        .arg("run")
        .arg(format!("http://{}/admin/v1/openapi.json", served.admin))
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", admin.key))
        .arg("--checks")
        .arg("all")
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "")
        .env_remove("SCHEMATHESIS_BASE_URL");
    if let Ok(seed) = std::env::var("TOKENWARD_FUZZ_SEED") {
        command.arg("--seed").arg(seed);
    }
    let output = command.output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Whatever was found, the credential never shows in the report.
    assert!(
        !report.contains(&admin.key),
        "the report holds the admin key"
    );
    assert!(
        output.status.success(),
        "schemathesis found failures in the admin API:\n{report}"
    );
    // Not a vacuous pass: every operation schemathesis selected from the document was
    // exercised ("Selected: 32/32" … "Tested: 32").
    let number_after = |label: &str| -> u64 {
        let line = report
            .lines()
            .find(|line| line.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} in:\n{report}"));
        line.trim_start()[label.len()..]
            .trim()
            .split('/')
            .next_back()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line:?}"))
    };
    let selected = number_after("Selected:");
    assert!(selected >= 30, "only {selected} operations:\n{report}");
    assert_eq!(number_after("Tested:"), selected, "{report}");
    // "1856 generated, 1856 passed, 54 skipped": every generated case passed.
    let counts: Vec<u64> = report
        .lines()
        .find(|line| line.contains(" generated, "))
        .unwrap_or_else(|| panic!("no test case counts in:\n{report}"))
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        counts.len() >= 2 && counts[0] > 500 && counts[0] == counts[1],
        "not every generated case passed ({counts:?}):\n{report}"
    );
}
