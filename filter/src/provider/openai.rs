//! OpenAI and Azure OpenAI (and OpenAI-compatible APIs): the bearer or `api-key` credential,
//! chat completions, completions, embeddings and the Responses API, and where each reports
//! usage.

use super::{count, ApiFormat, BodyShape, EventEnvelope};
use crate::json::raw::Raw;
use crate::usage::Usage;

/// OpenAI takes a bearer token; Azure OpenAI its own `api-key` header.
pub(super) fn credential(secret: String, azure: bool) -> (&'static str, String) {
    if azure {
        ("api-key", secret)
    } else {
        ("authorization", format!("Bearer {secret}"))
    }
}

pub(super) fn api_format(path: &str) -> Option<ApiFormat> {
    if path.contains("/responses") {
        Some(ApiFormat::OpenAiResponses)
    } else if path.contains("/chat/completions")
        || path.contains("/completions")
        || path.contains("/embeddings")
    {
        Some(ApiFormat::OpenAiChat)
    } else {
        None
    }
}

pub(super) fn body_shape(format: ApiFormat, path: &str) -> BodyShape {
    let (produces_output, limit_fields, usage_is_opt_in): (_, &'static [&'static str], _) =
        match format {
            ApiFormat::OpenAiResponses => (true, &["max_output_tokens"], false),
            _ if path.contains("/embeddings") => (false, &[], false),
            _ if path.contains("/chat/completions") => {
                (true, &["max_completion_tokens", "max_tokens"], true)
            }
            _ => (true, &["max_tokens"], true),
        };
    BodyShape {
        produces_output,
        limit_fields,
        usage_is_opt_in,
    }
}

/// Chat completions send usage in one chunk (with `stream_options.include_usage`), the other
/// chunks carry `"usage": null`; the Responses API in its `response.completed` (or
/// `response.incomplete`) event.
pub(super) fn event_usage(format: ApiFormat, event: &EventEnvelope<'_>, usage: &mut Option<Usage>) {
    let found = match format {
        ApiFormat::OpenAiResponses
            if matches!(event.kind(), Some("response.completed" | "response.incomplete")) =>
        {
            responses_usage(event.response.get("usage"))
        }
        ApiFormat::OpenAiResponses => None,
        _ => chat_usage(event.usage),
    };
    if found.is_some() {
        *usage = found;
    }
}

/// The chunk a chat stream sends for `stream_options.include_usage`: no choices, a usage.
pub(super) fn is_usage_only_chunk(data: &[u8]) -> bool {
    EventEnvelope::parse(data)
        .is_some_and(|chunk| chunk.choices.is_empty_array() && chunk.usage.is_object())
}

/// The `usage` member of a JSON answer.
pub(super) fn json_usage(format: ApiFormat, usage: Raw<'_>) -> Option<Usage> {
    match format {
        ApiFormat::OpenAiResponses => responses_usage(usage),
        _ => chat_usage(usage),
    }
}

fn chat_usage(usage: Raw<'_>) -> Option<Usage> {
    let [input, output, details] =
        usage.fields(["prompt_tokens", "completion_tokens", "prompt_tokens_details"]);
    Some(Usage {
        input_tokens: input.as_u64()?,
        // Embeddings report no completion tokens.
        output_tokens: count(output),
        cached_input_tokens: count(details.get("cached_tokens")),
    })
}

fn responses_usage(usage: Raw<'_>) -> Option<Usage> {
    let [input, output, details] =
        usage.fields(["input_tokens", "output_tokens", "input_tokens_details"]);
    Some(Usage {
        input_tokens: input.as_u64()?,
        output_tokens: count(output),
        cached_input_tokens: count(details.get("cached_tokens")),
    })
}
