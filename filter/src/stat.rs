//! Stat names: what the filter's Envoy stats are called, built here so every name follows
//! Envoy's rules (`.`-separated segments) and stays bounded.

/// Stat name segments: lowercase ASCII letters, digits, `-` and `_` only (a `.` would split
/// the name), at most 64 characters.
pub fn sanitize(segment: &str) -> String {
    segment
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Requests sent on to a provider.
pub const FORWARDED: &str = "tokenward.requests.forwarded";

/// Requests refused, by error code.
pub fn refused(code: &str) -> String {
    format!("tokenward.requests.refused.{code}")
}

/// Usage of one provider and model (`model` already bounded and sanitized); the counters
/// below it are `<prefix>.<measure>`.
pub fn usage_prefix(provider: &str, model: &str) -> String {
    format!("tokenward.usage.{}.{model}", sanitize(provider))
}

/// Requests a plan's limit refused (plan and limit names are stat-safe: see `quota`).
pub fn quota_refused(plan: &str, limit: &str) -> String {
    format!("tokenward.quota.refused.{plan}.{limit}")
}

/// Requests over a shadow plan's limit (`what`: the limit, or `<limit>.unpriced`).
pub fn quota_shadow_exceeded(plan: &str, what: &str) -> String {
    format!("tokenward.quota.shadow_exceeded.{plan}.{what}")
}

/// Quota counts the shared store failed to take.
pub const QUOTA_STORE_ERRORS: &str = "tokenward.quota.store_errors";

/// Quota settlements the shared store failed to write.
pub const QUOTA_SETTLE_ERRORS: &str = "tokenward.quota.settle_errors";

/// The gauge of one configuration part that could not be loaded.
pub fn config_unavailable(kind: &str, name: &str) -> String {
    format!("tokenward.config.unavailable.{kind}.{}", sanitize(name))
}

/// The gauge of how many configuration parts could not be loaded.
pub const CONFIG_UNAVAILABLE_PARTS: &str = "tokenward.config.unavailable_parts";
