//! Gemini: the `x-goog-api-key` credential, generateContent and streamGenerateContent, and
//! `usageMetadata`, which every chunk of a stream repeats, growing.

use super::{count, ApiFormat, BodyShape, EventEnvelope};
use crate::json::raw::Raw;
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
    if let Some(found) = json_usage(event.usage_metadata) {
        *usage = Some(found);
    }
}

/// A `usageMetadata` object.
pub(super) fn json_usage(meta: Raw<'_>) -> Option<Usage> {
    let [prompt, candidates, thoughts, cached] = meta.fields([
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "cachedContentTokenCount",
    ]);
    Some(Usage {
        input_tokens: prompt.as_u64()?,
        // Thinking tokens are billed as output.
        output_tokens: count(candidates).saturating_add(count(thoughts)),
        cached_input_tokens: count(cached),
    })
}
