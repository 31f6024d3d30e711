//! tokenward's control plane: keeps signing keys, tokens, API keys, revocations, providers,
//! routes and plans in a database and renders them into the filter's configuration (the
//! filter crate's own types, so what is pushed is what the filter parses).
//!
//! Rooms: `model` (domain rules, pure), `crypto` (master key, sealing), `store` (the only
//! SQL), `plane` (operations), `state` (what the servers share), `server` (starting them),
//! `admin` (the HTTP API), `ui` (the dashboard, on the same listener), `xds` (ADS), `cli`
//! (arguments → operations → output), `tls` (certificates and handshakes of the admin API
//! and ADS), `jobs` (what runs once per period across
//! replicas, under a lease), `outbound` (the calls it makes itself: alert webhooks and
//! `otlp`, usage as OpenTelemetry metrics).

pub mod admin;
pub mod cli;
pub mod crypto;
pub mod jobs;
pub mod logging;
pub mod mesh;
pub mod model;
pub mod otlp;
pub mod outbound;
pub mod plane;
pub mod server;
pub mod state;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod tls;
pub mod ui;
pub mod view;
pub mod xds;
