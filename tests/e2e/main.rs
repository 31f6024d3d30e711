//! End-to-end tests: the compiled `dist/tokenward.wasm` in a real Envoy, in front of mock
//! providers on loopback. One binary, a module per area. `make test` builds the module and
//! installs Envoy first; run alone, a missing prerequisite fails with what to run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway;

mod concurrency;
mod config;
mod control_plane;
mod credentials;
mod dashboard;
mod docker;
mod errors;
mod examples;
mod faults;
mod fleet_quotas;
mod guard;
mod hardening;
mod local_replies;
mod openapi;
mod providers;
mod quotas;
mod replicas;
mod sdks;
mod spikes;
mod sync;
mod tls;
mod usage;
mod xds;
