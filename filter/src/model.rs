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
mod tests;
