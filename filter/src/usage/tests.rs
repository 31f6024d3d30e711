use super::*;

#[test]
fn sse_parser_follows_the_spec() {
    let mut events = Vec::new();
    let mut parser = SseParser::default();
    let stream = b": comment\r\nevent: a\rdata: one\ndata:two\n\nid: 7\ndata: x\r\n\r\ndata\n\nevent: empty\n\n";
    parser.feed(stream, |e| events.push(e));
    assert_eq!(
        events,
        vec![
            SseEvent {
                event: "a".into(),
                data: "one\ntwo".into()
            },
            SseEvent {
                event: "".into(),
                data: "x".into()
            },
            SseEvent {
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
        events.push(e)
    });
    assert_eq!(
        events,
        vec![SseEvent {
            event: "".into(),
            data: "small".into()
        }]
    );
}
