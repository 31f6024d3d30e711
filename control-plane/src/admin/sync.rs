//! The sync channel's HTTP side (docs/sync.md), served by every replica: the configuration a
//! pull-mode filter long-polls for (signed, versioned by ETag), and the usage reports every
//! filter with a channel sends. Callers hold a proxy credential (scope `tokenward:sync`),
//! which opens nothing else.

use std::time::Duration;

use axum::http::header;
use tokenward_filter::sync::{
    ReportAnswer, SyncReport, NODE_HEADER, REVISION_HEADER, SCOPE_SYNC, SIGNATURE_HEADER,
};

use super::*;
use crate::model::{NackedVersion, ProxyStatus};

/// The longest a poll is held open.
const MAX_WAIT_SECONDS: u64 = 60;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PollQuery {
    /// Seconds to wait for a version other than the one named by `If-None-Match`.
    wait: Option<u64>,
}

/// The configuration, at once when it is not the version the filter names, else when it
/// changes or after `wait` seconds (304).
pub(super) async fn pull_config(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(query): Query<PollQuery>,
) -> Result<Response, ApiError> {
    let caller = Arc::clone(&state);
    let auth_headers = headers.clone();
    blocking(move || authorize(&caller, &auth_headers, SCOPE_SYNC).map(drop)).await?;
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_string()
        });
    let wait = Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    let deadline = tokio::time::Instant::now() + wait;
    let mut updates = state.synced.subscribe();
    loop {
        let current = updates.borrow_and_update().clone();
        if let Some(signed) = &current {
            if known.as_deref() != Some(signed.version.as_str()) {
                return Ok(config_answer(signed));
            }
        }
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    match state.synced.borrow().clone() {
        Some(signed) => Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, format!("\"{}\"", signed.version))],
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the control plane has not rendered a configuration yet",
        )),
    }
}

fn config_answer(signed: &crate::plane::SignedConfig) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE.as_str(),
                "application/json".to_string(),
            ),
            (header::ETAG.as_str(), format!("\"{}\"", signed.version)),
            (REVISION_HEADER, signed.revision.to_string()),
            (SIGNATURE_HEADER, signed.signature.clone()),
        ],
        signed.body.clone(),
    )
        .into_response()
}

/// A usage report: taken once, however often it is sent. A pull-mode filter's report also
/// says which configuration it runs, for `proxy-status`.
pub(super) async fn report_usage(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_SYNC)?;
        let report: SyncReport = body.parse()?;
        if headers
            .get(NODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|node| node != report.node)
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the report's node is not the caller's",
            ));
        }
        let now = (state.clock)();
        let taken = plane.record_usage(&report, now)?;
        if taken {
            state.usage_metrics.add(&report.entries);
        }
        if report.pull {
            record_puller(&state, &report, now);
        }
        // Blocks are alerts: recorded once, however often the report comes (a resend too).
        if !report.blocks.is_empty() {
            if let Err(error) = plane.record_blocks(&report, now) {
                tracing::warn!(%error, "sync: the blocks {} reported were not recorded", report.node);
            }
        }
        // The usage is taken whatever happens next: a failure here leaves the Envoy on the
        // allowances it has until its next report.
        let allowances = match plane.fleet_answer(&report, now.saturating_mul(1000)) {
            Ok(allowances) => Some(allowances),
            Err(error) => {
                tracing::warn!(%error, "sync: no allowances for {} this time", report.node);
                None
            }
        };
        Ok(Json(json!(ReportAnswer {
            taken,
            seq: report.seq,
            allowances,
        })))
    })
    .await
}

/// Which usage `GET /admin/v1/usage` answers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageParams {
    /// From this time (Unix seconds; the hour it falls in counts); the last 24 hours when
    /// absent.
    since: Option<u64>,
    subject: Option<String>,
    tenant: Option<String>,
    /// An API key's id or a token's jti.
    credential: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    /// Sum over the hours per value of this dimension instead of one row per hour and key.
    by: Option<crate::plane::UsageGroup>,
}

/// The usage ledger: what the filters reported, per hour and key, or summed by one
/// dimension.
pub(super) async fn usage(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(params): Query<UsageParams>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let now = (state.clock)();
        let query = crate::plane::UsageQuery {
            since: params.since.unwrap_or(now.saturating_sub(24 * 3600)),
            subject: params.subject,
            tenant: params.tenant,
            credential: params.credential,
            model: params.model,
            provider: params.provider,
            by: params.by,
        };
        Ok(Json(match plane.usage_ledger(&query)? {
            crate::plane::UsageLedger::Hours(rows) => view::usage(&rows).json,
            crate::plane::UsageLedger::Totals(_, totals) => view::usage_totals(&totals).json,
        }))
    })
    .await
}

/// Whose quota `GET /admin/v1/quota` answers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaParams {
    subject: Option<String>,
    tenant: Option<String>,
}

/// What is left of a subject's or tenant's fleet-wide limits in the windows in force (every
/// counter's, fullest first, when neither is named).
pub(super) async fn quota(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(params): Query<QuotaParams>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let plane = authorize(&state, &headers, SCOPE_ADMIN_READ)?;
        let states = plane.quota_state(
            params.subject.as_deref(),
            params.tenant.as_deref(),
            (state.clock)(),
        )?;
        Ok(Json(view::quota(&states).json))
    })
    .await
}

/// A pull-mode Envoy in the fleet: what it runs, what it refused, when it last reported.
fn record_puller(state: &ServerState, report: &SyncReport, now: u64) {
    let mut status = ProxyStatus {
        cluster: "sync".to_string(),
        connected: true,
        last_seen: now,
        ..ProxyStatus::default()
    };
    if let Some(version) = &report.config_version {
        status.acked.insert("sync".into(), version.clone());
    }
    if let Some(refused) = &report.refused {
        status.nacked.insert(
            "sync".into(),
            NackedVersion {
                version: refused.version.clone(),
                error: refused.error.clone(),
            },
        );
    }
    if let Err(error) = state
        .plane
        .store()
        .put_proxy(&report.node, &state.replica, &status)
    {
        tracing::warn!(%error, "sync: the fleet record of {} was not written", report.node);
    }
}

#[cfg(test)]
mod tests;
