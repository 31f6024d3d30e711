//! The command line on Postgres: every command over `--database postgres://…`, an
//! installation moved there from SQLite with `migrate-store`, and what differs (backups).

use super::*;
use crate::testing::TestDatabase;

#[test]
fn an_installation_moves_from_sqlite_to_postgres_and_every_command_works_there() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = TestDatabase::create();
    // `--dev` keeps the master key in the data directory: both stores open with it.
    let run = |args: &[&str]| {
        let mut all = vec!["--dev"];
        all.extend_from_slice(args);
        tokenward(d, &all)
    };
    let ok = |args: &[&str]| {
        let (ok, out, err) = run(args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    ok(&[
        "init",
        "--issuer",
        "https://cp.example",
        "--audience",
        "gateway",
    ]);
    let secret = d.join("openai.key");
    std::fs::write(&secret, "sk-sealed-in-sqlite\n").unwrap();
    ok(&[
        "provider",
        "add",
        "--name",
        "openai",
        "--style",
        "openai",
        "--authority",
        "api.openai.com",
        "--credential-file",
        secret.to_str().unwrap(),
    ]);
    ok(&crate::testing::body_route_args(
        "chat",
        "/v1/chat/completions",
        "openai",
    ));
    ok(&["apikey", "create", "--subject", "alice", "--scope", "chat"]);
    ok(&["token", "revoke", "--subject", "mallory"]);
    let sqlite_render = ok(&["-o", "json", "config", "render"]);

    let sqlite_url = format!("sqlite://{}", d.join("tokenward.db").display());
    let copied = ok(&["migrate-store", "--from", &sqlite_url, "--to", &db.url]);
    assert!(
        copied.contains("1 routes") && copied.contains("1 revoked subjects"),
        "{copied}"
    );
    // Never into an installation: a second copy is refused, the first stays.
    let (again, _, err) = run(&["migrate-store", "--from", &sqlite_url, "--to", &db.url]);
    assert!(!again && err.contains("not empty"), "{err}");

    let pg = |args: &[&str]| {
        let mut all = vec!["--database", db.url.as_str()];
        all.extend_from_slice(args);
        ok(&all)
    };
    // The same configuration, to the byte: same version, sealed credential opened.
    assert_eq!(pg(&["-o", "json", "config", "render"]), sqlite_render);
    assert!(pg(&["config", "render"]).contains("sk-sealed-in-sqlite"));
    assert!(pg(&["route", "list"]).contains("/v1/chat/completions"));
    assert!(pg(&["revocations"]).contains("mallory"));
    // Changes go on on Postgres.
    pg(&[
        "token",
        "mint",
        "--subject",
        "bob",
        "--scope",
        "chat",
        "--ttl",
        "10m",
    ]);
    pg(&["key", "rotate", "--now"]);
    let keys: serde_json::Value =
        serde_json::from_str(&pg(&["-o", "json", "key", "list"])).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(pg(&["audit", "--limit", "3"]).contains("key.rotate"));
    assert!(pg(&["migrate"]).contains("schema"));

    // Backups of Postgres are Postgres's: the command says how.
    let (backed_up, _, err) = run(&[
        "--database",
        db.url.as_str(),
        "backup",
        "--out",
        d.join("b.db").to_str().unwrap(),
    ]);
    assert!(!backed_up && err.contains("pg_dump"), "{err}");
}

#[test]
fn a_database_url_that_cannot_be_reached_or_read_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = tokenward(
        dir.path(),
        &[
            "--dev",
            "--database",
            "postgres://nobody@127.0.0.1:1/none?connect_timeout=2",
            "key",
            "list",
        ],
    );
    assert!(!ok);
    assert!(err.contains("opening the Postgres database"), "{err}");
    let (ok, _, err) = tokenward(
        dir.path(),
        &[
            "--dev",
            "--database",
            "sqlite:///nonexistent/tokenward.db",
            "key",
            "list",
        ],
    );
    assert!(!ok && err.contains("no tokenward database at"), "{err}");
    // A password in a URL never reaches a message.
    let (ok, _, err) = tokenward(
        dir.path(),
        &[
            "migrate-store",
            "--from",
            "postgres://u:hunter2@127.0.0.1:1/x?connect_timeout=2",
            "--to",
            "sqlite:///tmp/x.db",
        ],
    );
    assert!(
        !ok && !err.contains("hunter2") && err.contains("***"),
        "{err}"
    );
}
