//! The floor of `make bench`: a proxy-wasm HTTP filter that lets every request and response
//! through untouched. What it costs is what Envoy's Wasm host costs any filter (a VM call per
//! callback), the baseline tokenward's figures are held against. Natively it is empty: only
//! the wasm32 build is a module.

#![cfg(target_arch = "wasm32")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Floor) });
}}

/// Root and HTTP context at once: it holds nothing, so one type serves both.
struct Floor;

impl Context for Floor {}

impl RootContext for Floor {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor))
    }
}

// Every callback's default answer is `Action::Continue`.
impl HttpContext for Floor {}
