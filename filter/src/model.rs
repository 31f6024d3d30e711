//! Which model a request asks for, and whether a model pattern allows it. Reads the model
//! from a JSON body or from Gemini's path form; knows nothing of providers or tokens.

use serde::Deserialize;
use serde_json::Value;

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

/// What the filter reads from a JSON request body: the model, and what quotas need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestFields {
    pub model: String,
    /// The output-limit fields the body has, by name (`max_completion_tokens`, `max_tokens`,
    /// `max_output_tokens`), with their value when it is a non-negative number (`None`: the
    /// field is there but holds something else).
    pub output_limits: Vec<(&'static str, Option<u64>)>,
    /// `"stream": true`.
    pub stream: bool,
    /// `"stream_options": {"include_usage": true}` (OpenAI chat completions).
    pub include_usage: bool,
}

/// The fields of a JSON request body. The whole body is checked to be valid JSON, so a
/// malformed request is refused here rather than by the provider after it was counted.
pub fn read_body(body: &[u8]) -> Result<RequestFields, ModelError> {
    #[derive(Deserialize)]
    struct Fields {
        #[serde(default)]
        model: Option<Value>,
        #[serde(default)]
        max_completion_tokens: Option<Value>,
        #[serde(default)]
        max_tokens: Option<Value>,
        #[serde(default)]
        max_output_tokens: Option<Value>,
        #[serde(default)]
        stream: Option<Value>,
        #[serde(default)]
        stream_options: Option<Value>,
    }
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ModelError::InvalidJson(
            "the body is not a JSON object".to_string(),
        ));
    }
    let parsed: Fields = serde_json::from_slice(body).map_err(|e| {
        // serde_json's messages give line and column, never the body's content.
        ModelError::InvalidJson(e.to_string())
    })?;
    let model = match parsed.model {
        Some(Value::String(model)) if !model.is_empty() => model,
        _ => return Err(ModelError::Missing),
    };
    let output_limits = [
        ("max_completion_tokens", &parsed.max_completion_tokens),
        ("max_tokens", &parsed.max_tokens),
        ("max_output_tokens", &parsed.max_output_tokens),
    ]
    .into_iter()
    .filter_map(|(field, value)| Some((field, token_count(value.as_ref()?))))
    .collect();
    Ok(RequestFields {
        model,
        output_limits,
        stream: parsed.stream.as_ref().and_then(Value::as_bool) == Some(true),
        include_usage: parsed
            .stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true),
    })
}

/// A token count as JSON may write it: `4096`, or `4096.0` and `4e3` (rounded up).
fn token_count(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let f = value.as_f64().filter(|f| f.is_finite() && *f >= 0.0)?;
        // Saturates at u64::MAX for absurd values.
        Some(f.ceil() as u64)
    })
}

impl RequestFields {
    /// The output limit the request sets in any of `fields` (the API's own names): the
    /// largest, since which one a lenient server obeys is unknown. `None` when it sets none;
    /// `Err` when one of them is not a number.
    pub fn output_limit(&self, fields: &[&str]) -> Result<Option<u64>, &'static str> {
        let mut limit: Option<u64> = None;
        for (name, value) in self
            .output_limits
            .iter()
            .filter(|(n, _)| fields.contains(n))
        {
            let value = value.ok_or(*name)?;
            limit = Some(limit.map_or(value, |l| l.max(value)));
        }
        Ok(limit)
    }
}

/// Changes to a request body before it is forwarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyEdit {
    /// Set these output-limit fields to this value.
    pub output_limit: Option<(Vec<&'static str>, u64)>,
    /// Set `stream_options.include_usage` to true.
    pub include_usage: bool,
}

impl BodyEdit {
    pub fn is_empty(&self) -> bool {
        self.output_limit.is_none() && !self.include_usage
    }

    /// The edited body (a JSON object, as `read_body` checked). Other fields keep their
    /// values; their order may change.
    pub fn apply(&self, body: &[u8]) -> Result<Vec<u8>, ModelError> {
        let invalid = |e: serde_json::Error| ModelError::InvalidJson(e.to_string());
        let mut value: Value = serde_json::from_slice(body).map_err(invalid)?;
        let object = value.as_object_mut().ok_or(ModelError::Missing)?;
        if let Some((fields, limit)) = &self.output_limit {
            for field in fields {
                object.insert(field.to_string(), Value::from(*limit));
            }
        }
        if self.include_usage {
            let options = object
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Default::default()));
            if !options.is_object() {
                *options = Value::Object(Default::default());
            }
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".to_string(), Value::Bool(true));
            }
        }
        serde_json::to_vec(&value).map_err(invalid)
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
