//! A stream given back as the client asked for it. The filter asks OpenAI-style chat streams
//! for their usage (`stream_options.include_usage`) so it can count them; a client that did
//! not ask gets no usage-only chunk (`"choices": []`), which a plain loop over
//! `chunk.choices[0]` would trip over. Every other byte passes unchanged; the bytes of an
//! event not complete yet are held until its end arrives.

use std::sync::OnceLock;

use memchr::memmem::Finder;

use crate::usage::{blank_line_end, Find, SseParser, MAX_HELD_BYTES};

/// Takes the usage-only chunk out of a chat stream, changing nothing else. What it gives
/// back differs from the chunk it was given only where it must: an event it drops, or the
/// start of an event it holds because that event may turn out to be the usage-only one.
///
/// An event still arriving is held only while it may be the usage-only chunk: when its
/// start shows empty `choices`, or shows no `choices` yet once a choice has finished (a
/// non-null `finish_reason` in the last complete event of a chunk), since OpenAI sends the
/// usage-only chunk right after the last choice finishes. Any other event passes as it
/// arrives, so most chunks pass unchanged. Complete events are always read: a usage-only
/// chunk whole in a chunk goes wherever it is.
#[derive(Debug, Default)]
pub struct UsageChunkStripper {
    /// The start of an event not complete yet, after its first `passed` bytes.
    held: Vec<u8>,
    /// How many bytes at the start of `held` the client has been given already: the start
    /// of an event that passes as it arrives, kept until its end to be looked through for
    /// a `finish_reason`.
    passed: usize,
    /// A choice has finished: from now on an event may be the usage-only one.
    finished: bool,
    /// An event grew past `MAX_HELD_BYTES`: everything from there on passes as it is.
    gave_up: bool,
}

impl UsageChunkStripper {
    /// What the client gets instead of `chunk`, or `None` when that is `chunk` itself: the
    /// complete events it holds, but the usage-only one, and the start of an event that
    /// cannot be it; at the end of the stream, whatever is held too. Events are looked at
    /// one by one only where the word `usage` appears (`may_carry_usage`).
    pub fn feed(&mut self, chunk: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        if self.gave_up {
            return None;
        }
        // Bytes held before this chunk that the client has not been given come first in
        // what it gets: then the chunk changes.
        let given = self.passed;
        let mut changed = self.held.len() > given;
        // A blank line may begin in the last byte held.
        let from = self.held.len().saturating_sub(1);
        self.held.extend_from_slice(chunk);
        let mut end = blank_line_end(&self.held, from, Find::Last);
        if end == Some(self.held.len()) && self.held.ends_with(b"\r") && !end_of_stream {
            // Its LF may be on the way: the event ends where it is known to end.
            end = blank_line_end(&self.held[..self.held.len() - 1], from, Find::Last);
        }
        let end = end.unwrap_or(0);
        // The complete events are held[start..end], after the rest of an event that was
        // passing (it passes to its end, unread).
        let mut start = 0;
        if end > 0 {
            if self.passed > 0 {
                start = blank_line_end(&self.held, from, Find::First).unwrap_or(end);
                self.passed = 0;
            }
            if !self.finished {
                // The usage-only chunk comes right after the last choice finished: the last
                // complete event is the one to look at (looking through them all would cost
                // more than the replacements this saves).
                let last = blank_line_end(&self.held[..end.saturating_sub(2)], 0, Find::Last);
                self.finished = finishes_a_choice(&self.held[last.unwrap_or(0)..end]);
            }
        }
        let events = &self.held[start..end];
        let drops = super::may_carry_usage(events)
            && events_of(events).any(|(event, _)| is_usage_only(event));
        // The event still arriving: held[end..], of which the first `self.passed` bytes
        // were given.
        let pending = self.held.len() - end - self.passed;
        let flush = end_of_stream || self.held.len() - end > MAX_HELD_BYTES;
        let passes = flush
            || pending == 0
            || self.passed > 0
            || !self.may_be_usage_only(&self.held[end..]);
        changed |= drops || !passes;
        let out = changed.then(|| {
            let mut out = Vec::with_capacity(self.held.len() - given);
            out.extend_from_slice(&self.held[given.min(start)..start]);
            if drops {
                let mut after = 0;
                for (event, lines) in events_of(events) {
                    let kept = if is_usage_only(event) { lines } else { event.len() };
                    out.extend_from_slice(&event[..kept]);
                    after += event.len();
                }
                // Blank lines after the last event's own (`\n\n\n`).
                out.extend_from_slice(&events[after..]);
            } else {
                out.extend_from_slice(events);
            }
            if passes {
                out.extend_from_slice(&self.held[end.max(given)..]);
            }
            out
        });
        self.held.drain(..end);
        if flush {
            self.gave_up = !end_of_stream;
            self.held.clear();
            self.passed = 0;
        } else if passes {
            self.passed = self.held.len();
        }
        out
    }

    /// Whether an event that began arriving (`start`) may still turn out to be the
    /// usage-only chunk.
    fn may_be_usage_only(&self, start: &[u8]) -> bool {
        match first_choice(start) {
            Some(FirstChoice::None) => true,
            Some(FirstChoice::Some) => false,
            None => self.finished,
        }
    }
}

/// What the start of an event shows of its `choices`: an empty array or a first choice
/// (`None` when it does not show that yet).
enum FirstChoice {
    None,
    Some,
}

fn first_choice(start: &[u8]) -> Option<FirstChoice> {
    static CHOICES: OnceLock<Finder<'static>> = OnceLock::new();
    let at = CHOICES
        .get_or_init(|| Finder::new(b"\"choices\""))
        .find(start)?;
    let mut rest = start[at + b"\"choices\"".len()..].iter().filter(|b| !b.is_ascii_whitespace());
    if *rest.next()? != b':' || *rest.next()? != b'[' {
        // Not an array: this event is not a chat chunk with choices.
        return Some(FirstChoice::Some);
    }
    Some(if *rest.next()? == b']' {
        FirstChoice::None
    } else {
        FirstChoice::Some
    })
}

/// Whether these events finish a choice: a `finish_reason` that is not `null`.
fn finishes_a_choice(events: &[u8]) -> bool {
    static FINISH: OnceLock<Finder<'static>> = OnceLock::new();
    let finish = FINISH.get_or_init(|| Finder::new(b"\"finish_reason\""));
    finish.find_iter(events).any(|at| {
        let mut rest = events[at + b"\"finish_reason\"".len()..]
            .iter()
            .filter(|b| !b.is_ascii_whitespace());
        rest.next() == Some(&b':') && rest.next().is_some_and(|b| *b != b'n')
    })
}

/// The complete events of `events`, each with how many blank lines (in bytes) come before
/// it: those pass even when the event does not, wherever the chunks ended.
fn events_of(events: &[u8]) -> impl Iterator<Item = (&[u8], usize)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let end = blank_line_end(events, at, Find::First)?;
        let event = &events[at..end];
        at = end;
        let lines = event
            .iter()
            .position(|&b| b != b'\n' && b != b'\r')
            .unwrap_or(event.len());
        Some((event, lines))
    })
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

    /// What the client gets of `chunk`.
    fn fed(stripper: &mut UsageChunkStripper, chunk: &[u8], end_of_stream: bool) -> Vec<u8> {
        stripper
            .feed(chunk, end_of_stream)
            .unwrap_or_else(|| chunk.to_vec())
    }

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
                out.extend(fed(&mut stripper, chunk, i + 1 == chunks.len()));
            }
            assert_eq!(String::from_utf8(out).unwrap(), expected, "chunks of {size}");
        }
    }

    #[test]
    fn crlf_events_and_a_usage_chunk_with_choices_stay_as_they_are() {
        let kept = "data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"total_tokens\":3}}\r\n\r\n: a comment\n\n";
        let mut stripper = UsageChunkStripper::default();
        assert_eq!(stripper.feed(kept.as_bytes(), true), None);
        let crlf = "data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\r\n\r\ndata: [DONE]\r\n\r\n";
        let mut stripper = UsageChunkStripper::default();
        assert_eq!(
            fed(&mut stripper, crlf.as_bytes(), true),
            b"data: [DONE]\r\n\r\n"
        );
    }

    #[test]
    fn extra_blank_lines_and_cr_events_pass_and_a_cr_usage_chunk_goes() {
        let usage = "data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}";
        let stop = "data: {\"choices\":[{\"finish_reason\" : \"stop\"}]}";
        let stream = format!("data: a\n\n{stop}\n\n\r{usage}\r\rdata: b\r\r\ndata: [DONE]\n\n\n");
        let expected = format!("data: a\n\n{stop}\n\n\rdata: b\r\r\ndata: [DONE]\n\n\n");
        for size in 1..stream.len() {
            let mut stripper = UsageChunkStripper::default();
            let chunks: Vec<&[u8]> = stream.as_bytes().chunks(size).collect();
            let mut out = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                out.extend(fed(&mut stripper, chunk, i + 1 == chunks.len()));
            }
            assert_eq!(String::from_utf8(out).unwrap(), expected, "chunks of {size}");
        }
    }

    #[test]
    fn an_unfinished_event_is_handed_over_at_the_end() {
        let mut stripper = UsageChunkStripper::default();
        let stop = b"data: {\"choices\":[{\"finish_reason\":\"length\"}]}\n\n";
        assert_eq!(stripper.feed(stop, false), None);
        assert_eq!(fed(&mut stripper, b"data: {\"choi", false), b"");
        assert_eq!(
            fed(&mut stripper, b"ces\":[]}", true),
            b"data: {\"choices\":[]}"
        );
    }

    #[test]
    fn chunks_pass_unchanged_until_a_choice_finishes_then_only_the_usage_chunk_goes() {
        let text = |word: &str| {
            format!("data: {{\"id\":\"c\",\"choices\":[{{\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}]}}\n\n")
        };
        let mut stream: String = ["One", " two", " three", " four"].map(text).concat();
        stream.push_str(&STREAM[STREAM.find("data: {\"choices\":[{\"index\":0,\"delta\":{},").unwrap()..]);
        let at = stream.find("data: {\"choices\":[]").unwrap();
        let finish = stream.find("\"stop\"").unwrap();
        for size in 1..stream.len() {
            let mut stripper = UsageChunkStripper::default();
            let mut out = Vec::new();
            let mut offset = 0;
            for chunk in stream.as_bytes().chunks(size) {
                let end_of_stream = offset + chunk.len() == stream.len();
                let given = stripper.feed(chunk, end_of_stream);
                // Before the finishing event, every chunk passes as it came: no
                // replacement, whichever way the chunks cut the events.
                if offset + chunk.len() < finish {
                    assert_eq!(given, None, "chunks of {size}, at {offset}");
                }
                out.extend(given.unwrap_or_else(|| chunk.to_vec()));
                offset += chunk.len();
            }
            let end = at + stream[at..].find("\n\n").unwrap() + 2;
            let expected = format!("{}{}", &stream[..at], &stream[end..]);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "chunks of {size}");
        }
    }

    #[test]
    fn a_usage_only_chunk_cut_before_its_choices_passes_if_no_choice_finished_first() {
        // The price of passing chunks unchanged: OpenAI sends the usage-only chunk after
        // every choice finished. One sent before (no server does) passes whole when a chunk
        // ends before its `choices`; when whole in a chunk, it goes as always.
        let usage = b"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n";
        let mut stripper = UsageChunkStripper::default();
        assert_eq!(stripper.feed(&usage[..10], false), None);
        assert_eq!(stripper.feed(&usage[10..], false), None);
        let mut stripper = UsageChunkStripper::default();
        assert_eq!(stripper.feed(usage, false), Some(Vec::new()));
    }
}
