//! Where each provider API reports usage, in a JSON answer and in a stream, and the
//! `UsageMeter` that follows one response to find it.

use serde_json::Value;

use super::ApiFormat;
use crate::usage::{SseSifter, Usage, MAX_HELD_BYTES};

/// Follows one response and keeps the usage it reports.
#[derive(Debug)]
pub struct UsageMeter {
    format: ApiFormat,
    streaming: bool,
    sse: SseSifter,
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
            sse: SseSifter::default(),
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
            self.sse.feed(chunk, super::may_carry_usage, |event| {
                if event.data != b"[DONE]" {
                    super::event_usage(format, event.data, usage);
                }
            });
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
    super::json_usage(format, &envelope.usage, &envelope.usage_metadata)
}

#[cfg(test)]
mod tests;
