//! Which model a request asks for, and whether a model pattern allows it. Reads the model
//! from a JSON body or from Gemini's path form; knows nothing of providers or tokens.

use serde::Deserialize;

/// Does `model` match `pattern`? `*` matches any run of characters (also none); everything
/// else matches itself. `*` alone matches every model.
pub fn pattern_matches(pattern: &str, model: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = model.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*` at all: an exact match.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Why no model could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// The body is not valid JSON (or not a JSON object).
    InvalidJson(String),
    /// Valid JSON without a string `model`.
    Missing,
}

/// The `model` of a JSON request body. The whole body is checked to be valid JSON, so a
/// malformed request is refused here rather than by the provider after it was counted.
pub fn model_from_body(body: &[u8]) -> Result<String, ModelError> {
    #[derive(Deserialize)]
    struct ModelOnly {
        #[serde(default)]
        model: Option<serde_json::Value>,
    }
    let parsed: ModelOnly = serde_json::from_slice(body).map_err(|e| {
        // serde_json's messages give line and column, never the body's content.
        ModelError::InvalidJson(e.to_string())
    })?;
    match parsed.model {
        Some(serde_json::Value::String(model)) if !model.is_empty() => Ok(model),
        _ => Err(ModelError::Missing),
    }
}

/// The model in Gemini's path form: `/v1beta/models/{model}:{method}` (also with a
/// `tunedModels/` collection). The query string is ignored.
pub fn model_from_gemini_path(path: &str) -> Option<&str> {
    let path = path.split('?').next().unwrap_or(path);
    let (_, after) = path
        .split_once("/models/")
        .or_else(|| path.split_once("/tunedModels/"))?;
    let model = after.split(':').next().unwrap_or(after);
    if model.is_empty() || model.contains('/') {
        return None;
    }
    Some(model)
}

#[cfg(test)]
mod tests {
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
}
