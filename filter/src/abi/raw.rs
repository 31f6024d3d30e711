//! The proxy-wasm host calls the filter makes, declared directly against the ABI so that
//! every failure is a `Result`. The SDK's `hostcalls` panic on an unexpected status, and a
//! panic kills the VM: every later request on that worker would fail.

use std::ptr::{null, null_mut};

use crate::host::HeaderBlock;
pub use crate::host::HostStatus;

/// proxy-wasm map and buffer types (ABI 0.2.1).
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
const HTTP_REQUEST_BODY: u32 = 0;
const HTTP_RESPONSE_BODY: u32 = 1;
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
const METRIC_COUNTER: u32 = 0;
const METRIC_GAUGE: u32 = 1;
const PLUGIN_CONFIGURATION: u32 = 7;
const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_CAS_MISMATCH: u32 = 8;

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
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, map_data: *const u8, map_size: usize) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
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
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_done() -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

fn check(status: u32) -> Result<(), HostStatus> {
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostStatus(status))
    }
}

/// Takes ownership of memory the host filled through the SDK's `proxy_on_memory_allocate`
/// (a `Vec<u8>` of exactly `size` bytes).
unsafe fn take_host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    Vec::from_raw_parts(data, size, size)
}

fn header_pairs(map_type: u32) -> Result<HeaderBlock, HostStatus> {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    check(status)?;
    Ok(HeaderBlock::from_serialized(unsafe {
        take_host_bytes(data, size)
    }))
}

pub fn request_headers() -> Result<HeaderBlock, HostStatus> {
    header_pairs(REQUEST_HEADERS)
}

pub fn response_headers() -> Result<HeaderBlock, HostStatus> {
    header_pairs(RESPONSE_HEADERS)
}

/// Replaces every response header with `headers`: one host call however many change.
pub fn set_response_headers(headers: &HeaderBlock) -> Result<(), HostStatus> {
    let bytes = headers.as_bytes();
    check(unsafe { proxy_set_header_map_pairs(RESPONSE_HEADERS, bytes.as_ptr(), bytes.len()) })
}

pub fn replace_request_header(name: &str, value: &[u8]) -> Result<(), HostStatus> {
    check(unsafe {
        proxy_replace_header_map_value(
            REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn remove_request_header(name: &str) -> Result<(), HostStatus> {
    check(unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) })
}

pub fn remove_response_header(name: &str) -> Result<(), HostStatus> {
    check(unsafe { proxy_remove_header_map_value(RESPONSE_HEADERS, name.as_ptr(), name.len()) })
}

fn buffer(buffer_type: u32, max_size: usize) -> Result<Vec<u8>, HostStatus> {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe { proxy_get_buffer_bytes(buffer_type, 0, max_size, &mut data, &mut size) };
    if status == STATUS_NOT_FOUND {
        return Ok(Vec::new());
    }
    check(status)?;
    Ok(unsafe { take_host_bytes(data, size) })
}

pub fn request_body(size: usize) -> Result<Vec<u8>, HostStatus> {
    buffer(HTTP_REQUEST_BODY, size)
}

/// Replaces the first `size` bytes of the buffered request body (all of it) with `body`.
pub fn replace_request_body(size: usize, body: &[u8]) -> Result<(), HostStatus> {
    check(unsafe { proxy_set_buffer_bytes(HTTP_REQUEST_BODY, 0, size, body.as_ptr(), body.len()) })
}

/// Replaces the first `size` bytes of the response body chunk at hand with `body`.
pub fn replace_response_body(size: usize, body: &[u8]) -> Result<(), HostStatus> {
    check(unsafe { proxy_set_buffer_bytes(HTTP_RESPONSE_BODY, 0, size, body.as_ptr(), body.len()) })
}

pub fn replace_response_header(name: &str, value: &[u8]) -> Result<(), HostStatus> {
    check(unsafe {
        proxy_replace_header_map_value(
            RESPONSE_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// A shared-data value and its CAS token; `None` when the key does not exist.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostStatus> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0u32;
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    if status == STATUS_NOT_FOUND {
        return Ok(None);
    }
    check(status)?;
    Ok(Some((unsafe { take_host_bytes(data, size) }, cas)))
}

/// Writes a shared-data value if its CAS token is still `cas`: `Ok(false)` on a mismatch.
/// Envoy ignores the token when the key does not exist yet (and `0` means "no check").
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<bool, HostStatus> {
    let status =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    if status == STATUS_CAS_MISMATCH {
        return Ok(false);
    }
    check(status).map(|()| true)
}

/// Calls one of the host's foreign functions (Envoy's `verify_signature`, …) with its
/// serialized arguments; its serialized result.
pub fn call_foreign_function(name: &str, arguments: &[u8]) -> Result<Vec<u8>, HostStatus> {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    };
    check(status)?;
    Ok(unsafe { take_host_bytes(data, size) })
}

pub fn plugin_configuration() -> Result<Vec<u8>, HostStatus> {
    buffer(PLUGIN_CONFIGURATION, usize::MAX)
}

pub fn response_header(name: &str) -> Result<Option<Vec<u8>>, HostStatus> {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe {
        proxy_get_header_map_value(
            RESPONSE_HEADERS,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        )
    };
    if status == STATUS_NOT_FOUND {
        return Ok(None);
    }
    check(status)?;
    Ok(Some(unsafe { take_host_bytes(data, size) }))
}

pub fn response_body(size: usize) -> Result<Vec<u8>, HostStatus> {
    buffer(HTTP_RESPONSE_BODY, size)
}

pub fn define_counter(name: &str) -> Result<u32, HostStatus> {
    let mut id = 0u32;
    check(unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Sets a gauge (defined under `name` on first use; Envoy shares it across workers).
pub fn set_gauge(name: &str, value: u64) -> Result<(), HostStatus> {
    let mut id = 0u32;
    check(unsafe { proxy_define_metric(METRIC_GAUGE, name.as_ptr(), name.len(), &mut id) })?;
    check(unsafe { proxy_record_metric(id, value) })
}

pub fn increment_counter(id: u32, by: u64) -> Result<(), HostStatus> {
    check(unsafe { proxy_increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX)) })
}

/// Sets a filter-state property (Envoy: `wasm.<name>`), readable by the access log.
pub fn set_property(name: &str, value: &[u8]) -> Result<(), HostStatus> {
    check(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

pub fn now_nanoseconds() -> Result<u64, HostStatus> {
    let mut time = 0u64;
    check(unsafe { proxy_get_current_time_nanoseconds(&mut time) })?;
    Ok(time)
}

pub fn send_local_response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), HostStatus> {
    let map = HeaderBlock::from_pairs(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    let map = map.as_bytes();
    check(unsafe {
        proxy_send_local_response(
            u32::from(status),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    })
}

/// The root context's timer; 0 stops it.
pub fn set_tick_period(milliseconds: u32) -> Result<(), HostStatus> {
    check(unsafe { proxy_set_tick_period_milliseconds(milliseconds) })
}

/// A host property (`["node", "id"]`); `None` when the host has none by that path.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
    let serialized = path.join("\0");
    let mut data = null_mut();
    let mut size = 0;
    let status =
        unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    if status == STATUS_NOT_FOUND {
        return Ok(None);
    }
    check(status)?;
    Ok(Some(unsafe { take_host_bytes(data, size) }))
}

/// The headers of the answer to a call the filter made (`dispatch_http_call`).
pub fn call_response_headers() -> Result<HeaderBlock, HostStatus> {
    header_pairs(HTTP_CALL_RESPONSE_HEADERS)
}

/// The body of the answer to a call the filter made.
pub fn call_response_body(size: usize) -> Result<Vec<u8>, HostStatus> {
    buffer(HTTP_CALL_RESPONSE_BODY, size)
}

/// A root context that asked to finish later (`on_done` returned false) is done now.
pub fn done() -> Result<(), HostStatus> {
    check(unsafe { proxy_done() })
}
