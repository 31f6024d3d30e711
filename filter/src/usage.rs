//! Token usage, and the SSE parser that reads it from streams incrementally: any chunk
//! boundaries, at most one event held. Where each provider reports usage is `provider`'s
//! business; what is done with it (quotas, metrics) is not this module's.

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

#[cfg(test)]
mod tests;
