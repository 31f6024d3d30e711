//! Where each provider API reports usage, in a JSON answer and in a stream, and the
//! `UsageMeter` that follows one response to find it.

use serde_json::Value;

use super::ApiFormat;
use crate::usage::{SseEvent, SseParser, Usage, MAX_HELD_BYTES};

/// Follows one response and keeps the usage it reports.
#[derive(Debug)]
pub struct UsageMeter {
    format: ApiFormat,
    streaming: bool,
    sse: SseParser,
    json: Vec<u8>,
    json_overflowed: bool,
    usage: Option<Usage>,
}

impl UsageMeter {
    /// `streaming`: the response is `text/event-stream`.
    pub fn new(format: ApiFormat, streaming: bool) -> Self {
        UsageMeter {
            format,
            streaming,
            sse: SseParser::default(),
            json: Vec::new(),
            json_overflowed: false,
            usage: None,
        }
    }

    /// Feeds the next piece of the response body, as it passes through.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.streaming {
            let format = self.format;
            let usage = &mut self.usage;
            self.sse
                .feed(chunk, |event| apply_event(format, &event, usage));
        } else if !self.json_overflowed {
            if self.json.len() + chunk.len() > MAX_HELD_BYTES {
                self.json_overflowed = true;
                self.json = Vec::new();
            } else {
                self.json.extend_from_slice(chunk);
            }
        }
    }

    /// The usage reported, once the whole body has been fed; `None` if the response
    /// reported none (an error, an aborted stream, an oversized body).
    pub fn finish(&mut self) -> Option<Usage> {
        // Parses what is held, once: a second call (nothing held any more) keeps the answer
        // instead of overwriting it with the usage of an empty body.
        if !self.streaming && !self.json_overflowed && !self.json.is_empty() {
            self.usage = usage_in_json(self.format, &self.json);
            self.json = Vec::new();
        }
        self.usage
    }
}

fn apply_event(format: ApiFormat, event: &SseEvent, usage: &mut Option<Usage>) {
    if event.data == "[DONE]" {
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(event.data.as_bytes()) else {
        return;
    };
    match format {
        // OpenAI sends usage in one chunk (with `stream_options.include_usage`); other
        // chunks carry `"usage": null`.
        ApiFormat::OpenAiChat => {
            if let Some(found) = openai_chat_usage(&value["usage"]) {
                *usage = Some(found);
            }
        }
        ApiFormat::OpenAiResponses => {
            if value["type"] == "response.completed" || value["type"] == "response.incomplete" {
                if let Some(found) = openai_responses_usage(&value["response"]["usage"]) {
                    *usage = Some(found);
                }
            }
        }
        // Anthropic: `message_start` carries the input (and cache) tokens, each
        // `message_delta` the cumulative output tokens.
        ApiFormat::Anthropic => match value["type"].as_str() {
            Some("message_start") => {
                if let Some(found) = anthropic_usage(&value["message"]["usage"]) {
                    *usage = Some(found);
                }
            }
            Some("message_delta") => {
                if let Some(output) = value["usage"]["output_tokens"].as_u64() {
                    let current = usage.get_or_insert_with(Usage::default);
                    current.output_tokens = output;
                    // Newer streams repeat the input counts here; take them when present.
                    if let Some(found) = anthropic_usage(&value["usage"]) {
                        if found.input_tokens > 0 {
                            current.input_tokens = found.input_tokens;
                            current.cached_input_tokens = found.cached_input_tokens;
                        }
                    }
                }
            }
            _ => {}
        },
        // Gemini repeats `usageMetadata` in every chunk, growing; the last one counts.
        ApiFormat::Gemini => {
            if let Some(found) = gemini_usage(&value["usageMetadata"]) {
                *usage = Some(found);
            }
        }
    }
}

/// The parts of a JSON answer that carry usage; everything else (an embeddings array, the
/// generated text) is skipped while parsing instead of being built into a `Value`.
#[derive(serde::Deserialize)]
struct UsageEnvelope {
    #[serde(default)]
    usage: Value,
    #[serde(default, rename = "usageMetadata")]
    usage_metadata: Value,
}

fn usage_in_json(format: ApiFormat, json: &[u8]) -> Option<Usage> {
    // Gemini's streamGenerateContent without `alt=sse` answers with a JSON array of chunks;
    // the last one's usage counts. (An array must not reach the struct parse: serde would
    // read it as the struct's fields in order.)
    let is_array = json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let envelope = if is_array {
        if format != ApiFormat::Gemini {
            return None;
        }
        serde_json::from_slice::<Vec<UsageEnvelope>>(json)
            .ok()?
            .into_iter()
            .rev()
            .find(|e| !e.usage_metadata.is_null())?
    } else {
        serde_json::from_slice::<UsageEnvelope>(json).ok()?
    };
    match format {
        ApiFormat::OpenAiChat => openai_chat_usage(&envelope.usage),
        ApiFormat::OpenAiResponses => openai_responses_usage(&envelope.usage),
        ApiFormat::Anthropic => anthropic_usage(&envelope.usage),
        ApiFormat::Gemini => gemini_usage(&envelope.usage_metadata),
    }
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

fn openai_chat_usage(usage: &Value) -> Option<Usage> {
    let input = usage.get("prompt_tokens")?.as_u64()?;
    Some(Usage {
        input_tokens: input,
        // Embeddings report no completion tokens.
        output_tokens: count(&usage["completion_tokens"]),
        cached_input_tokens: count(&usage["prompt_tokens_details"]["cached_tokens"]),
    })
}

fn openai_responses_usage(usage: &Value) -> Option<Usage> {
    Some(Usage {
        input_tokens: usage.get("input_tokens")?.as_u64()?,
        output_tokens: count(&usage["output_tokens"]),
        cached_input_tokens: count(&usage["input_tokens_details"]["cached_tokens"]),
    })
}

fn anthropic_usage(usage: &Value) -> Option<Usage> {
    // Anthropic's input_tokens exclude the cache: the prompt is all three together.
    let uncached = usage.get("input_tokens")?.as_u64()?;
    let cache_read = count(&usage["cache_read_input_tokens"]);
    let cache_write = count(&usage["cache_creation_input_tokens"]);
    Some(Usage {
        input_tokens: uncached
            .saturating_add(cache_read)
            .saturating_add(cache_write),
        output_tokens: count(&usage["output_tokens"]),
        cached_input_tokens: cache_read,
    })
}

fn gemini_usage(meta: &Value) -> Option<Usage> {
    let prompt = meta.get("promptTokenCount")?.as_u64()?;
    Some(Usage {
        input_tokens: prompt,
        // Thinking tokens are billed as output.
        output_tokens: count(&meta["candidatesTokenCount"])
            .saturating_add(count(&meta["thoughtsTokenCount"])),
        cached_input_tokens: count(&meta["cachedContentTokenCount"]),
    })
}

#[cfg(test)]
mod tests;
