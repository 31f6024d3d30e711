//! What the core tells the host to do with a request. Only the ABI layer turns a `Decision`
//! into proxy-wasm calls, so every outcome can be asserted in native tests.

use std::sync::Arc;

use crate::error::Refusal;

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Apply the header edits and let the request go on to the router.
    Forward(HeaderEdits),
    /// The route needs the body: apply these edits now (the credential swap: proxy-wasm in
    /// Envoy cannot touch headers once the body is being read), then let the headers pass
    /// so the body reaches the filter, which then answers `Continue` or `Refuse`. The
    /// Envoy config holds the request before the router (the buffer filter after
    /// tokenward) until that decision, so a refused request never leaves Envoy.
    ReadBody(HeaderEdits),
    /// Hold the request until more of the body has arrived (the host buffers it).
    WaitForBody,
    /// Replace the whole buffered request body with this one and let it go on.
    ReplaceBody(Vec<u8>),
    /// Answer locally with this refusal; nothing reaches the provider.
    Refuse(Refusal),
    /// Nothing to do for this callback.
    Continue,
}

/// Edits to the request headers, applied in order: removals, then the provider's headers,
/// then the per-request sets (each set replaces every existing value of that name).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    pub remove: Vec<&'static str>,
    /// Client-sent internal headers, removed too (their names are the client's).
    pub remove_owned: Vec<String>,
    /// The provider's own headers, shared with the policy rather than copied per request.
    pub provider_headers: Arc<[(String, Vec<u8>)]>,
    pub set: Vec<(String, Vec<u8>)>,
}

impl HeaderEdits {
    /// Every header the edits set, in the order they are applied.
    pub fn sets(&self) -> impl Iterator<Item = &(String, Vec<u8>)> {
        self.provider_headers.iter().chain(self.set.iter())
    }

    #[cfg(any(test, feature = "test-support"))]
    /// The value a header will have after the edits, if the edits set it.
    pub fn value_of(&self, name: &str) -> Option<&[u8]> {
        self.sets()
            .filter(|(n, _)| n == name)
            .last()
            .map(|(_, v)| v.as_slice())
    }

    #[cfg(any(test, feature = "test-support"))]
    /// Whether the edits remove this header.
    pub fn removes(&self, name: &str) -> bool {
        self.remove.contains(&name) || self.remove_owned.iter().any(|n| n == name)
    }
}
