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

/// Reads a stream's events with `SseParser`, but only the runs of complete events in which
/// `wanted` finds something; the rest of the stream is only looked through, never parsed. A
/// predicate that answers `true` wherever an event may matter gives the same events that
/// matter as parsing every event would, at the cost of a search instead of a parse.
///
/// The events are looked at where they are, in the chunk; only the bytes of an event not
/// complete yet are copied, to be held until its end arrives. An event of more than
/// `MAX_EVENT_BYTES` is dropped unread; where the chunks end never changes what is read.
#[derive(Debug, Default)]
pub struct SseSifter {
    parser: SseParser,
    /// The stream since the end of its last complete event.
    held: Vec<u8>,
    /// The event held outgrew `MAX_EVENT_BYTES`: its bytes are dropped until it ends. Only
    /// the last byte is held then, since a blank line may begin in it.
    dropping: bool,
}

impl SseSifter {
    pub fn feed(
        &mut self,
        chunk: &[u8],
        wanted: impl Fn(&[u8]) -> bool,
        mut on_event: impl FnMut(SseEvent<'_>),
    ) {
        // The event held ends first; it is the one that may have grown too long.
        let Some(first_end) = self.held_event_end(chunk) else {
            self.held.extend_from_slice(chunk);
            self.drop_if_too_long();
            return;
        };
        // Where the events that are whole in the chunk begin.
        let mut start = 0;
        if !self.held.is_empty() {
            if !std::mem::take(&mut self.dropping)
                && self.held.len() + first_end <= MAX_EVENT_BYTES
            {
                self.held.extend_from_slice(&chunk[..first_end]);
                if wanted(&self.held) {
                    self.parser.feed(&self.held, &mut on_event);
                }
            }
            self.held.clear();
            start = first_end;
        } else if first_end > MAX_EVENT_BYTES {
            start = first_end;
        }
        let end = blank_line_end(chunk, first_end, Find::Last).unwrap_or(first_end);
        let events = &chunk[start..end];
        if events.len() <= MAX_EVENT_BYTES {
            if wanted(events) {
                self.parser.feed(events, on_event);
            }
        } else {
            // A chunk with room for more than the longest event: event by event.
            let mut at = 0;
            while let Some(event_end) = blank_line_end(events, at, Find::First) {
                let event = &events[at..event_end];
                if event.len() <= MAX_EVENT_BYTES && wanted(event) {
                    self.parser.feed(event, &mut on_event);
                }
                at = event_end;
            }
        }
        self.held.extend_from_slice(&chunk[end..]);
        self.drop_if_too_long();
    }

    /// Where in `chunk` the event held ends (or, with nothing held, the chunk's first
    /// event). Its blank line may begin in the last byte held (`held` never holds a whole
    /// blank line).
    fn held_event_end(&self, chunk: &[u8]) -> Option<usize> {
        if let Some(&last) = self.held.last() {
            // The byte held and the chunk's first two: all a blank line there looks at.
            let mut seam = [last, 0, 0];
            let taken = chunk.len().min(2);
            seam[1..=taken].copy_from_slice(&chunk[..taken]);
            if let Some(end) = blank_line_at(&seam[..=taken], 0) {
                return Some(end - 1);
            }
        }
        blank_line_end(chunk, 0, Find::First)
    }

    /// An event not complete yet that outgrew `MAX_EVENT_BYTES` is dropped up to its end.
    fn drop_if_too_long(&mut self) {
        if self.dropping || self.held.len() > MAX_EVENT_BYTES {
            self.held.drain(..self.held.len().saturating_sub(1));
            self.dropping = true;
        }
    }
}

/// The longest event `SseSifter` holds, in bytes as sent: one data line the parser reads.
pub const MAX_EVENT_BYTES: usize = MAX_LINE_BYTES;

/// Which blank line `blank_line_end` looks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Find {
    First,
    Last,
}

/// Where the first or last blank line that begins at `from` or later ends: the end of an
/// event. A blank line is two line ends in a row, so it holds LF LF, LF CR or CR CR (CR LF
/// alone is one line end), and each of those is a blank line. An LF right after one ending
/// in CR belongs to it; should it arrive in the next chunk, it is a line of its own there,
/// which does nothing at an event's start.
pub(crate) fn blank_line_end(bytes: &[u8], from: usize, find: Find) -> Option<usize> {
    match find {
        Find::First => {
            let mut at = from;
            loop {
                at += memchr::memchr2(b'\n', b'\r', &bytes[at..])?;
                if let Some(end) = blank_line_at(bytes, at) {
                    return Some(end);
                }
                at += 1;
            }
        }
        Find::Last => {
            let mut end = bytes.len();
            loop {
                let at = from + memchr::memrchr2(b'\n', b'\r', &bytes[from..end])?;
                if let Some(end) = blank_line_at(bytes, at) {
                    return Some(end);
                }
                end = at;
            }
        }
    }
}

/// Where the blank line that begins at `at` ends, if one does (see `blank_line_end`).
fn blank_line_at(bytes: &[u8], at: usize) -> Option<usize> {
    let end = match (bytes.get(at)?, bytes.get(at + 1)?) {
        (b'\n', b'\n' | b'\r') | (b'\r', b'\r') => at + 2,
        _ => return None,
    };
    Some(if bytes[end - 1] == b'\r' && bytes.get(end) == Some(&b'\n') {
        end + 1
    } else {
        end
    })
}

#[cfg(test)]
mod tests;
