//! Anthropic: the `x-api-key` credential, the `anthropic-version` it requires, the messages
//! API, and its usage (input, cache and output tokens, spread over a stream's events).

use super::{count, ApiFormat, BodyShape, EventEnvelope};
use crate::json::raw::Raw;
use crate::usage::Usage;

/// Anthropic's API refuses requests without a version; this one is set when neither the
/// client nor the provider config names one.
pub const DEFAULT_VERSION: &str = "2023-06-01";

pub(super) fn credential(secret: String) -> (&'static str, String) {
    ("x-api-key", secret)
}

/// Token counting and batch management are not generations: nothing to meter.
pub(super) fn api_format(path: &str) -> Option<ApiFormat> {
    (path.contains("/messages") && !path.contains("/count_tokens") && !path.contains("/batches"))
        .then_some(ApiFormat::Anthropic)
}

pub(super) fn body_shape() -> BodyShape {
    BodyShape {
        produces_output: true,
        limit_fields: &["max_tokens"],
        usage_is_opt_in: false,
    }
}

/// `message_start` carries the input (and cache) tokens, each `message_delta` the cumulative
/// output tokens.
pub(super) fn event_usage(event: &EventEnvelope<'_>, usage: &mut Option<Usage>) {
    match event.kind() {
        Some("message_start") => {
            if let Some(found) = json_usage(event.message.get("usage")) {
                *usage = Some(found);
            }
        }
        Some("message_delta") => {
            if let Some(output) = event.usage.get("output_tokens").as_u64() {
                let current = usage.get_or_insert_with(Usage::default);
                current.output_tokens = output;
                // Newer streams repeat the input counts here; take them when present.
                if let Some(found) = json_usage(event.usage) {
                    if found.input_tokens > 0 {
                        current.input_tokens = found.input_tokens;
                        current.cached_input_tokens = found.cached_input_tokens;
                    }
                }
            }
        }
        _ => {}
    }
}

/// A `usage` object. Anthropic's input_tokens exclude the cache: the prompt is all three
/// together.
pub(super) fn json_usage(usage: Raw<'_>) -> Option<Usage> {
    let [uncached, cache_read, cache_write, output] = usage.fields([
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "output_tokens",
    ]);
    let cache_read = count(cache_read);
    Some(Usage {
        input_tokens: uncached
            .as_u64()?
            .saturating_add(cache_read)
            .saturating_add(count(cache_write)),
        output_tokens: count(output),
        cached_input_tokens: cache_read,
    })
}
