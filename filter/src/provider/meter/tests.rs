use super::*;

// Recorded-format fixtures: the shapes the providers send, with their real usage fields.
const OPENAI_CHAT_JSON: &str = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"}"#;

const OPENAI_CHAT_SSE: &str = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\"total_tokens\":14,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n\
data: [DONE]\n\n";

const OPENAI_EMBEDDINGS_JSON: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;

const OPENAI_RESPONSES_JSON: &str = r#"{"id":"resp_67ccd2bed1ec8190","object":"response","created_at":1741476542,"status":"completed","model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_67ccd2bf","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi","annotations":[]}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":4},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#;

const OPENAI_RESPONSES_SSE: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"usage\":null}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":11,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":48}}}\n\n";

const ANTHROPIC_JSON: &str = r#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022","content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"output_tokens":503,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000}}"#;

const ANTHROPIC_SSE: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-3-5-sonnet-20241022\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

const GEMINI_JSON: &str = r#"{"candidates":[{"content":{"parts":[{"text":"Hello"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":11,"candidatesTokenCount":6,"totalTokenCount":41,"cachedContentTokenCount":2,"thoughtsTokenCount":24},"modelVersion":"gemini-2.5-flash"}"#;

// Gemini separates events with CRLF pairs; usage grows chunk by chunk.
const GEMINI_SSE: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 1,\"totalTokenCount\": 10},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky is blue\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 4,\"totalTokenCount\": 13},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n";

// streamGenerateContent without `alt=sse`: one JSON array of chunks.
const GEMINI_JSON_ARRAY: &str = "[{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"}}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 1,\"totalTokenCount\": 10}},\r\n{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky\"}],\"role\": \"model\"},\"finishReason\": \"STOP\"}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 4,\"totalTokenCount\": 13}}]";

fn cases() -> Vec<(&'static str, ApiFormat, bool, &'static str, Usage)> {
    let u = |input_tokens, output_tokens, cached_input_tokens| Usage {
        input_tokens,
        output_tokens,
        cached_input_tokens,
    };
    vec![
        (
            "openai chat json",
            ApiFormat::OpenAiChat,
            false,
            OPENAI_CHAT_JSON,
            u(19, 10, 3),
        ),
        (
            "openai chat sse",
            ApiFormat::OpenAiChat,
            true,
            OPENAI_CHAT_SSE,
            u(12, 2, 0),
        ),
        (
            "openai embeddings",
            ApiFormat::OpenAiChat,
            false,
            OPENAI_EMBEDDINGS_JSON,
            u(8, 0, 0),
        ),
        (
            "openai responses json",
            ApiFormat::OpenAiResponses,
            false,
            OPENAI_RESPONSES_JSON,
            u(36, 87, 4),
        ),
        (
            "openai responses sse",
            ApiFormat::OpenAiResponses,
            true,
            OPENAI_RESPONSES_SSE,
            u(37, 11, 0),
        ),
        (
            "anthropic json",
            ApiFormat::Anthropic,
            false,
            ANTHROPIC_JSON,
            u(4195, 503, 2000),
        ),
        (
            "anthropic sse",
            ApiFormat::Anthropic,
            true,
            ANTHROPIC_SSE,
            u(30, 15, 5),
        ),
        (
            "gemini json",
            ApiFormat::Gemini,
            false,
            GEMINI_JSON,
            u(11, 30, 2),
        ),
        (
            "gemini sse",
            ApiFormat::Gemini,
            true,
            GEMINI_SSE,
            u(9, 4, 0),
        ),
        (
            "gemini stream as a json array",
            ApiFormat::Gemini,
            false,
            GEMINI_JSON_ARRAY,
            u(9, 4, 0),
        ),
    ]
}

fn meter(format: ApiFormat, streaming: bool, chunks: &[&[u8]]) -> Option<Usage> {
    let mut meter = UsageMeter::new(format, streaming);
    for chunk in chunks {
        meter.feed(chunk);
    }
    meter.finish()
}

#[test]
fn each_fixture_in_one_piece() {
    for (name, format, streaming, body, expected) in cases() {
        assert_eq!(
            meter(format, streaming, &[body.as_bytes()]),
            Some(expected),
            "{name}"
        );
    }
}

#[test]
fn each_fixture_split_at_every_byte_boundary() {
    for (name, format, streaming, body, expected) in cases() {
        let bytes = body.as_bytes();
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(
                meter(format, streaming, &[a, b]),
                Some(expected),
                "{name} split at {at}"
            );
        }
    }
}

#[test]
fn each_fixture_byte_by_byte() {
    for (name, format, streaming, body, expected) in cases() {
        let chunks: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
        assert_eq!(meter(format, streaming, &chunks), Some(expected), "{name}");
    }
}

/// Found by the `usage` fuzz target: a second `finish` on a JSON answer parsed the emptied
/// buffer and reported no usage after the first had reported some.
#[test]
fn finishing_twice_reports_the_same_usage() {
    for (name, format, streaming, body, expected) in cases() {
        let mut meter = UsageMeter::new(format, streaming);
        meter.feed(body.as_bytes());
        assert_eq!(meter.finish(), Some(expected), "{name}");
        assert_eq!(meter.finish(), Some(expected), "{name}, finished again");
    }
}

#[test]
fn responses_without_usage_report_none() {
    let error = br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
    assert_eq!(meter(ApiFormat::OpenAiChat, false, &[error]), None);
    // A stream cut before its usage chunk.
    let cut = &OPENAI_CHAT_SSE[..OPENAI_CHAT_SSE.find("\"usage\":{").unwrap()];
    assert_eq!(meter(ApiFormat::OpenAiChat, true, &[cut.as_bytes()]), None);
    assert_eq!(meter(ApiFormat::Gemini, false, &[b"not json"]), None);
}

#[test]
fn anthropic_stream_cut_after_message_start_keeps_the_input() {
    let cut = &ANTHROPIC_SSE[..ANTHROPIC_SSE.find("event: content_block_start").unwrap()];
    let usage = meter(ApiFormat::Anthropic, true, &[cut.as_bytes()]).unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (30, 1));
}

#[test]
fn usage_spelled_with_escapes_is_still_read_and_chunks_without_it_are_not_parsed() {
    // `usage` written with JSON escapes: the cheap look for the word must not skip it.
    let escaped = b"data: {\"choices\":[],\"\\u0075sage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n";
    assert_eq!(
        meter(ApiFormat::OpenAiChat, true, &[escaped]),
        Some(Usage {
            input_tokens: 4,
            output_tokens: 2,
            cached_input_tokens: 0
        })
    );
    // Broken JSON in a content chunk is not a usage and breaks nothing after it.
    let broken = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"\n\n";
    let last = OPENAI_CHAT_SSE.as_bytes();
    assert_eq!(
        meter(ApiFormat::OpenAiChat, true, &[broken, last]).map(|u| u.output_tokens),
        Some(2)
    );
}

#[test]
fn a_null_usage_beside_a_real_one_is_still_read() {
    // `"usage":null` alone is skipped unparsed; with a real usage elsewhere it is not.
    let both = b"data: {\"response\":{\"usage\":null},\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n";
    assert!(meter(ApiFormat::OpenAiChat, true, &[both]).is_some());
}

/// How the envelopes were read before they were read in place: serde's derive over
/// serde_json. The readers must agree with it on every event below.
#[derive(Debug, Default, serde::Deserialize)]
struct SerdeEnvelope<'a> {
    #[serde(default, rename = "type")]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    usage: serde_json::Value,
    #[serde(default, rename = "usageMetadata")]
    usage_metadata: serde_json::Value,
    #[serde(default)]
    message: serde_json::Value,
    #[serde(default)]
    response: serde_json::Value,
    #[serde(default, borrow)]
    choices: Option<&'a serde_json::value::RawValue>,
}

fn as_value(raw: crate::json::raw::Raw<'_>) -> serde_json::Value {
    match raw.is_absent() {
        true => serde_json::Value::Null,
        false => serde_json::from_slice(raw.text()).unwrap(),
    }
}

fn agrees_with_serde(event: &[u8]) {
    let ours = super::super::EventEnvelope::read(event);
    let theirs = serde_json::from_slice::<SerdeEnvelope>(event).ok();
    let shown = String::from_utf8_lossy(event);
    let (Some(ours), Some(theirs)) = (&ours, &theirs) else {
        assert_eq!(ours.is_some(), theirs.is_some(), "{shown}");
        return;
    };
    assert_eq!(ours.kind(), theirs.kind.as_deref(), "{shown}");
    assert_eq!(as_value(ours.usage), theirs.usage, "{shown}");
    assert_eq!(as_value(ours.usage_metadata), theirs.usage_metadata, "{shown}");
    assert_eq!(as_value(ours.message), theirs.message, "{shown}");
    assert_eq!(as_value(ours.response), theirs.response, "{shown}");
    assert_eq!(!ours.choices.is_null(), theirs.choices.is_some(), "{shown}");
}

#[test]
fn stream_events_are_read_as_serde_read_them() {
    let fixtures = [OPENAI_CHAT_SSE, OPENAI_RESPONSES_SSE, ANTHROPIC_SSE, GEMINI_SSE];
    let events = fixtures
        .iter()
        .flat_map(|stream| stream.split("data: ").skip(1))
        .map(|event| event.split(['\r', '\n']).next().unwrap().to_string());
    let edges = [
        // A type that is not a string made the whole event unreadable; null is no type.
        r#"{"type":5,"usage":{"output_tokens":1}}"#,
        r#"{"type":null,"usage":{"output_tokens":1}}"#,
        r#"{"type":"message_delta","usage":{"output_tokens":1}}"#,
        r#"{"type":"mess\u0061ge_delta","usage":{"output_tokens":1}}"#,
        // A field named twice: unreadable, even where one of them is null.
        r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
        r#"{"usage":null,"\u0075sage":{"prompt_tokens":2}}"#,
        r#"{"choices":[],"choices":[],"usage":{"prompt_tokens":2}}"#,
        // Inside a usage object the last of two keys counts; unknown members are skipped.
        r#"{"usage":{"prompt_tokens":1,"prompt_tokens":2},"x":{"y":[1,2,{"z":null}]},"x":1}"#,
        r#"{"choices":null,"usage":{"prompt_tokens":2}}"#,
        r#"{"choices":[ ],"usage":{"prompt_tokens":2}}"#,
        r#"{"choices":{},"usage":[1,2]}"#,
        // Whitespace around the object, and text after it.
        " \r\n{\"usage\":{\"prompt_tokens\":2}}\t ",
        r#"{"usage":{"prompt_tokens":2}} {}"#,
        r#"{"usage":{"prompt_tokens":2}"#,
        r#"{"usage":{"prompt_tokens":2},}"#,
        r#"{"usage":{"prompt_tokens":02}}"#,
        r#"{"usage":{"prompt_tokens":2},"content":"a\qb"}"#,
        "{\"usage\":{\"prompt_tokens\":2},\"content\":\"a\u{1}b\"}",
        r#""usage""#,
        "usage",
    ];
    for event in events.chain(edges.iter().map(|e| e.to_string())) {
        agrees_with_serde(event.as_bytes());
    }
    // Text that is not UTF-8 in a member no one reads does not matter, as before.
    agrees_with_serde(b"{\"content\":\"\xff\",\"usage\":{\"prompt_tokens\":2}}");
}

/// Where reading in place knowingly differs from serde's derive: only in events no provider
/// sends. serde read an array as the envelope's fields in order, and refused a whole event
/// for a defect inside a member it built as a `Value` but that no usage count is read from.
#[test]
fn what_serde_read_differently_is_pinned() {
    let usage = |event: &str| meter(ApiFormat::OpenAiChat, true, &[format!("data: {event}\n\n").as_bytes()]);
    let five = Some(Usage {
        input_tokens: 5,
        output_tokens: 0,
        cached_input_tokens: 0,
    });
    // An array is not an envelope (serde: `usage` = the second element).
    assert!(serde_json::from_str::<SerdeEnvelope>(r#"[null,{"prompt_tokens":5},1]"#).is_ok());
    assert_eq!(usage(r#"[null,{"prompt_tokens":5,"usage":1}]"#), None);
    // A lone surrogate, a number beyond f64, invalid UTF-8 beside the counts (serde: none).
    for beside in [r#""\ud800""#, "1e400"] {
        let event = format!(r#"{{"usage":{{"prompt_tokens":5,"note":{beside}}}}}"#);
        assert!(serde_json::from_str::<SerdeEnvelope>(&event).is_err());
        assert_eq!(usage(&event), five, "{event}");
    }
    let mut meter = UsageMeter::new(ApiFormat::OpenAiChat, true);
    meter.feed(b"data: {\"usage\":{\"prompt_tokens\":5,\"note\":\"\xff\"}}\n\n");
    assert_eq!(meter.finish(), five);
}

#[test]
fn json_answers_are_read_as_serde_read_them() {
    let read = |format, body: &str| meter(format, false, &[body.as_bytes()]);
    // A usage field named twice: no usage.
    assert_eq!(
        read(ApiFormat::OpenAiChat, r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#),
        None
    );
    let ten = |output| Usage {
        input_tokens: 10,
        output_tokens: output,
        cached_input_tokens: 0,
    };
    assert_eq!(
        read(ApiFormat::OpenAiChat, r#" {"usage":{"prompt_tokens":10,"completion_tokens":-1}} "#),
        Some(ten(0))
    );
    assert_eq!(read(ApiFormat::OpenAiChat, r#"{"usage":{"prompt_tokens":10.0}}"#), None);
    assert_eq!(read(ApiFormat::OpenAiChat, r#"{"usage":{"prompt_tokens":10}}x"#), None);
    // An array answer only from Gemini, whose chunks must each be an envelope; the last
    // chunk with usage counts.
    let chunks = r#"[{"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":1}},
        {"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":3}}, {"candidates":[]}]"#;
    assert_eq!(read(ApiFormat::Gemini, chunks), Some(ten(3)));
    assert_eq!(read(ApiFormat::OpenAiChat, chunks), None);
    assert_eq!(read(ApiFormat::Gemini, "[]"), None);
    assert_eq!(read(ApiFormat::Gemini, r#"[{"usageMetadata":{"promptTokenCount":10}}, 1]"#), None);
    assert_eq!(
        read(ApiFormat::Gemini, r#"[{"usageMetadata":{"promptTokenCount":10},"usageMetadata":null}]"#),
        None
    );
}
