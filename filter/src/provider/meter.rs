//! Where each provider API reports usage, in a JSON answer and in a stream, and the
//! `UsageMeter` that follows one response to find it.

use super::{envelope, ApiFormat};
use crate::json::raw::Raw;
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

/// The usage in a JSON answer: its `usage` or `usageMetadata`; everything else (an
/// embeddings array, the generated text) is validated and skipped, never built.
fn usage_in_json(format: ApiFormat, json: &[u8]) -> Option<Usage> {
    // Gemini's streamGenerateContent without `alt=sse` answers with a JSON array of chunks;
    // the last one's usage counts. Every chunk must be an object whose usage fields appear
    // once, as when each was read as an envelope.
    let is_array = json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let [usage, usage_metadata] = if is_array {
        if format != ApiFormat::Gemini {
            return None;
        }
        let mut last = None;
        for chunk in Raw::parse(json).ok()?.elements() {
            let [usage, usage_metadata] = envelope(chunk.text(), ["usage", "usageMetadata"])?;
            if !usage_metadata.is_null() {
                last = Some([usage, usage_metadata]);
            }
        }
        last?
    } else {
        envelope(json, ["usage", "usageMetadata"])?
    };
    super::json_usage(format, usage, usage_metadata)
}

#[cfg(test)]
mod tests;
