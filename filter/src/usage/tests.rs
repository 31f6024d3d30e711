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
