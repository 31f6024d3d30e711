//! The harness shared by the end-to-end tests, `make bench` and `make demo`: a real Envoy
//! started from the shipped `envoy/envoy.yaml` (patched to loopback ports and mock
//! upstreams), mock providers that speak the providers' wire formats and record what they
//! receive, and freshly generated signing keys with the tokens they mint.

// The harness is test code: a failed expectation should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod client;
pub mod control_plane;
pub mod envoy;
pub mod fleet;
pub mod load;
pub mod mock_provider;
pub mod setup;
pub mod streaming;
pub mod wrk;

use std::path::PathBuf;

/// The repository root (the tests crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
