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

/// One server-sent event, borrowed from the parser until the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field; empty when absent.
    pub event: &'a str,
    /// The `data:` lines joined with `\n`.
    pub data: &'a [u8],
}

/// An incremental parser of `text/event-stream` (WHATWG HTML §9.2): lines end in LF, CRLF or
/// CR, a blank line ends an event, `:` starts a comment. Lines are read in place from the
/// chunk; only a line split across chunks is copied, and the event's buffers are reused.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The start of a line that did not end in its chunk.
    line: Vec<u8>,
    event: String,
    data: Vec<u8>,
    has_data: bool,
    /// The previous chunk ended in CR: a leading LF in the next one belongs to it.
    after_cr: bool,
    /// The current event outgrew `MAX_HELD_BYTES` and is being skipped.
    overflowed: bool,
    /// The held line outgrew `MAX_LINE_BYTES`: only its start is kept.
    line_cut: bool,
}

/// The longest line held across chunks: a `data:` line longer cannot fit an event anyway.
const MAX_LINE_BYTES: usize = MAX_HELD_BYTES + 16;

impl SseParser {
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        let mut rest = chunk;
        if std::mem::take(&mut self.after_cr) && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        while let Some(at) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let piece = &rest[..at];
            if self.line.is_empty() && !self.line_cut {
                self.end_line(piece, false, &mut on_event);
            } else {
                self.hold(piece);
                let line = std::mem::take(&mut self.line);
                let cut = std::mem::take(&mut self.line_cut);
                self.end_line(&line, cut, &mut on_event);
                self.line = line;
                self.line.clear();
            }
            let ended_by_cr = rest[at] == b'\r';
            rest = &rest[at + 1..];
            if ended_by_cr {
                match rest.first() {
                    None => self.after_cr = true,
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                }
            }
        }
        self.hold(rest);
    }

    /// Keeps the start of a line for the next chunk; past `MAX_LINE_BYTES` only its start,
    /// which names its field. Where a chunk ends never changes what the line means.
    fn hold(&mut self, piece: &[u8]) {
        if self.line.len() + piece.len() <= MAX_LINE_BYTES {
            self.line.extend_from_slice(piece);
        } else {
            self.line_cut = true;
        }
    }

    /// A line ended; `cut`: only its start was kept (it was longer than any event may be).
    fn end_line(&mut self, line: &[u8], cut: bool, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() && !cut {
            if self.has_data && !self.overflowed {
                on_event(SseEvent {
                    event: &self.event,
                    data: &self.data,
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            self.overflowed = false;
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"" => {} // a comment
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            b"data" => {
                if cut || self.data.len() + value.len() >= MAX_HELD_BYTES {
                    self.overflowed = true;
                    return;
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            _ => {} // id, retry and unknown fields do not matter here
        }
    }
}

#[cfg(test)]
mod tests;
