//! Which model a request asks for, and whether a model pattern allows it. Reads the model
//! from a JSON body or from Gemini's path form; knows nothing of providers or tokens.

use crate::json::{self, Kind, Member, Object, Splice};

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

/// The fields of a JSON request body. The whole body is checked to be valid JSON (at any
/// depth), so a malformed request is refused here rather than by the provider after it was
/// counted. A field the filter reads that appears twice is refused: which one the provider
/// obeys is unknown. `null` counts as absent, as most providers read it.
pub fn read_body(body: &[u8]) -> Result<RequestFields, ModelError> {
    let object = Object::document(body).map_err(invalid)?;
    let field = |name: &str| -> Result<Option<&Member>, ModelError> {
        Ok(object
            .get(name)
            .map_err(invalid)?
            .filter(|m| m.kind != Kind::Null))
    };
    let model = match field("model")? {
        Some(m) if m.kind == Kind::String => {
            json::decode_string(body, m.value.clone()).map_err(invalid)?
        }
        _ => String::new(),
    };
    if model.is_empty() {
        return Err(ModelError::Missing);
    }
    if model.chars().any(char::is_control) {
        // `o1\u0000-mini` matches `*-mini` here and may read as `o1` to a C-string parser.
        return Err(ModelError::InvalidJson(
            "the model name contains control characters".into(),
        ));
    }
    let mut output_limits = Vec::new();
    for name in OUTPUT_LIMIT_FIELDS {
        if let Some(m) = field(name)? {
            output_limits.push((name, token_count(body, m)));
        }
    }
    let stream = field("stream")?.is_some_and(|m| m.kind == Kind::Bool(true));
    let include_usage = match field("stream_options")? {
        Some(m) if m.kind == Kind::Object => {
            let options = Object::at(body, m.value.start).map_err(invalid)?;
            options
                .get("include_usage")
                .map_err(invalid)?
                .is_some_and(|m| m.kind == Kind::Bool(true))
        }
        _ => false,
    };
    Ok(RequestFields {
        model,
        output_limits,
        stream,
        include_usage,
    })
}

/// The output-limit fields of the APIs the filter meters.
const OUTPUT_LIMIT_FIELDS: [&str; 3] = ["max_completion_tokens", "max_tokens", "max_output_tokens"];

fn invalid(e: json::JsonError) -> ModelError {
    // Positions and expectations only, never the body's content.
    ModelError::InvalidJson(e.0)
}

/// A token count as JSON may write it: `4096`, or `4096.0` and `4e3` (rounded up); `None`
/// for anything else (a string, a negative number).
fn token_count(body: &[u8], member: &Member) -> Option<u64> {
    if member.kind != Kind::Number {
        return None;
    }
    let text = std::str::from_utf8(body.get(member.value.clone())?).ok()?;
    text.parse::<u64>().ok().or_else(|| {
        let f = json::number::parse_f64(text).filter(|f| f.is_finite() && *f >= 0.0)?;
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

    /// The edited body: the client's text with the limit fields and `include_usage`
    /// spliced in, every other byte unchanged.
    pub fn apply(&self, body: &[u8]) -> Result<Vec<u8>, ModelError> {
        let object = Object::document(body).map_err(invalid)?;
        let mut splice = Splice::default();
        // New members go before the closing brace, after any existing ones.
        let end = object.span.end - 1;
        let mut appended = !object.members.is_empty();
        let mut append = |splice: &mut Splice, member: String| {
            let comma = if appended { "," } else { "" };
            splice.insert(end, format!("{comma}{member}"));
            appended = true;
        };
        if let Some((fields, limit)) = &self.output_limit {
            for field in fields {
                match object.get(field).map_err(invalid)? {
                    Some(m) => splice.replace(m.value.clone(), limit.to_string()),
                    None => append(&mut splice, format!("\"{field}\":{limit}")),
                }
            }
        }
        if self.include_usage {
            match object.get("stream_options").map_err(invalid)? {
                Some(m) if m.kind == Kind::Object => {
                    let options = Object::at(body, m.value.start).map_err(invalid)?;
                    match options.get("include_usage").map_err(invalid)? {
                        Some(flag) => splice.replace(flag.value.clone(), "true".into()),
                        None => {
                            let comma = if options.members.is_empty() { "" } else { "," };
                            splice.insert(
                                options.span.start + 1,
                                format!("\"include_usage\":true{comma}"),
                            );
                        }
                    }
                }
                Some(m) => splice.replace(m.value.clone(), r#"{"include_usage":true}"#.into()),
                None => append(
                    &mut splice,
                    r#""stream_options":{"include_usage":true}"#.into(),
                ),
            }
        }
        Ok(splice.apply(body))
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
