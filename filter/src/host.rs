//! The host as the core sees it: a small trait with one real implementation (the proxy-wasm
//! ABI in `abi`) and a fake for native tests. The core never calls proxy-wasm itself.

/// What the core reads from the host while deciding about a request.
pub trait Host {
    /// Every request header, once, as raw bytes (names are lowercase ASCII in Envoy).
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// The first `size` bytes of the buffered request body.
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    /// The host's wall clock, in Unix seconds; `None` if the host cannot say (the request is
    /// then refused: without a clock no expiry can be checked).
    fn now_unix_seconds(&self) -> Option<u64>;
}

#[cfg(test)]
pub mod fake {
    //! A host for tests, built with `with_*` methods.

    use super::Host;

    #[derive(Debug, Clone, Default)]
    pub struct FakeHost {
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        now: u64,
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

        pub fn body_len(&self) -> usize {
            self.body.len()
        }
    }

    impl Host for FakeHost {
        fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
            self.headers.clone()
        }

        fn request_body(&self, size: usize) -> Option<Vec<u8>> {
            Some(self.body[..size.min(self.body.len())].to_vec())
        }

        fn now_unix_seconds(&self) -> Option<u64> {
            Some(self.now)
        }
    }
}
