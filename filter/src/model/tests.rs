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
