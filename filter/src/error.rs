//! Every refusal the filter can send, in one place: its stable code, status, OpenAI-style
//! error type and the `WWW-Authenticate` challenge. Nothing else decides what a client sees.

use crate::json::write::{fields, object};

/// The realm named in every `WWW-Authenticate` challenge.
const REALM: &str = "tokenward";

/// A refusal. The `code` string of each variant is part of the public API (docs/errors.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No valid configuration is loaded: fail closed.
    NotConfigured,
    /// No configured route matches the path and method.
    RouteNotFound,
    /// A credential was sent in the URL query, where it leaks into logs.
    TokenInUrl,
    /// More than one credential, or a repeated credential header.
    AmbiguousCredential,
    /// A header the filter must read is not valid UTF-8 or is malformed.
    InvalidHeader,
    /// No credential at all.
    MissingCredential,
    /// The JWT is malformed, badly signed, for another issuer or audience, not yet valid,
    /// or lives longer than allowed.
    InvalidToken,
    /// The JWT has expired (beyond the allowed clock skew).
    TokenExpired,
    /// The JWT's id, subject or signing key has been revoked.
    TokenRevoked,
    /// The API key has a bad checksum, is unknown, or has expired.
    InvalidApiKey,
    /// The credential lacks a scope the route requires.
    InsufficientScope,
    /// The credential may not use the requested model.
    ModelNotAllowed,
    /// The route needs a model and the request names none.
    MissingModel,
    /// No provider on this route serves the requested model.
    ModelNotFound,
    /// The request body is not valid JSON.
    InvalidJson,
    /// The request body exceeds the route's limit.
    RequestTooLarge,
    /// The credential names a plan the configuration does not have.
    UnknownPlan,
    /// The plan limits cost and the configuration has no price for the model.
    ModelNotPriced,
    /// A request or token limit of the plan is used up for the current window.
    RateLimitExceeded,
    /// A cost limit of the plan is used up for the current window.
    BudgetExceeded,
    /// The host refused an operation the filter needed; the request is not forwarded.
    InternalError,
    /// The route could not be loaded from the configuration (the rest of it is in force).
    RouteUnavailable,
    /// The route's provider could not be loaded (its credential is missing, say).
    ProviderUnavailable,
    /// The credential's plan could not be loaded: refused rather than let through unlimited.
    PlanUnavailable,
    /// The plan's limits are shared across the fleet, it fails closed, and the control plane
    /// that shares them has not answered for too long.
    QuotaUnavailable,
    /// The client address or the credential failed authentication too often: refused for a
    /// cool-down, before any signature check (docs/guard.md).
    TemporarilyBlocked,
}

impl ErrorCode {
    /// Every code, for documentation and tests that must cover them all.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::NotConfigured,
        ErrorCode::RouteNotFound,
        ErrorCode::TokenInUrl,
        ErrorCode::AmbiguousCredential,
        ErrorCode::InvalidHeader,
        ErrorCode::MissingCredential,
        ErrorCode::InvalidToken,
        ErrorCode::TokenExpired,
        ErrorCode::TokenRevoked,
        ErrorCode::InvalidApiKey,
        ErrorCode::InsufficientScope,
        ErrorCode::ModelNotAllowed,
        ErrorCode::MissingModel,
        ErrorCode::ModelNotFound,
        ErrorCode::InvalidJson,
        ErrorCode::RequestTooLarge,
        ErrorCode::UnknownPlan,
        ErrorCode::ModelNotPriced,
        ErrorCode::RateLimitExceeded,
        ErrorCode::BudgetExceeded,
        ErrorCode::InternalError,
        ErrorCode::RouteUnavailable,
        ErrorCode::ProviderUnavailable,
        ErrorCode::PlanUnavailable,
        ErrorCode::QuotaUnavailable,
        ErrorCode::TemporarilyBlocked,
    ];

    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::NotConfigured => "not_configured",
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::TokenInUrl => "token_in_url",
            ErrorCode::AmbiguousCredential => "ambiguous_credential",
            ErrorCode::InvalidHeader => "invalid_header",
            ErrorCode::MissingCredential => "missing_credential",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenRevoked => "token_revoked",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::ModelNotAllowed => "model_not_allowed",
            ErrorCode::MissingModel => "missing_model",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::UnknownPlan => "unknown_plan",
            ErrorCode::ModelNotPriced => "model_not_priced",
            ErrorCode::RateLimitExceeded => "rate_limit_exceeded",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::RouteUnavailable => "route_unavailable",
            ErrorCode::ProviderUnavailable => "provider_unavailable",
            ErrorCode::PlanUnavailable => "plan_unavailable",
            ErrorCode::QuotaUnavailable => "quota_unavailable",
            ErrorCode::TemporarilyBlocked => "temporarily_blocked",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::TokenInUrl
            | ErrorCode::AmbiguousCredential
            | ErrorCode::InvalidHeader
            | ErrorCode::MissingModel
            | ErrorCode::InvalidJson => 400,
            ErrorCode::MissingCredential
            | ErrorCode::InvalidToken
            | ErrorCode::TokenExpired
            | ErrorCode::TokenRevoked
            | ErrorCode::InvalidApiKey => 401,
            ErrorCode::InsufficientScope
            | ErrorCode::ModelNotAllowed
            | ErrorCode::UnknownPlan
            | ErrorCode::ModelNotPriced => 403,
            ErrorCode::RouteNotFound | ErrorCode::ModelNotFound => 404,
            ErrorCode::RequestTooLarge => 413,
            ErrorCode::RateLimitExceeded
            | ErrorCode::BudgetExceeded
            | ErrorCode::TemporarilyBlocked => 429,
            ErrorCode::InternalError => 500,
            ErrorCode::NotConfigured
            | ErrorCode::RouteUnavailable
            | ErrorCode::ProviderUnavailable
            | ErrorCode::PlanUnavailable
            | ErrorCode::QuotaUnavailable => 503,
        }
    }

    /// The `type` field of the OpenAI error shape. SDKs pick their exception from the status;
    /// the type tells a human reading the body which family the refusal belongs to.
    pub fn error_type(self) -> &'static str {
        if self == ErrorCode::BudgetExceeded {
            // OpenAI's type for a spent budget, as opposed to a rate.
            return "insufficient_quota";
        }
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            500 => "api_error",
            503 => "service_unavailable_error",
            _ => "invalid_request_error",
        }
    }

    /// Anthropic's error `type` for this refusal.
    pub fn anthropic_type(self) -> &'static str {
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            500 => "api_error",
            503 => "overloaded_error",
            _ => "invalid_request_error",
        }
    }

    /// Google's canonical `status` for this refusal (google.rpc.Code).
    pub fn google_status(self) -> &'static str {
        match self.status() {
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            500 => "INTERNAL",
            503 => "UNAVAILABLE",
            _ => "INVALID_ARGUMENT",
        }
    }

    /// The RFC 6750 error code for the challenge, where one applies.
    fn bearer_error(self) -> Option<&'static str> {
        match self {
            // RFC 6750 §3: a request with no authentication information gets no error code.
            ErrorCode::MissingCredential => None,
            ErrorCode::InvalidToken
            | ErrorCode::TokenExpired
            | ErrorCode::TokenRevoked
            | ErrorCode::InvalidApiKey => Some("invalid_token"),
            ErrorCode::InsufficientScope => Some("insufficient_scope"),
            ErrorCode::AmbiguousCredential | ErrorCode::TokenInUrl => Some("invalid_request"),
            _ => None,
        }
    }

    fn challenges(self) -> bool {
        matches!(self.status(), 401) || self.bearer_error().is_some()
    }
}

/// The error shape of the API a client speaks, so its SDK raises its own typed error with
/// our message and code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error":{"message","type","param","code"}}` (OpenAI, and where no route is known).
    #[default]
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`, with our `code` beside them.
    Anthropic,
    /// Google's `{"error":{"code","message","status","details"}}`, our code as the
    /// `ErrorInfo` reason.
    Google,
}

/// A refusal with its human-readable message. Messages never contain a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// Scopes the route requires, named in an `insufficient_scope` challenge.
    pub required_scope: Option<String>,
    /// Further response headers (`Retry-After` and the rate-limit headers of a 429).
    pub extra_headers: Vec<(String, String)>,
    /// The shape of the body: the route's provider's.
    pub style: ErrorStyle,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            required_scope: None,
            extra_headers: Vec::new(),
            style: ErrorStyle::OpenAi,
        }
    }

    /// The same refusal in the error shape of `style`.
    pub fn in_style(mut self, style: ErrorStyle) -> Self {
        self.style = style;
        self
    }

    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.extra_headers = headers;
        self
    }

    pub fn with_required_scope(mut self, scope: String) -> Self {
        self.required_scope = Some(scope);
        self
    }

    /// The JSON body in the error shape of the refusal's style.
    pub fn body(&self) -> String {
        let code = self.code.code();
        let mut body = String::new();
        match self.style {
            ErrorStyle::OpenAi => {
                let error = fields(|error| {
                    error
                        .field("message", &self.message)
                        .field("type", &self.code.error_type())
                        .field("param", &None::<&str>)
                        .field("code", &code);
                });
                object(&mut body, |body| {
                    body.field("error", &error);
                });
            }
            ErrorStyle::Anthropic => {
                // Where Anthropic's SDKs read a code (`error.error_code` in Python,
                // `errorCode` in TypeScript).
                let details = fields(|details| {
                    details.field("error_code", &code);
                });
                let error = fields(|error| {
                    error
                        .field("type", &self.code.anthropic_type())
                        .field("message", &self.message)
                        .field("code", &code)
                        .field("details", &details);
                });
                object(&mut body, |body| {
                    body.field("type", &"error").field("error", &error);
                });
            }
            ErrorStyle::Google => {
                let info = fields(|info| {
                    info.field("@type", &"type.googleapis.com/google.rpc.ErrorInfo")
                        .field("reason", &code)
                        .field("domain", &"tokenward");
                });
                let error = fields(|error| {
                    error
                        .field("code", &self.code.status())
                        .field("message", &self.message)
                        .field("status", &self.code.google_status())
                        .field("details", &[&info]);
                });
                object(&mut body, |body| {
                    body.field("error", &error);
                });
            }
        }
        body
    }

    /// Response headers besides the body's content type: the bearer challenge, if any.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if self.code.challenges() {
            let mut challenge = format!("Bearer realm=\"{REALM}\"");
            if let Some(error) = self.code.bearer_error() {
                challenge.push_str(&format!(
                    ", error=\"{error}\", error_description=\"{}\"",
                    quoted_string_safe(&self.message)
                ));
            }
            if let Some(scope) = &self.required_scope {
                challenge.push_str(&format!(", scope=\"{}\"", quoted_string_safe(scope)));
            }
            headers.push(("www-authenticate".to_string(), challenge));
        }
        headers.extend(self.extra_headers.iter().cloned());
        headers
    }
}

/// RFC 6750 limits `error_description` to printable ASCII without `"` and `\`.
fn quoted_string_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                c
            } else {
                '\''
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
