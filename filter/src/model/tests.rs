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
        model_from_body(br#"{"model":"gpt-4o","messages":[]}"#),
        Ok("gpt-4o".into())
    );
    assert_eq!(
        model_from_body(br#"{"messages":[]}"#),
        Err(ModelError::Missing)
    );
    assert_eq!(
        model_from_body(br#"{"model":42}"#),
        Err(ModelError::Missing)
    );
    assert_eq!(
        model_from_body(br#"{"model":""}"#),
        Err(ModelError::Missing)
    );
    assert!(matches!(
        model_from_body(b"{\"model\":\"gpt-4o\""),
        Err(ModelError::InvalidJson(_))
    ));
    assert!(matches!(
        model_from_body(b"[1,2]"),
        Err(ModelError::InvalidJson(_))
    ));
    assert!(matches!(
        model_from_body(b""),
        Err(ModelError::InvalidJson(_))
    ));
    // Trailing garbage after a valid object is still malformed.
    assert!(matches!(
        model_from_body(br#"{"model":"gpt-4o"} x"#),
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
