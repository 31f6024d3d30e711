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
