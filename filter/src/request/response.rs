//! The response of a forwarded request: its status and format, the usage metered as its body
//! passes, the rate-limit headers the client gets, and the quota settled to what was used.

use super::Forwarded;
use crate::exchange::UsageReport;
use crate::host::Host;
use crate::quota::Settlement;

/// Reads the response headers; returns the rate-limit headers to add.
pub(super) fn on_headers(
    forwarded: &mut Forwarded,
    host: &impl Host,
) -> Vec<(&'static str, String)> {
    forwarded.status = host
        .response_header(":status")
        .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok());
    let exchange = &mut forwarded.exchange;
    if exchange.format.is_some() {
        let content_type = host.response_header("content-type");
        let content_encoding = host.response_header("content-encoding");
        exchange.on_response_headers(content_type.as_deref(), content_encoding.as_deref());
    }
    // The clock only for headers that go out.
    match &forwarded.grant {
        Some(grant) if grant.sends_headers() => host
            .now_unix_seconds()
            .map_or_else(Vec::new, |now| grant.client_headers(now)),
        _ => Vec::new(),
    }
}

/// Meters a piece of the response body; the usage report once the response is complete.
pub(super) fn on_body(
    forwarded: &mut Forwarded,
    host: &impl Host,
    body_size: usize,
    end_of_stream: bool,
    events: &mut Vec<String>,
) -> Option<UsageReport> {
    if !forwarded.exchange.wants_body() {
        return None;
    }
    let chunk = if body_size > 0 {
        host.response_body(body_size).unwrap_or_default()
    } else {
        Vec::new()
    };
    let report = forwarded.exchange.on_response_body(&chunk, end_of_stream)?;
    settle(forwarded, host, &report, true, events);
    Some(report)
}

/// The request is over, complete or not: a report not given yet (an aborted stream).
pub(super) fn on_done(
    forwarded: &mut Forwarded,
    host: &impl Host,
    events: &mut Vec<String>,
) -> Option<UsageReport> {
    let report = forwarded.exchange.on_done()?;
    settle(forwarded, host, &report, false, events);
    Some(report)
}

/// Corrects the quota reservations to the response's usage (`finished`: the response body
/// ended normally). A client error (4xx) without usage gives the tokens back: the provider
/// refused the request and bills nothing. Any other answer without usage, or one that did not
/// end (a stream cut short, the client gone, no answer yet, a 5xx or an Envoy timeout after
/// the provider had the request) is charged at least its reservation: the provider may have
/// billed it.
fn settle(
    forwarded: &mut Forwarded,
    host: &impl Host,
    report: &UsageReport,
    finished: bool,
    events: &mut Vec<String>,
) {
    let Some(grant) = forwarded.grant.take() else {
        return;
    };
    let refused_by_provider = forwarded.status.is_some_and(|s| (400..500).contains(&s));
    let settlement = match (report.usage, finished, refused_by_provider) {
        (Some(usage), true, _) | (Some(usage), false, true) => Settlement::Usage(usage),
        (None, _, true) => Settlement::Refund,
        (usage, _, false) => Settlement::Unfinished(usage),
    };
    let Some(now) = host.now_unix_seconds() else {
        return;
    };
    events.append(&mut grant.settle(settlement, host.store(), now, false));
}
