//! What the fuzz targets share: a reader that turns the fuzzer's bytes into choices, the
//! fixed signing keys and policy of the `jwt` target, and the control plane's ADS stream state
//! machine compiled from its own source file. The targets themselves are in `fuzz_targets/`.

pub mod choices;
pub mod jwt_fixture;

/// The control plane's ADS stream state machine, compiled from its source: it is pure std by
/// design, and depending on the control-plane crate would build (and instrument) tonic, axum,
/// SQLite and envoy-types for one 200-line file.
/// (rustfmt would look for the file's test module beside this crate: the control plane's
/// own `cargo fmt` formats it.)
#[rustfmt::skip]
#[path = "../../control-plane/src/xds/stream.rs"]
pub mod ads_stream;
