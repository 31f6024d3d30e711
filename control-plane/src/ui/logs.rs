//! The audit log with filters, and the alerts: budget thresholds crossed, failed-
//! authentication bursts blocked, spend spikes — each with its webhook delivery — and the
//! subjects revoked, with a way to lift a suspension.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::{ago, blocking, confirm, confirmation, frame, ok, operator, when, writer};
use crate::state::ServerState;

/// How far back the audit page searches, and how many entries it shows.
const AUDIT_SEARCHED: usize = 5000;
const AUDIT_SHOWN: usize = 200;
const ALERTS_SHOWN: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditParams {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    q: String,
}

pub(super) async fn audit(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(params): Query<AuditParams>,
) -> Response {
    blocking(move || {
        let operator = operator(&state, &headers)?;
        let now = (state.clock)();
        let needle = params.q.trim().to_lowercase();
        let entries: Vec<_> = state
            .plane
            .store()
            .audit_log(AUDIT_SEARCHED)
            .map_err(crate::plane::PlaneError::from)?
            .into_iter()
            .filter(|e| params.action.is_empty() || e.action.starts_with(params.action.trim()))
            .filter(|e| params.actor.is_empty() || e.actor == params.actor.trim())
            .filter(|e| {
                needle.is_empty()
                    || e.target.to_lowercase().contains(&needle)
                    || e.detail.to_lowercase().contains(&needle)
            })
            .take(AUDIT_SHOWN)
            .collect();
        let body = html! {
            form.filters method="get" action="/ui/audit" {
                input name="action" value=(params.action) placeholder="action (prefix: revoke, apikey…)";
                input name="actor" value=(params.actor) placeholder="actor";
                input name="q" value=(params.q) placeholder="target or detail contains";
                button type="submit" { "Filter" }
            }
            table.list id="audit" {
                thead { tr { th { "When" } th { "Actor" } th { "Action" } th { "Target" } th { "Detail" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td title=(when(e.at)) { (ago(e.at, now)) }
                            td { (e.actor) }
                            td { code { (e.action) } }
                            td { (e.target) }
                            td { (e.detail) }
                        }
                    }
                    @if entries.is_empty() { tr { td colspan="5" { "Nothing matches." } } }
                }
            }
            p.hint { "The newest " (AUDIT_SHOWN) " matches among the last " (AUDIT_SEARCHED) " entries." }
        };
        Ok(ok(frame("Audit log", Some(&operator), "audit", body)))
    })
    .await
}

pub(super) async fn alerts(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    blocking(move || {
        let operator = operator(&state, &headers)?;
        let now = (state.clock)();
        let plane = &state.plane;
        let events = plane
            .store()
            .alert_events(ALERTS_SHOWN)
            .map_err(crate::plane::PlaneError::from)?;
        let rules = plane.alert_rules()?;
        let webhook = plane.alert_webhook()?.map(|w| w.url);
        let suspended = plane.revocations(now)?.subjects;
        let body = html! {
            h2 { "Revoked subjects" }
            @if suspended.is_empty() {
                p.hint { "No subject is revoked or suspended." }
            } @else {
                table.list id="suspended" {
                    thead { tr { th { "Subject" } th {} } }
                    tbody {
                        @for subject in &suspended {
                            tr {
                                td { (subject) }
                                td.actions { @if operator.can_write {
                                    a href={ "/ui/subjects/lift?" (serde_urlencoded::to_string([("subject", subject)]).unwrap_or_default()) } { "Lift" }
                                } }
                            }
                        }
                    }
                }
            }
            h2 { "Alerts" }
            table.list id="alerts" {
                thead { tr { th { "Fired" } th { "Kind" } th { "What" } th { "Delivery" } } }
                tbody {
                    @for event in &events {
                        @let body: serde_json::Value = serde_json::from_str(&event.body).unwrap_or_default();
                        @let kind = body["type"].as_str().unwrap_or("alert").trim_start_matches("tokenward.").to_string();
                        tr {
                            td title=(when(event.fired_at)) { (ago(event.fired_at, now)) }
                            td { span class={ "status " (kind) } { (kind.replace('_', " ")) } }
                            td { (summary(&kind, &body, &event.key)) }
                            td {
                                @if let Some(at) = event.delivered_at { "delivered " (ago(at, now)) }
                                @else if webhook.is_none() { "no webhook set" }
                                @else if event.attempts >= crate::store::ALERT_ATTEMPTS { "given up: " (event.last_error) }
                                @else { (event.attempts) " attempts" @if !event.last_error.is_empty() { ": " (event.last_error) } }
                            }
                        }
                    }
                    @if events.is_empty() { tr { td colspan="4" { "No alert has fired." } } }
                }
            }
            h2 { "Budget alert rules" }
            @if rules.is_empty() {
                p.hint { "None: " code { "tokenward alert set --plan team --limit tokens-per-day --at 80 --at 100" } }
            } @else {
                ul { @for r in &rules { li { (r.plan) " / " (r.limit) ": at " (r.thresholds.iter().map(|t| format!("{t}%")).collect::<Vec<_>>().join(", ")) } } }
            }
            p.hint { "Webhook: " @if let Some(url) = &webhook { code { (url) } } @else { "none (" code { "tokenward alert webhook --url …" } ")" } }
        };
        Ok(ok(frame("Alerts", Some(&operator), "alerts", body)))
    })
    .await
}

/// One line on what an alert says.
fn summary(kind: &str, body: &serde_json::Value, key: &str) -> String {
    let s = |name: &str| match &body[name] {
        serde_json::Value::String(v) => v.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    match kind {
        "budget_alert" => format!(
            "{} {}: {}% of {} / {} ({} of {})",
            s("per"),
            s("who"),
            s("threshold_percent"),
            s("plan"),
            s("limit"),
            s("used"),
            s("limit_value")
        ),
        "auth_block" => format!(
            "{} {} blocked after {} failed authentications (node {})",
            s("kind"),
            s("value"),
            s("failures"),
            s("node")
        ),
        "spend_spike" => format!(
            "credential {} of {}: {} per hour, {}× its baseline of {}; action: {}",
            s("credential"),
            s("subject"),
            s("rate"),
            s("multiple"),
            s("baseline"),
            s("action")
        ),
        _ => key.to_string(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct SubjectTarget {
    subject: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct SubjectAction {
    csrf: String,
    subject: String,
}

pub(super) async fn confirm_lift(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(target): Query<SubjectTarget>,
) -> Response {
    confirmation(state, headers, move |operator| {
        confirm(
            operator,
            "alerts",
            "Lift a revocation",
            html! { "Lift the revocation of " strong { (target.subject) } "? Its tokens are accepted again; API keys revoked one by one stay revoked." },
            "/ui/subjects/lift",
            &[("subject", &target.subject)],
            "Lift",
        )
    })
    .await
}

pub(super) async fn lift(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Form(form): Form<SubjectAction>,
) -> Response {
    blocking(move || {
        let (_, plane) = writer(&state, &headers, &form.csrf)?;
        plane.unrevoke_subject(&form.subject, (state.clock)())?;
        Ok(Redirect::to("/ui/alerts").into_response())
    })
    .await
}
