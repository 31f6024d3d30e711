//! The rate-limit headers a client gets: `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers), OpenAI's `x-ratelimit-*`, and `Retry-After`.

use super::{is_token_metric, Limit, Plan};
use crate::config::Metric;
use crate::json::write::push_u64 as push_number;

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) for every limit
/// known, OpenAI's `x-ratelimit-*` for the tightest request and token limits, and
/// `Retry-After` when `retry_at` is set (a 429). The names are static: only the values are
/// made per answer.
pub(super) fn rate_limit_headers(
    plan: &Plan,
    states: &[(usize, u64, u64)],
    now: u64,
    retry_at: u64,
) -> Vec<(&'static str, String)> {
    let policy = plan
        .policy_header
        .clone()
        .unwrap_or_else(|| policy_header(&plan.limits, now));
    // These headers go on every answer: built by hand, as core::fmt costs microseconds here.
    let mut current = String::with_capacity(states.len() * 24);
    // The tightest request and token limits: (limit, remaining, seconds to reset).
    let mut requests: Option<(&Limit, u64, u64)> = None;
    let mut tokens: Option<(&Limit, u64, u64)> = None;
    for &(index, used, resets_at) in states {
        let Some(limit) = plan.limits.get(index) else {
            continue;
        };
        let remaining = limit.limit.saturating_sub(used);
        let reset = resets_at.saturating_sub(now);
        if !current.is_empty() {
            current.push_str(", ");
        }
        current.push('"');
        current.push_str(&limit.name);
        current.push_str("\";r=");
        push_number(&mut current, remaining);
        current.push_str(";t=");
        push_number(&mut current, reset);
        let slot = match limit.metric {
            Metric::Requests => &mut requests,
            m if is_token_metric(m) => &mut tokens,
            _ => continue,
        };
        if slot.is_none_or(|(_, r, _)| remaining < r) {
            *slot = Some((limit, remaining, reset));
        }
    }
    let mut headers = Vec::with_capacity(9);
    headers.push(("ratelimit-policy", policy));
    headers.push(("ratelimit", current));
    for (names, tightest) in [
        (
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            requests,
        ),
        (
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
            tokens,
        ),
    ] {
        if let Some((limit, remaining, reset)) = tightest {
            headers.push((names[0], number(limit.limit)));
            headers.push((names[1], number(remaining)));
            headers.push((names[2], duration(reset)));
        }
    }
    if retry_at > 0 {
        headers.push(("retry-after", number(retry_at.saturating_sub(now).max(1))));
    }
    headers
}

pub(super) fn number(n: u64) -> String {
    let mut out = String::with_capacity(20);
    push_number(&mut out, n);
    out
}

/// `RateLimit-Policy`: every limit with its quota and window width (a month's as of `now`).
pub(super) fn policy_header(limits: &[Limit], now: u64) -> String {
    let mut policy = Vec::with_capacity(limits.len());
    for limit in limits {
        let width = limit.window.end(now) - limit.window.start(now);
        let unit = match limit.metric {
            Metric::Requests => "",
            Metric::CostMicroUsd => ";qu=\"micro-usd\"",
            _ => ";qu=\"tokens\"",
        };
        policy.push(format!(
            "\"{}\";q={};w={width}{unit}",
            limit.name, limit.limit
        ));
    }
    policy.join(", ")
}

/// Seconds as OpenAI writes its reset times: `45s`, `6m0s`, `2h0m5s`.
pub(super) fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::with_capacity(16);
    if h > 0 {
        push_number(&mut out, h);
        out.push('h');
    }
    if h > 0 || m > 0 {
        push_number(&mut out, m);
        out.push('m');
    }
    push_number(&mut out, s);
    out.push('s');
    out
}
