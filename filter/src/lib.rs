//! tokenward's proxy-wasm filter. The pure core (everything but `abi`) validates a client's
//! tokenward credential, authorizes it for the route and model, and decides the credential
//! swap; `abi` is the only module that talks to Envoy. The control plane uses `config` and
//! `claims` from this crate, so what it pushes and what the filter reads share one schema.

// The control plane's API: the configuration schema, the claims, the API-key format,
// `Policy::compile`/`load`/`authenticate`, identities and refusals.
pub use auth::apikey;
pub mod claims;
pub mod config;
pub mod error;
pub mod identity;
pub mod policy;
pub mod sync;
pub mod window;

/// Names quoted in messages without `{:?}`'s Unicode tables.
mod quoted;

pub use provider::CLUSTER_HEADER;

/// Modules of the core that nothing outside the filter needs: private, and exported only to
/// the fuzz targets and tests (feature `test-support`), which drive its parsers directly.
macro_rules! internal {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(any(test, feature = "test-support"))]
        pub mod $name;
        // Natively (the control plane's build) the request path has no caller: only `abi`
        // drives it, inside Envoy.
        #[cfg(not(any(test, feature = "test-support")))]
        #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
        mod $name;
    )*};
}

internal!(
    auth, credential, decision, document, exchange, guard, host, invalid, json, model, provider,
    quota, request, session, stat, usage,
);

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
mod abi;
