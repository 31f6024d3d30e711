//! Token usage from provider responses, read incrementally: an SSE parser that accepts any
//! chunk boundaries and keeps at most one event, and a `UsageMeter` per response that knows
//! where each provider reports usage (OpenAI chat, embeddings and responses; Anthropic
//! messages; Gemini generateContent), in JSON and in streams. What is done with the usage
//! (quotas, metrics) is not this module's business.

use serde_json::Value;

/// Tokens a response used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens, reasoning ones included.
    pub output_tokens: u64,
    /// The part of `input_tokens` served from the provider's prompt cache.
    pub cached_input_tokens: u64,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Which provider API a response comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFormat {
    /// OpenAI chat completions and embeddings (and OpenAI-compatible APIs).
    OpenAiChat,
    /// OpenAI responses API.
    OpenAiResponses,
    /// Anthropic messages.
    Anthropic,
    /// Gemini generateContent / streamGenerateContent.
    Gemini,
}

/// Largest single SSE event, or JSON response, the meter holds; beyond it usage is unknown
/// (the response itself still passes through untouched).
pub const MAX_HELD_BYTES: usize = 4 * 1024 * 1024;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// An incremental parser of `text/event-stream` (WHATWG HTML §9.2): lines end in LF, CRLF or
/// CR, a blank line ends an event, `:` starts a comment. Holds only the current line and event.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    /// The previous chunk ended in CR: a leading LF in the next one belongs to it.
    after_cr: bool,
    /// The current event outgrew `MAX_HELD_BYTES` and is being skipped.
    overflowed: bool,
}

impl SseParser {
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent)) {
        for &byte in chunk {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' => self.end_line(&mut on_event),
                b'\r' => {
                    self.end_line(&mut on_event);
                    self.after_cr = true;
                }
                _ => {
                    if self.line.len() + self.data.len() < MAX_HELD_BYTES {
                        self.line.push(byte);
                    } else {
                        self.overflowed = true;
                    }
                }
            }
        }
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(SseEvent)) {
        if self.line.is_empty() {
            if self.has_data && !self.overflowed {
                on_event(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            self.overflowed = false;
            return;
        }
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "" => {} // a comment
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {} // id, retry and unknown fields do not matter here
        }
    }
}

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
