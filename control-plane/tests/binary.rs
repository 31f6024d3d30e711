//! The `tokenward` binary as an operator runs it: its exit codes (0 done, 1 the operation
//! failed, 2 the command line is wrong) and the error on stderr. Because this package has an
//! integration test, `cargo test --workspace` also builds target/debug/tokenward, the process
//! the end-to-end fault test (tests/e2e/faults.rs) kills and restarts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn tokenward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .args(args)
        .env_remove("TOKENWARD_MASTER_KEY")
        .env_remove("TOKENWARD_ADMIN_KEY")
        .output()
        .unwrap()
}

fn init(data_dir: &str) -> Output {
    tokenward(&[
        "--dev",
        "--data-dir",
        data_dir,
        "init",
        "--issuer",
        "https://cp.test",
        "--audience",
        "gateway",
    ])
}

#[test]
fn exit_codes_say_done_failed_or_misused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();

    let done = init(data_dir);
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );

    let failed = tokenward(&["--data-dir", data_dir, "key", "list"]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.starts_with("tokenward: no master key"), "{stderr}");

    let misused = tokenward(&["--data-dir", data_dir, "no-such-command"]);
    assert_eq!(misused.status.code(), Some(2));
}

#[test]
fn serve_logs_json_lines_for_collectors_when_asked() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let initialised = init(data_dir);
    assert_eq!(initialised.status.code(), Some(0));
    let mut serve = Command::new(env!("CARGO_BIN_EXE_tokenward"))
        .args([
            "--dev",
            "--data-dir",
            data_dir,
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--xds-listen",
            "127.0.0.1:0",
        ])
        .env_remove("TOKENWARD_MASTER_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = serve.stderr.take().unwrap();
    let (found, found_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                if event["message"] == "xDS: serving configuration" {
                    let _ = found.send(event);
                    return;
                }
            }
        }
    });
    let event = found_rx.recv_timeout(std::time::Duration::from_secs(30));
    let _ = serve.kill();
    let _ = serve.wait();
    let event = event.expect("serve wrote no JSON line for the configuration it serves");
    assert_eq!(event["level"], "INFO", "{event}");
    assert_eq!(
        event["version"].as_str().map(str::len),
        Some(16),
        "the configuration's content version, as a field: {event}"
    );
    assert!(event["timestamp"].is_string(), "{event}");
}
