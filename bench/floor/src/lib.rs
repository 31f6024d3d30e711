//! The floor of `make bench`: a proxy-wasm HTTP filter that lets every request and response
//! through untouched. What it costs is what Envoy's Wasm host costs any filter (a VM call per
//! callback), the baseline tokenward's figures are held against. Natively it is empty: only
//! the wasm32 build is a module.
//!
//! Configured with `read-body`, it also reads each response chunk into the VM and drops it:
//! the floor of any filter that meters a stream, which must see every byte of it.

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
}

impl Context for Floor {}

impl RootContext for Floor {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.reads_body = self.get_plugin_configuration().as_deref() == Some(b"read-body");
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
    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if self.reads_body && body_size > 0 {
            // The host copies the chunk into memory the VM allocates; dropping it frees it.
            std::hint::black_box(self.get_http_response_body(0, body_size));
        }
        Action::Continue
    }
}
