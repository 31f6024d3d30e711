//! A stream given back as the client asked for it. The filter asks OpenAI-style chat streams
//! for their usage (`stream_options.include_usage`) so it can count them; a client that did
//! not ask gets no usage-only chunk (`"choices": []`), which a plain loop over
//! `chunk.choices[0]` would trip over. Every other byte passes unchanged; the bytes of an
//! event not complete yet are held until its end arrives.

use crate::usage::{blank_line_end, Find, SseParser, MAX_HELD_BYTES};

#[derive(Debug, Default)]
pub struct UsageChunkStripper {
    /// The start of an event not complete yet.
    held: Vec<u8>,
    /// An event grew past `MAX_HELD_BYTES`: everything from there on passes as it is.
    gave_up: bool,
}

impl UsageChunkStripper {
    /// What the client gets of `chunk`: the complete events it holds, but the usage-only
    /// one; at the end of the stream, whatever is held too. Events are looked at one by one
    /// only where the word `usage` appears (`may_carry_usage`).
    pub fn feed(&mut self, chunk: &[u8], end_of_stream: bool) -> Vec<u8> {
        if self.gave_up {
            return chunk.to_vec();
        }
        // A blank line may begin in the last byte held.
        let from = self.held.len().saturating_sub(1);
        self.held.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut end = blank_line_end(&self.held, from, Find::Last);
        if end == Some(self.held.len()) && self.held.ends_with(b"\r") && !end_of_stream {
            // Its LF may be on the way: the event ends where it is known to end.
            end = blank_line_end(&self.held[..self.held.len() - 1], from, Find::Last);
        }
        if let Some(end) = end {
            let events = &self.held[..end];
            if super::may_carry_usage(events) {
                out.reserve(events.len());
                let mut at = 0;
                while let Some(event_end) = blank_line_end(events, at, Find::First) {
                    let event = &events[at..event_end];
                    // Blank lines before the event pass, wherever the chunks ended.
                    let lines = event
                        .iter()
                        .position(|&b| b != b'\n' && b != b'\r')
                        .unwrap_or(event.len());
                    let kept = if is_usage_only(event) { lines } else { event.len() };
                    out.extend_from_slice(&event[..kept]);
                    at = event_end;
                }
                // Blank lines after the last event's own (`\n\n\n`).
                out.extend_from_slice(&events[at..]);
            } else {
                out.extend_from_slice(events);
            }
            self.held.drain(..end);
        }
        if end_of_stream || self.held.len() > MAX_HELD_BYTES {
            self.gave_up = !end_of_stream;
            out.append(&mut self.held);
        }
        out
    }
}

/// An event whose data is a chat chunk with no choices and a usage object.
fn is_usage_only(event: &[u8]) -> bool {
    let mut usage_only = false;
    SseParser::default().feed(event, |event| {
        usage_only = super::openai::is_usage_only_chunk(event.data);
    });
    usage_only
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n\
data: [DONE]\n\n";

    fn without_usage_chunk() -> String {
        let at = STREAM.find("data: {\"choices\":[]").unwrap();
        let end = at + STREAM[at..].find("\n\n").unwrap() + 2;
        format!("{}{}", &STREAM[..at], &STREAM[end..])
    }

    #[test]
    fn the_usage_only_chunk_goes_whatever_the_chunk_boundaries() {
        let expected = without_usage_chunk();
        for size in 1..STREAM.len() {
            let mut stripper = UsageChunkStripper::default();
            let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(size).collect();
            let mut out = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                out.extend(stripper.feed(chunk, i + 1 == chunks.len()));
            }
            assert_eq!(String::from_utf8(out).unwrap(), expected, "chunks of {size}");
        }
    }

    #[test]
    fn crlf_events_and_a_usage_chunk_with_choices_stay_as_they_are() {
        let kept = "data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"total_tokens\":3}}\r\n\r\n: a comment\n\n";
        let mut stripper = UsageChunkStripper::default();
        assert_eq!(stripper.feed(kept.as_bytes(), true), kept.as_bytes());
        let crlf = "data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\r\n\r\ndata: [DONE]\r\n\r\n";
        let mut stripper = UsageChunkStripper::default();
        assert_eq!(stripper.feed(crlf.as_bytes(), true), b"data: [DONE]\r\n\r\n");
    }

    #[test]
    fn extra_blank_lines_and_cr_events_pass_and_a_cr_usage_chunk_goes() {
        let usage = "data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}";
        let stream = format!("data: a\n\n\n\r{usage}\r\rdata: b\r\r\ndata: [DONE]\n\n\n");
        let expected = "data: a\n\n\n\rdata: b\r\r\ndata: [DONE]\n\n\n";
        for size in 1..stream.len() {
            let mut stripper = UsageChunkStripper::default();
            let chunks: Vec<&[u8]> = stream.as_bytes().chunks(size).collect();
            let mut out = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                out.extend(stripper.feed(chunk, i + 1 == chunks.len()));
            }
            assert_eq!(String::from_utf8(out).unwrap(), expected, "chunks of {size}");
        }
    }

    #[test]
    fn an_unfinished_event_is_handed_over_at_the_end() {
        let mut stripper = UsageChunkStripper::default();
        assert_eq!(stripper.feed(b"data: {\"choi", false), b"");
        assert_eq!(stripper.feed(b"ces\":[]}", true), b"data: {\"choices\":[]}");
    }
}
