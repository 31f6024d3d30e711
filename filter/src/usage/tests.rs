use super::*;

/// An event as the tests compare it.
#[derive(Debug, PartialEq, Eq)]
struct Owned {
    event: String,
    data: String,
}

fn owned(e: SseEvent<'_>) -> Owned {
    Owned {
        event: e.event.to_string(),
        data: String::from_utf8_lossy(e.data).into_owned(),
    }
}

#[test]
fn sse_parser_follows_the_spec() {
    let mut events = Vec::new();
    let mut parser = SseParser::default();
    let stream = b": comment\r\nevent: a\rdata: one\ndata:two\n\nid: 7\ndata: x\r\n\r\ndata\n\nevent: empty\n\n";
    parser.feed(stream, |e| events.push(owned(e)));
    assert_eq!(
        events,
        vec![
            Owned {
                event: "a".into(),
                data: "one\ntwo".into()
            },
            Owned {
                event: "".into(),
                data: "x".into()
            },
            Owned {
                event: "".into(),
                data: "".into()
            },
        ]
    );
}

#[test]
fn an_oversized_event_is_skipped_and_the_stream_goes_on() {
    let mut events = Vec::new();
    let mut parser = SseParser::default();
    let huge = "x".repeat(MAX_HELD_BYTES + 10);
    parser.feed(format!("data: {huge}\n\ndata: small\n\n").as_bytes(), |e| {
        events.push(owned(e))
    });
    assert_eq!(
        events,
        vec![Owned {
            event: "".into(),
            data: "small".into()
        }]
    );
}

#[test]
fn events_split_anywhere_across_chunks_read_the_same() {
    let stream = b"event: a\r\ndata: one\rdata: two\n\r\n: c\n\ndata: {\"x\":1}\n\n";
    let mut whole = Vec::new();
    SseParser::default().feed(stream, |e| whole.push(owned(e)));
    assert_eq!(whole.len(), 2);
    for size in 1..stream.len() {
        let mut events = Vec::new();
        let mut parser = SseParser::default();
        for chunk in stream.chunks(size) {
            parser.feed(chunk, |e| events.push(owned(e)));
        }
        assert_eq!(events, whole, "chunks of {size}");
    }
}

#[test]
fn an_oversized_line_means_the_same_however_it_is_cut() {
    // Just under the limit as data, a long comment, and a data line far over it.
    let fits = "x".repeat(MAX_HELD_BYTES - 3);
    let comment = "c".repeat(MAX_HELD_BYTES + 100);
    let huge = "y".repeat(MAX_HELD_BYTES + 100);
    let stream = format!(
        "data: {fits}\n\n: {comment}\ndata: kept\n\ndata: {huge}\n\ndata: after\n\n"
    );
    let mut whole = Vec::new();
    SseParser::default().feed(stream.as_bytes(), |e| whole.push(e.data.len()));
    assert_eq!(whole, [fits.len(), 4, 5]);
    for size in [1 << 10, 4093, 1 << 16] {
        let mut events = Vec::new();
        let mut parser = SseParser::default();
        for chunk in stream.as_bytes().chunks(size) {
            parser.feed(chunk, |e| events.push(e.data.len()));
        }
        assert_eq!(events, whole, "chunks of {size}");
    }
}

/// The events `SseSifter` hands over, fed in chunks of `size`, keeping those `wanted` finds.
fn sifted(stream: &[u8], size: usize, wanted: impl Fn(&[u8]) -> bool + Copy) -> Vec<Owned> {
    let mut events = Vec::new();
    let mut sifter = SseSifter::default();
    for chunk in stream.chunks(size) {
        sifter.feed(chunk, wanted, |e| events.push(owned(e)));
    }
    events
}

fn parsed(stream: &[u8]) -> Vec<Owned> {
    let mut events = Vec::new();
    SseParser::default().feed(stream, |e| events.push(owned(e)));
    events
}

/// Every way of ending lines and events, comments, fields without values, and a last event
/// that never ends.
const MIXED: &[u8] = b": hi\r\nevent: a\rdata: one\ndata:two\n\nid: 7\ndata: x\r\n\r\ndata\n\n\
event: b\r\rdata: cr\r\rdata: y1\r\ndata: y2\n\r\ndata: z\n\r\r\ndata: w\r\n\n\
data: unfinished";

#[test]
fn a_sifter_that_wants_everything_reads_what_the_parser_reads_however_it_is_cut() {
    let whole = parsed(MIXED);
    assert_eq!(whole.len(), 7, "{whole:?}");
    for size in 1..=MIXED.len() {
        assert_eq!(sifted(MIXED, size, |_| true), whole, "chunks of {size}");
    }
}

#[test]
fn a_sifter_reads_every_event_it_wants_and_only_events_the_parser_reads() {
    let whole = parsed(MIXED);
    let wants_y = |bytes: &[u8]| bytes.contains(&b'y');
    for size in 1..=MIXED.len() {
        let events = sifted(MIXED, size, wants_y);
        assert!(
            events.iter().all(|e| whole.contains(e)),
            "chunks of {size}: {events:?}"
        );
        assert!(
            events.iter().any(|e| e.data == "y1\ny2"),
            "chunks of {size}: {events:?}"
        );
        // Chunks too short to hold the first event's end and a `y` never parse the first.
        if size <= 16 {
            assert!(
                !events.iter().any(|e| e.data == "one\ntwo"),
                "chunks of {size}: an unwanted run was parsed"
            );
        }
    }
    assert_eq!(sifted(MIXED, 7, |_| false), []);
}

#[test]
fn a_sifter_drops_an_event_too_long_to_hold_and_reads_on() {
    let fits = "x".repeat(MAX_HELD_BYTES - 3);
    let huge = "y".repeat(MAX_EVENT_BYTES);
    let stream = format!("data: {fits}\n\n: {huge}\ndata: dropped\n\ndata: after\r\n\r\n");
    for size in [1 << 10, 4093, 1 << 16, stream.len()] {
        let lengths: Vec<usize> = sifted(stream.as_bytes(), size, |_| true)
            .iter()
            .map(|e| e.data.len())
            .collect();
        assert_eq!(lengths, [fits.len(), 5], "chunks of {size}");
    }
}
