//! The host as the core sees it: a small trait with one real implementation (the proxy-wasm
//! ABI in `abi`) and a fake for native tests. The core never calls proxy-wasm itself.

/// What the core reads from the host while deciding about a request.
pub trait Host {
    /// Every request header, read once (names are lowercase ASCII in Envoy).
    fn request_headers(&self) -> HeaderBlock;
    /// The first `size` bytes of the buffered request body.
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    /// A response header's value (the first, if repeated).
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    /// The response body bytes of the current callback (`size` of them).
    fn response_body(&self, size: usize) -> Option<Vec<u8>>;
    /// The host's wall clock, in Unix seconds; `None` if the host cannot say (the request is
    /// then refused: without a clock no expiry can be checked).
    fn now_unix_seconds(&self) -> Option<u64>;
    /// The quota counters shared by every worker of this Envoy.
    fn store(&self) -> &dyn crate::quota::counter::SharedStore;
    /// The downstream peer as Envoy names it (`source.address`: `ip:port`, IPv6 in brackets).
    /// Behind a load balancer that is the balancer, unless Envoy's `use_remote_address` and
    /// `xff_num_trusted_hops` make it the client (docs/guard.md). Read only when the guard
    /// needs it: it is a host call.
    fn source_address(&self) -> Option<String>;
}

/// A host call's non-OK status (proxy-wasm's `WasmResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

/// Written as `{:?}` writes it, for log lines: the module then needs none of `Debug`'s
/// formatting machinery.
impl std::fmt::Display for HostStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostStatus({})", self.0)
    }
}

/// What the core asks the host to do, beside reading it: each proxy-wasm call that changes
/// the request, the response or the stats. `session` drives it; `abi` implements it with
/// hostcalls, and a fake records it for native tests.
pub trait HostOps: Host {
    fn remove_request_header(&self, name: &str) -> Result<(), HostStatus>;
    /// Replaces every value of the header (adds it when absent).
    fn replace_request_header(&self, name: &str, value: &[u8]) -> Result<(), HostStatus>;
    /// Replaces the first `size` bytes of the buffered request body.
    fn replace_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostStatus>;
    fn send_local_response(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), HostStatus>;
    /// Replaces the first `size` bytes of the response body chunk at hand.
    fn replace_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostStatus>;
    /// Every response header, read once.
    fn response_headers(&self) -> Result<HeaderBlock, HostStatus>;
    /// Replaces every response header with these.
    fn set_response_headers(&self, headers: &HeaderBlock) -> Result<(), HostStatus>;
    fn replace_response_header(&self, name: &str, value: &[u8]) -> Result<(), HostStatus>;
    fn remove_response_header(&self, name: &str) -> Result<(), HostStatus>;
    /// Adds to a counter stat (defined on first use). A lost increment fails nothing.
    fn count(&self, stat: &str, by: u64);
    /// Sets a filter-state property for the access log. A failure fails nothing.
    fn set_property(&self, name: &str, value: &[u8]);
}

/// Request headers in the proxy-wasm serialized form, read in place: a count, then (name
/// length, value length) pairs, then each name and value followed by a NUL. Iterating borrows,
/// so reading the headers costs the host's one buffer rather than an allocation per header.
#[derive(Debug, Clone, Default)]
pub struct HeaderBlock {
    bytes: Vec<u8>,
}

impl HeaderBlock {
    pub fn from_serialized(bytes: Vec<u8>) -> Self {
        HeaderBlock { bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone) -> Self {
        let count = pairs.clone().into_iter().count();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(count as u32).to_le_bytes());
        for (name, value) in pairs.clone() {
            bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(value);
            bytes.push(0);
        }
        HeaderBlock { bytes }
    }

    /// The (name, value) pairs in order. A malformed block yields what could be read; a
    /// name that is not UTF-8 (Envoy never sends one) is skipped.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let bytes = self.bytes.as_slice();
        let read_u32 = move |at: usize| -> Option<usize> {
            let b = bytes.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let count = read_u32(0).unwrap_or(0);
        let mut data_at = count
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .unwrap_or(usize::MAX);
        (0..count)
            .map_while(move |i| {
                let name_len = read_u32(4 + i * 8)?;
                let value_len = read_u32(8 + i * 8)?;
                let name_end = data_at.checked_add(name_len)?;
                let value_start = name_end.checked_add(1)?;
                let value_end = value_start.checked_add(value_len)?;
                let name = bytes.get(data_at..name_end)?;
                let value = bytes.get(value_start..value_end)?;
                data_at = value_end.checked_add(1)?;
                Some((name, value))
            })
            .filter_map(|(name, value)| Some((std::str::from_utf8(name).ok()?, value)))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub mod fake {
    //! A host for tests, built with `with_*` methods.

    use std::cell::RefCell;
    use std::rc::Rc;

    use super::{HeaderBlock, Host, HostOps, HostStatus};
    use crate::quota::counter::fake::FakeStore;
    use crate::quota::counter::SharedStore;

    #[derive(Debug, Clone, Default)]
    pub struct FakeHost {
        store: Rc<FakeStore>,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        now: u64,
        response_headers: Vec<(String, Vec<u8>)>,
        response_body: Vec<u8>,
        /// Every `HostOps` call so far, one line each.
        ops: RefCell<Vec<String>>,
        /// `HostOps` calls that fail (by method name).
        failing: Vec<&'static str>,
        /// Envoy's `source.address`.
        source: Option<String>,
        /// How often `source_address` was read.
        source_reads: std::cell::Cell<u32>,
        /// Every `Host` read so far, by method name.
        reads: RefCell<Vec<&'static str>>,
    }

    impl FakeHost {
        pub fn request(method: &str, path: &str) -> Self {
            FakeHost::default()
                .with_header(":method", method)
                .with_header(":path", path)
                .with_header(":authority", "gateway.local")
        }

        pub fn with_header(mut self, name: &str, value: &str) -> Self {
            self.headers
                .push((name.to_string(), value.as_bytes().to_vec()));
            self
        }

        pub fn with_header_bytes(mut self, name: &str, value: &[u8]) -> Self {
            self.headers.push((name.to_string(), value.to_vec()));
            self
        }

        pub fn with_bearer(self, token: &str) -> Self {
            self.with_header("authorization", &format!("Bearer {token}"))
        }

        pub fn with_body(mut self, body: &str) -> Self {
            self.body = body.as_bytes().to_vec();
            self
        }

        pub fn with_now(mut self, now: u64) -> Self {
            self.now = now;
            self
        }

        pub fn with_response_header(mut self, name: &str, value: &str) -> Self {
            self.response_headers
                .push((name.to_string(), value.as_bytes().to_vec()));
            self
        }

        /// Sets the response chunk the next `response_body` call sees.
        pub fn with_response_chunk(mut self, chunk: &[u8]) -> Self {
            self.response_body = chunk.to_vec();
            self
        }

        /// The client's `ip:port`, as Envoy's `source.address` gives it.
        pub fn with_source(mut self, address: &str) -> Self {
            self.source = Some(address.to_string());
            self
        }

        /// How often the request path read the client's address.
        pub fn source_reads(&self) -> u32 {
            self.source_reads.get()
        }

        /// The shared store of this host.
        pub fn shared(&self) -> &FakeStore {
            &self.store
        }

        pub fn body_len(&self) -> usize {
            self.body.len()
        }

        /// Makes a `HostOps` call (by its method name) fail with a host status.
        pub fn failing(mut self, op: &'static str) -> Self {
            self.failing.push(op);
            self
        }

        /// The `Host` reads made so far (by method name), and forgets them.
        pub fn take_reads(&self) -> Vec<&'static str> {
            std::mem::take(&mut *self.reads.borrow_mut())
        }

        fn read(&self, name: &'static str) {
            self.reads.borrow_mut().push(name);
        }

        /// The `HostOps` calls made so far, one line each, and forgets them.
        pub fn take_ops(&self) -> Vec<String> {
            std::mem::take(&mut *self.ops.borrow_mut())
        }

        fn op(&self, name: &'static str, line: String) -> Result<(), HostStatus> {
            self.ops.borrow_mut().push(line);
            if self.failing.contains(&name) {
                return Err(HostStatus(2));
            }
            Ok(())
        }

        /// Shares a store with other hosts: counters that outlive one request.
        pub fn with_store(mut self, store: &Rc<FakeStore>) -> Self {
            self.store = Rc::clone(store);
            self
        }
    }

    impl Host for FakeHost {
        fn request_headers(&self) -> HeaderBlock {
            self.read("request_headers");
            HeaderBlock::from_pairs(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
        }

        fn request_body(&self, size: usize) -> Option<Vec<u8>> {
            self.read("request_body");
            Some(self.body[..size.min(self.body.len())].to_vec())
        }

        fn now_unix_seconds(&self) -> Option<u64> {
            self.read("now_unix_seconds");
            Some(self.now)
        }

        fn response_header(&self, name: &str) -> Option<Vec<u8>> {
            self.read("response_header");
            self.response_headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        }

        fn response_body(&self, size: usize) -> Option<Vec<u8>> {
            self.read("response_body");
            Some(self.response_body[..size.min(self.response_body.len())].to_vec())
        }

        fn store(&self) -> &dyn SharedStore {
            &*self.store
        }

        fn source_address(&self) -> Option<String> {
            self.read("source_address");
            self.source_reads.set(self.source_reads.get() + 1);
            self.source.clone()
        }
    }

    impl HostOps for FakeHost {
        fn remove_request_header(&self, name: &str) -> Result<(), HostStatus> {
            self.op("remove_request_header", format!("remove {name}"))
        }

        fn replace_request_header(&self, name: &str, value: &[u8]) -> Result<(), HostStatus> {
            let value = String::from_utf8_lossy(value);
            self.op("replace_request_header", format!("set {name}: {value}"))
        }

        fn replace_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostStatus> {
            let body = String::from_utf8_lossy(body);
            self.op("replace_request_body", format!("body {size} -> {body}"))
        }

        fn send_local_response(
            &self,
            status: u16,
            _headers: &[(String, String)],
            body: &[u8],
        ) -> Result<(), HostStatus> {
            let body = String::from_utf8_lossy(body);
            self.op("send_local_response", format!("reply {status} {body}"))
        }

        fn replace_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostStatus> {
            let body = String::from_utf8_lossy(body);
            self.op("replace_response_body", format!("response body {size} -> {body}"))
        }

        fn response_headers(&self) -> Result<HeaderBlock, HostStatus> {
            self.op("response_headers", "read response headers".to_string())?;
            let pairs = self.response_headers.iter();
            Ok(HeaderBlock::from_pairs(
                pairs.map(|(n, v)| (n.as_str(), v.as_slice())),
            ))
        }

        fn set_response_headers(&self, headers: &HeaderBlock) -> Result<(), HostStatus> {
            let names: Vec<String> = headers
                .iter()
                .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
                .collect();
            self.op(
                "set_response_headers",
                format!("response headers {}", names.join(" ")),
            )
        }

        fn replace_response_header(&self, name: &str, value: &[u8]) -> Result<(), HostStatus> {
            let value = String::from_utf8_lossy(value);
            self.op(
                "replace_response_header",
                format!("response header {name}={value}"),
            )
        }

        fn remove_response_header(&self, name: &str) -> Result<(), HostStatus> {
            self.op(
                "remove_response_header",
                format!("remove response header {name}"),
            )
        }

        fn count(&self, stat: &str, by: u64) {
            self.ops.borrow_mut().push(format!("count {stat} {by}"));
        }

        fn set_property(&self, name: &str, value: &[u8]) {
            let value = String::from_utf8_lossy(value);
            self.ops
                .borrow_mut()
                .push(format!("property {name}={value}"));
        }
    }
}
