//! The floor of `make bench`: a proxy-wasm HTTP filter that lets every request and response
//! through untouched. What it costs is what Envoy's Wasm host costs any filter (a VM call per
//! callback), the baseline tokenward's figures are held against. Natively it is empty: only
//! the wasm32 build is a module.
//!
//! Configured with `read-body`, it also reads each response chunk into the VM and drops it:
//! the floor of any filter that meters a stream, which must see every byte of it.
//! Configured with `swap-headers`, it makes the host calls tokenward makes for a cached
//! token, and nothing else: it reads the request headers in one call and the clock, then
//! sets the three headers a swap sets (the credential, `:authority` and the cluster header).
//! That is the floor of any filter that swaps credentials in Envoy.
//! Configured with `quota-calls`, it makes the host calls tokenward makes for a cached token
//! under a quota plan: the swap's, then one shared-data read and one compare-and-set write of
//! the counters' key, and on the response the clock and the eight rate-limit headers.

#![cfg(target_arch = "wasm32")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Floor::default()) });
}}

/// Root and HTTP context at once: it holds one setting, so one type serves both.
#[derive(Default, Clone, Copy)]
struct Floor {
    reads_body: bool,
    swaps_headers: bool,
    counts_quota: bool,
}

impl Context for Floor {}

impl RootContext for Floor {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let configuration = self.get_plugin_configuration();
        self.reads_body = configuration.as_deref() == Some(b"read-body");
        self.counts_quota = configuration.as_deref() == Some(b"quota-calls");
        self.swaps_headers = self.counts_quota || configuration.as_deref() == Some(b"swap-headers");
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(*self))
    }
}

// Every other callback's default answer is `Action::Continue`.
impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.swaps_headers {
            swap_headers();
        }
        if self.counts_quota {
            count_quota();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.counts_quota {
            rate_limit_headers();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if self.reads_body && body_size > 0 {
            // The host copies the chunk into memory the VM allocates; dropping it frees it.
            std::hint::black_box(self.get_http_response_body(0, body_size));
        }
        Action::Continue
    }
}

/// The header maps the calls below act on (proxy-wasm's `MapType`).
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

/// tokenward's host calls for a cached token, as it makes them: the serialized header map
/// in one buffer (the host allocates it in the VM), the clock, three header replacements.
fn swap_headers() {
    let (mut data, mut size, mut now) = (std::ptr::null_mut(), 0usize, 0u64);
    // SAFETY: the host writes a pointer to a buffer it allocated with the SDK's exported
    // allocator, and its size; the Vec takes ownership of exactly that allocation.
    unsafe {
        if proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) == 0 && !data.is_null()
        {
            std::hint::black_box(Vec::from_raw_parts(data, size, size));
        }
        proxy_get_current_time_nanoseconds(&mut now);
    }
    for (name, value) in [
        ("authorization", "Bearer sk-floor-provider-key"),
        (":authority", "api.openai.test"),
        ("x-tokenward-cluster", "openai_cluster"),
    ] {
        // SAFETY: both slices outlive the call, which only reads them.
        unsafe {
            proxy_replace_header_map_value(
                REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            );
        }
    }
}

/// A quota plan's host calls on the request: the counters' key read (the host allocates the
/// value in the VM), then written back if no other worker wrote it in between.
fn count_quota() {
    const KEY: &str = "floor.quota.bench.models.subject";
    // About the size of tokenward's record for two limits.
    const VALUE: &[u8] = b"[[1733450000,12345,0],[1733400000,67890,0]]";
    let (mut data, mut size, mut cas) = (std::ptr::null_mut(), 0usize, 0u32);
    // SAFETY: as in `swap_headers`; the value slice outlives the write, which only reads it.
    unsafe {
        if proxy_get_shared_data(KEY.as_ptr(), KEY.len(), &mut data, &mut size, &mut cas) == 0
            && !data.is_null()
        {
            std::hint::black_box(Vec::from_raw_parts(data, size, size));
        }
        proxy_set_shared_data(KEY.as_ptr(), KEY.len(), VALUE.as_ptr(), VALUE.len(), cas);
    }
}

/// A quota plan's host calls on the response: the clock, then each rate-limit header set.
fn rate_limit_headers() {
    let mut now = 0u64;
    // SAFETY: the host writes the time through the pointer.
    unsafe {
        proxy_get_current_time_nanoseconds(&mut now);
    }
    for (name, value) in [
        (
            "ratelimit-policy",
            "\"rpm\";q=1000000000000;w=60, \"tpd\";q=1000000000000;w=86400;qu=\"tokens\"",
        ),
        (
            "ratelimit",
            "\"rpm\";r=999999999999;t=42, \"tpd\";r=1000000000000;t=52342",
        ),
        ("x-ratelimit-limit-requests", "1000000000000"),
        ("x-ratelimit-remaining-requests", "999999999999"),
        ("x-ratelimit-reset-requests", "42s"),
        ("x-ratelimit-limit-tokens", "1000000000000"),
        ("x-ratelimit-remaining-tokens", "1000000000000"),
        ("x-ratelimit-reset-tokens", "14h32m22s"),
    ] {
        // SAFETY: both slices outlive the call, which only reads them.
        unsafe {
            proxy_replace_header_map_value(
                RESPONSE_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            );
        }
    }
}
