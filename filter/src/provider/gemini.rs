//! Gemini: the `x-goog-api-key` credential, generateContent and streamGenerateContent, and
//! `usageMetadata`, which every chunk of a stream repeats, growing.

use serde_json::Value;

use super::{count, ApiFormat, BodyShape, EventEnvelope};
use crate::usage::Usage;

pub(super) fn credential(secret: String) -> (&'static str, String) {
    ("x-goog-api-key", secret)
}

pub(super) fn api_format(path: &str) -> Option<ApiFormat> {
    (path.contains(":generateContent") || path.contains(":streamGenerateContent"))
        .then_some(ApiFormat::Gemini)
}

/// Gemini's limit sits in generationConfig, and its routes do not read the body.
pub(super) fn body_shape() -> BodyShape {
    BodyShape {
        produces_output: true,
        limit_fields: &[],
        usage_is_opt_in: false,
    }
}

/// The last chunk's `usageMetadata` counts.
pub(super) fn event_usage(event: &EventEnvelope<'_>, usage: &mut Option<Usage>) {
    if let Some(found) = json_usage(&event.usage_metadata) {
        *usage = Some(found);
    }
}

/// A `usageMetadata` object.
pub(super) fn json_usage(meta: &Value) -> Option<Usage> {
    let prompt = meta.get("promptTokenCount")?.as_u64()?;
    Some(Usage {
        input_tokens: prompt,
        // Thinking tokens are billed as output.
        output_tokens: count(&meta["candidatesTokenCount"])
            .saturating_add(count(&meta["thoughtsTokenCount"])),
        cached_input_tokens: count(&meta["cachedContentTokenCount"]),
    })
}
