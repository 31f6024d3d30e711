//! Request bodies read before authentication and parsed after it: a caller without a valid
//! credential learns 401, not how its body was wrong; a caller with one gets a JSON error
//! naming what is wrong with the body (415 for another content type, 400 for the rest).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header::CONTENT_TYPE, StatusCode};
use serde::de::DeserializeOwned;

use super::ApiError;

pub(super) struct JsonBody {
    bytes: Bytes,
    /// The request said `application/json` (parameters aside).
    is_json: bool,
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                ApiError::new(
                    rejection.status(),
                    "invalid_request",
                    format!(
                        "the request body could not be read: {}",
                        rejection.body_text()
                    ),
                )
            })?;
        Ok(JsonBody { bytes, is_json })
    }
}

impl JsonBody {
    /// The body as `T`.
    pub(super) fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if !self.is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON, with Content-Type: application/json",
            ));
        }
        let refused = |error: String| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the request body is not what this call takes: {error}"),
            )
        };
        let mut document: serde_json::Value =
            serde_json::from_slice(&self.bytes).map_err(|e| refused(e.to_string()))?;
        // Every body is an object (serde would also read a struct from an array).
        if !document.is_object() {
            return Err(refused("a JSON object".into()));
        }
        integral_numbers(&mut document);
        serde_json::from_value(document).map_err(|e| refused(e.to_string()))
    }

    /// The body as `T`, or `T::default()` when there is none.
    pub(super) fn parse_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        self.parse()
    }
}

/// JSON Schema's `integer` (which the OpenAPI document promises) takes any number without a
/// fraction: `60.0` is read as `60`, as a JSON Schema validator would accept it.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) if number.is_f64() => {
            if let Some(f) = number.as_f64() {
                // Exactly representable in both f64 and u64/i64: below 2^53.
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    *value = if f >= 0.0 {
                        serde_json::Value::from(f as u64)
                    } else {
                        serde_json::Value::from(f as i64)
                    };
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}
