//! A stream given back as the client asked for it. The filter asks OpenAI-style chat streams
//! for their usage (`stream_options.include_usage`) so it can count them; a client that did
//! not ask gets no usage-only chunk (`"choices": []`), which a plain loop over
//! `chunk.choices[0]` would trip over. Every other byte passes unchanged; the bytes of an
//! event not complete yet are held until its end arrives.

use crate::usage::MAX_HELD_BYTES;

#[derive(Debug, Default)]
pub struct UsageChunkStripper {
    /// The start of an event not complete yet.
    held: Vec<u8>,
    /// An event grew past `MAX_HELD_BYTES`: everything from there on passes as it is.
    gave_up: bool,
}

impl UsageChunkStripper {
    /// What the client gets of `chunk`: the complete events it holds, but the usage-only
    /// one; at the end of the stream, whatever is held too.
    pub fn feed(&mut self, chunk: &[u8], end_of_stream: bool) -> Vec<u8> {
        if self.gave_up {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.held.len());
        let mut event_start = 0;
        let mut line_start = 0;
        while let Some(at) = self.held[line_start..].iter().position(|&b| b == b'\n') {
            let line_end = line_start + at;
            let line = &self.held[line_start..line_end];
            line_start = line_end + 1;
            if line.is_empty() || line == b"\r" {
                let event = &self.held[event_start..line_start];
                if !is_usage_only(event) {
                    out.extend_from_slice(event);
                }
                event_start = line_start;
            }
        }
        self.held.drain(..event_start);
        if end_of_stream || self.held.len() > MAX_HELD_BYTES {
            self.gave_up = !end_of_stream;
            out.append(&mut self.held);
        }
        out
    }
}

/// An event whose data is a chat chunk with no choices and a usage object.
fn is_usage_only(event: &[u8]) -> bool {
    let mut data = Vec::new();
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(value) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        }
    }
    super::openai::is_usage_only_chunk(&data)
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
    fn an_unfinished_event_is_handed_over_at_the_end() {
        let mut stripper = UsageChunkStripper::default();
        assert_eq!(stripper.feed(b"data: {\"choi", false), b"");
        assert_eq!(stripper.feed(b"ces\":[]}", true), b"data: {\"choices\":[]}");
    }
}
