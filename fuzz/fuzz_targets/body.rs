//! The JSON request body: `model::read_body` and `BodyEdit::apply`. The first byte chooses
//! the edit (bit 0: ask for `stream_options.include_usage`; bits 1-3: which output-limit
//! fields to set), the second the limit; the rest is the body. Properties: what `read_body`
//! accepts is a JSON object (and, where serde_json reads it too, the fields it reports are
//! that object's); an edit of an accepted body succeeds and gives valid JSON in which every
//! member it was not asked to touch is byte for byte the input's, in the same order; it sets
//! exactly what it was asked to, reads back the same, and applied again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokenward_filter::json::{Member, Object};
use tokenward_filter::model::{read_body, BodyEdit};

const LIMIT_FIELDS: [&str; 3] = ["max_completion_tokens", "max_tokens", "max_output_tokens"];

/// The members not in `touched`, as (key, raw value text), in order.
fn untouched<'a>(
    bytes: &'a [u8],
    object: &'a Object,
    touched: &dyn Fn(&str) -> bool,
) -> Vec<(&'a str, &'a [u8])> {
    object
        .members
        .iter()
        .filter(|m| !touched(&m.key))
        .map(|m: &Member| (m.key.as_str(), &bytes[m.value.clone()]))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let [flags, limit, body @ ..] = data else {
        return;
    };
    let fields: Vec<&'static str> = LIMIT_FIELDS
        .iter()
        .enumerate()
        .filter(|(i, _)| flags & (2 << i) != 0)
        .map(|(_, f)| *f)
        .collect();
    let limit = match *limit {
        255 => u64::MAX,
        n => u64::from(n) * 100,
    };
    let edit = BodyEdit {
        output_limit: (!fields.is_empty()).then(|| (fields.clone(), limit)),
        include_usage: flags & 1 != 0,
    };

    let Ok(read) = read_body(body) else {
        return;
    };
    let Ok(input) = Object::document(body) else {
        panic!("read_body accepted a body the validator refuses");
    };
    // serde_json refuses a few documents RFC 8259 allows (a lone surrogate escape in a
    // string, a number beyond f64); where it reads the body, it must read the same fields.
    let serde_ok = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            assert_eq!(
                map.get("model").and_then(Value::as_str),
                Some(read.model.as_str()),
                "model"
            );
            assert_eq!(
                read.stream,
                map.get("stream") == Some(&Value::Bool(true)),
                "stream"
            );
            true
        }
        Ok(_) => panic!("read_body accepted a body that is not a JSON object"),
        Err(_) => false,
    };
    if edit.is_empty() {
        return;
    }

    let output = match edit.apply(body) {
        Ok(output) => output,
        Err(e) => panic!("apply refused a body read_body accepted: {e:?}"),
    };
    let Ok(edited) = Object::document(&output) else {
        panic!("apply produced invalid JSON");
    };
    if serde_ok {
        assert!(
            matches!(serde_json::from_slice::<Value>(&output), Ok(Value::Object(_))),
            "apply made serde_json refuse a body it read"
        );
    }
    let touched =
        |name: &str| fields.contains(&name) || (edit.include_usage && name == "stream_options");
    assert_eq!(
        untouched(body, &input, &touched),
        untouched(&output, &edited, &touched),
        "a member it was not asked to touch changed"
    );
    for name in &fields {
        let set = edited.get(name).ok().flatten().map(|m| &output[m.value.clone()]);
        assert_eq!(set, Some(limit.to_string().as_bytes()), "{name} not set");
    }
    if edit.include_usage {
        let Some(options) = edited.get("stream_options").ok().flatten() else {
            panic!("no stream_options after the edit");
        };
        let Ok(options) = Object::at(&output, options.value.start) else {
            panic!("stream_options is not an object after the edit");
        };
        let flag = options.get("include_usage").ok().flatten();
        assert_eq!(
            flag.map(|m| &output[m.value.clone()]),
            Some(&b"true"[..]),
            "include_usage"
        );
        let before = input.get("stream_options").ok().flatten();
        if let Some(before) = before.filter(|m| body[m.value.start] == b'{') {
            let Ok(before) = Object::at(body, before.value.start) else {
                panic!("stream_options unreadable in the input");
            };
            let not_flag = |name: &str| name == "include_usage";
            assert_eq!(
                untouched(body, &before, &not_flag),
                untouched(&output, &options, &not_flag),
                "stream_options changed"
            );
        }
    }

    let reread = match read_body(&output) {
        Ok(reread) => reread,
        Err(e) => panic!("the edited body does not read back: {e:?}"),
    };
    assert_eq!(reread.model, read.model, "model changed by the edit");
    assert_eq!(reread.stream, read.stream, "stream changed by the edit");
    if edit.include_usage {
        assert!(reread.include_usage, "include_usage not read back");
    }
    for name in &fields {
        assert_eq!(
            reread.output_limit(&[name]),
            Ok(Some(limit)),
            "{name} not read back"
        );
    }
    match edit.apply(&output) {
        Ok(twice) => assert_eq!(twice, output, "a second apply changed the body"),
        Err(e) => panic!("apply refused its own output: {e:?}"),
    }
});
