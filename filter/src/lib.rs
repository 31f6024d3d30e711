//! tokenward's proxy-wasm filter. The pure core (everything but `abi`) validates a client's
//! tokenward credential, authorizes it for the route and model, and decides the credential
//! swap; `abi` is the only module that talks to Envoy. The control plane uses `config` and
//! `claims` from this crate, so what it pushes and what the filter reads share one schema.

pub mod apikey;
pub mod cache;
pub mod claims;
pub mod config;
pub mod counter;
pub mod credential;
pub mod decision;
pub mod document;
pub mod error;
pub mod exchange;
pub mod host;
pub mod identity;
pub mod invalid;
pub mod json;
pub mod keys;
pub mod model;
pub mod policy;
pub mod quota;
pub mod request;
pub mod stat;
pub mod token;
pub mod usage;
pub mod window;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
mod abi;
