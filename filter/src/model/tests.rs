use super::*;

#[test]
fn patterns() {
    assert!(pattern_matches("*", "gpt-4o"));
    assert!(pattern_matches("gpt-4o", "gpt-4o"));
    assert!(!pattern_matches("gpt-4o", "gpt-4o-mini"));
    assert!(pattern_matches("gpt-4o*", "gpt-4o-mini"));
    assert!(pattern_matches("gpt-4o*", "gpt-4o"));
    assert!(!pattern_matches("gpt-4o*", "gpt-4"));
    assert!(pattern_matches(
        "claude-*-sonnet*",
        "claude-3-5-sonnet-20241022"
    ));
    assert!(!pattern_matches("claude-*-sonnet*", "claude-3-opus"));
    assert!(pattern_matches("*-mini", "gpt-4o-mini"));
    assert!(!pattern_matches("*-mini", "gpt-4o"));
    // The suffix may not reuse characters the prefix consumed.
    assert!(!pattern_matches("ab*ba", "aba"));
    assert!(pattern_matches("a**b", "ab"));
}

#[test]
fn model_from_json_body() {
    assert_eq!(
        model_of(br#"{"model":"gpt-4o","messages":[]}"#),
        Ok("gpt-4o".into())
    );
    assert_eq!(model_of(br#"{"messages":[]}"#), Err(ModelError::Missing));
    assert_eq!(model_of(br#"{"model":42}"#), Err(ModelError::Missing));
    assert_eq!(model_of(br#"{"model":""}"#), Err(ModelError::Missing));
    assert!(matches!(
        model_of(b"{\"model\":\"gpt-4o\""),
        Err(ModelError::InvalidJson(_))
    ));
    assert!(matches!(
        model_of(b"[1,2]"),
        Err(ModelError::InvalidJson(_))
    ));
    assert!(matches!(model_of(b""), Err(ModelError::InvalidJson(_))));
    // Trailing garbage after a valid object is still malformed.
    assert!(matches!(
        model_of(br#"{"model":"gpt-4o"} x"#),
        Err(ModelError::InvalidJson(_))
    ));
}

#[test]
fn model_from_gemini_paths() {
    assert_eq!(
        model_from_gemini_path("/v1beta/models/gemini-2.0-flash:generateContent"),
        Some("gemini-2.0-flash")
    );
    assert_eq!(
        model_from_gemini_path("/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse"),
        Some("gemini-1.5-pro")
    );
    assert_eq!(model_from_gemini_path("/v1beta/models"), None);
    assert_eq!(
        model_from_gemini_path("/v1beta/models/:generateContent"),
        None
    );
    assert_eq!(
        model_from_gemini_path("/v1beta/models/a/b:generateContent"),
        None
    );
}

fn model_of(body: &[u8]) -> Result<String, ModelError> {
    read_body(body).map(|fields| fields.model)
}

#[test]
fn reads_the_output_limit_and_streaming_fields() {
    let fields = read_body(
        br#"{"model":"m","max_tokens":50,"max_completion_tokens":70,"stream":true,"stream_options":{"include_usage":false}}"#,
    )
    .unwrap();
    let chat = ["max_completion_tokens", "max_tokens"];
    assert_eq!(
        fields.output_limit(&chat),
        Ok(Some(70)),
        "the larger of the two"
    );
    assert_eq!(fields.output_limit(&["max_output_tokens"]), Ok(None));
    assert!(fields.stream);
    assert!(!fields.include_usage);
    let fields = read_body(
        br#"{"model":"m","max_output_tokens":9e3,"stream_options":{"include_usage":true}}"#,
    )
    .unwrap();
    assert_eq!(fields.output_limit(&["max_output_tokens"]), Ok(Some(9000)));
    assert!(!fields.stream && fields.include_usage);
    let fields = read_body(br#"{"model":"m","max_tokens":"many","stream":"yes"}"#).unwrap();
    assert_eq!(
        fields.output_limit(&chat),
        Err("max_tokens"),
        "a limit that is not a number is named, not ignored"
    );
    assert!(!fields.stream);
}

#[test]
fn an_edit_sets_the_limit_and_turns_on_usage_keeping_the_rest() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi \u00e9"}],"stream":true,"stream_options":{"foo":1},"max_tokens":900}"#;
    let edit = BodyEdit {
        output_limit: Some((vec!["max_tokens", "max_completion_tokens"], 120)),
        include_usage: true,
    };
    let edited: serde_json::Value = serde_json::from_slice(&edit.apply(body).unwrap()).unwrap();
    let original: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(edited["max_tokens"], 120);
    assert_eq!(edited["max_completion_tokens"], 120);
    assert_eq!(edited["stream_options"]["include_usage"], true);
    assert_eq!(edited["stream_options"]["foo"], 1);
    assert_eq!(edited["messages"], original["messages"]);
    assert_eq!(edited["stream"], true);
    let without: serde_json::Value = serde_json::from_slice(
        &BodyEdit {
            output_limit: None,
            include_usage: true,
        }
        .apply(br#"{"model":"m","stream":true,"stream_options":null}"#)
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        without["stream_options"],
        serde_json::json!({"include_usage": true})
    );
}

#[test]
fn regression_a_rewrite_keeps_every_other_byte_of_the_clients_json() {
    let body = br#"{ "seed": 12345678901234567890123, "model":"gpt-4o",
  "temperature": 0.10000000000000001, "zeta": 1, "alpha": {"b": [1.0, 2e3]}, "stream": true,
  "max_tokens": 9000 }"#;
    let edit = BodyEdit {
        output_limit: Some((vec!["max_tokens", "max_completion_tokens"], 100)),
        include_usage: true,
    };
    let out = String::from_utf8(edit.apply(body).unwrap()).unwrap();
    assert_eq!(
        out,
        r#"{ "seed": 12345678901234567890123, "model":"gpt-4o",
  "temperature": 0.10000000000000001, "zeta": 1, "alpha": {"b": [1.0, 2e3]}, "stream": true,
  "max_tokens": 100 ,"max_completion_tokens":100,"stream_options":{"include_usage":true}}"#
    );
    let read = read_body(out.as_bytes()).unwrap();
    assert!(read.include_usage);
    assert_eq!(read.output_limit(&["max_tokens"]), Ok(Some(100)));
}

#[test]
fn regression_a_rewrite_works_at_any_nesting_depth() {
    for depth in [127, 128, 1000, 100_000] {
        let body = format!(
            r#"{{"model":"gpt-4o","stream":true,"messages":{}"deep"{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert_eq!(read_body(body.as_bytes()).unwrap().model, "gpt-4o");
        let edit = BodyEdit {
            output_limit: Some((vec!["max_tokens"], 5)),
            include_usage: true,
        };
        let out = edit.apply(body.as_bytes()).unwrap();
        assert!(
            out.starts_with(&body.as_bytes()[..body.len() - 1]),
            "{depth}"
        );
        assert!(out.ends_with(br#","max_tokens":5,"stream_options":{"include_usage":true}}"#));
    }
}

#[test]
fn include_usage_is_spliced_into_existing_stream_options() {
    let apply = |body: &str| {
        let edit = BodyEdit {
            output_limit: None,
            include_usage: true,
        };
        String::from_utf8(edit.apply(body.as_bytes()).unwrap()).unwrap()
    };
    assert_eq!(
        apply(r#"{"model":"m","stream_options":{"x":1}}"#),
        r#"{"model":"m","stream_options":{"include_usage":true,"x":1}}"#
    );
    assert_eq!(
        apply(r#"{"model":"m","stream_options":{"include_usage":false}}"#),
        r#"{"model":"m","stream_options":{"include_usage":true}}"#
    );
    assert_eq!(
        apply(r#"{"model":"m","stream_options":null}"#),
        r#"{"model":"m","stream_options":{"include_usage":true}}"#
    );
    assert_eq!(
        apply(r#"{"model":"m","stream_options":{}}"#),
        r#"{"model":"m","stream_options":{"include_usage":true}}"#
    );
}

#[test]
fn a_field_the_filter_reads_twice_is_refused_and_null_is_absent() {
    assert!(matches!(
        read_body(br#"{"model":"a","model":"b"}"#),
        Err(ModelError::InvalidJson(m)) if m.contains("duplicate field `model`")
    ));
    assert!(matches!(
        read_body(br#"{"model":"a","max_tokens":1,"max_tokens":2}"#),
        Err(ModelError::InvalidJson(_))
    ));
    let read = read_body(br#"{"model":"a","max_tokens":null,"stream":null}"#).unwrap();
    assert!(read.output_limits.is_empty() && !read.stream);
    assert_eq!(read_body(br#"{"model":null}"#), Err(ModelError::Missing));
    assert_eq!(
        read_body(br#"{"mod\u0065l":"gpt-4o"}"#).unwrap().model,
        "gpt-4o"
    );
}

#[test]
fn regression_a_case_variant_of_a_field_the_filter_reads_is_refused() {
    for body in [
        r#"{"model":"gpt-4o-mini","MODEL":"o1"}"#,
        r#"{"MODEL":"o1"}"#,
        "{\"model\":\"m\",\"max_to\u{212a}ens\":5}",
        "{\"model\":\"m\",\"\u{17f}tream\":true}",
    ] {
        assert!(
            matches!(read_body(body.as_bytes()), Err(ModelError::InvalidJson(_))),
            "{body}"
        );
    }
    assert!(matches!(
        read_body(b"{\"model\":\"o1\\u0000-mini\"}"),
        Err(ModelError::InvalidJson(_))
    ));
    // Fields the filter does not read may be spelled as the client likes.
    assert!(read_body(br#"{"model":"m","Messages":[],"messages":[]}"#).is_ok());
}
