//! The usage page: requests, tokens and cost over time (a bar per hour), summed by subject,
//! tenant, credential, model or provider, narrowed by any of them; budget bars of the fleet's
//! counters (used against the limit, when the window resets); and the ledger as CSV.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{blocking, chart, dollars, frame, ok, operator, raw, when};
use crate::plane::{UsageGroup, UsageQuery};
use crate::state::ServerState;
use crate::store::UsageSums;

/// The most values a grouping shows.
const TOP: usize = 50;
/// The most budget bars shown (fullest first).
const BUDGETS: usize = 25;

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct UsageParams {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    by: Option<UsageGroup>,
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    credential: Option<String>,
}

/// The periods the page offers, in hours.
const PERIODS: &[(&str, u64)] = &[("24h", 24), ("7d", 7 * 24), ("30d", 30 * 24)];
const METRICS: &[&str] = &["tokens", "requests", "cost"];
const GROUPS: &[(UsageGroup, &str)] = &[
    (UsageGroup::Subject, "subject"),
    (UsageGroup::Tenant, "tenant"),
    (UsageGroup::Credential, "credential"),
    (UsageGroup::Model, "model"),
    (UsageGroup::Provider, "provider"),
];

impl UsageParams {
    fn hours(&self) -> u64 {
        PERIODS
            .iter()
            .find(|(name, _)| Some(*name) == self.since.as_deref())
            .map_or(24, |(_, hours)| *hours)
    }

    fn metric(&self) -> &'static str {
        METRICS
            .iter()
            .find(|m| Some(**m) == self.metric.as_deref())
            .copied()
            .unwrap_or("tokens")
    }

    fn query(&self, now: u64) -> UsageQuery {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let this_hour = now - now % 3600;
        UsageQuery {
            since: this_hour.saturating_sub((self.hours() - 1) * 3600),
            subject: given(&self.subject),
            tenant: given(&self.tenant),
            credential: given(&self.credential),
            model: given(&self.model),
            provider: given(&self.provider),
            by: None,
        }
    }

    /// This page's query string with `name` set to `value`.
    fn with(&self, name: &str, value: &str) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let mut push = |n: &'static str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                pairs.push((n, v));
            }
        };
        push("since", self.since.clone());
        push("by", self.by.map(|b| group_name(b).to_string()));
        push("metric", self.metric.clone());
        push("subject", self.subject.clone());
        push("tenant", self.tenant.clone());
        push("model", self.model.clone());
        push("provider", self.provider.clone());
        push("credential", self.credential.clone());
        pairs.retain(|(n, _)| *n != name);
        pairs.push((name, value.to_string()));
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }
}

fn group_name(by: UsageGroup) -> &'static str {
    GROUPS
        .iter()
        .find(|(g, _)| *g == by)
        .map_or("subject", |(_, n)| n)
}

fn value_of(sums: &UsageSums, metric: &str) -> u64 {
    match metric {
        "requests" => sums.requests,
        "cost" => sums.cost_micro_usd,
        _ => sums.tokens(),
    }
}

fn shown(value: u64, metric: &str) -> String {
    match metric {
        "cost" => dollars(value),
        _ => value.to_string(),
    }
}

pub(super) async fn page(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(params): Query<UsageParams>,
) -> Response {
    blocking(move || {
        let operator = operator(&state, &headers)?;
        let now = (state.clock)();
        let plane = &state.plane;
        let query = params.query(now);
        let metric = params.metric();
        let by = params.by.unwrap_or_default();
        let series = plane.usage_series(&query, now)?;
        let top = plane.usage_top(&query, by, TOP, now)?;
        let mut total = UsageSums::default();
        for (_, sums) in &series {
            total.add(sums);
        }
        let points: Vec<(u64, u64)> = series
            .iter()
            .map(|(hour, sums)| (*hour, value_of(sums, metric)))
            .collect();
        let this_hour = now - now % 3600;
        let svg = chart::hourly_bars(&points, query.since, this_hour, metric, |v| {
            shown(v, metric)
        });
        let mut budgets = plane.quota_state(
            query.subject.as_deref(),
            query.tenant.as_deref(),
            now,
        )?;
        budgets.truncate(BUDGETS);
        let body = html! {
            form.filters method="get" action="/ui/usage" {
                label { "Period " select name="since" {
                    @for (name, hours) in PERIODS {
                        option value=(name) selected[*hours == params.hours()] { (name) }
                    }
                } }
                label { "Show " select name="metric" {
                    @for m in METRICS { option value=(m) selected[*m == metric] { (m) } }
                } }
                label { "Group by " select name="by" {
                    @for (g, name) in GROUPS { option value=(name) selected[*g == by] { (name) } }
                } }
                input name="subject" value=(params.subject.clone().unwrap_or_default()) placeholder="subject";
                input name="tenant" value=(params.tenant.clone().unwrap_or_default()) placeholder="tenant";
                input name="model" value=(params.model.clone().unwrap_or_default()) placeholder="model";
                input name="provider" value=(params.provider.clone().unwrap_or_default()) placeholder="provider";
                button type="submit" { "Show" }
                " "
                a.button href={ "/ui/usage.csv?" (params.with("metric", metric)) } { "Export CSV" }
            }
            div.totals {
                div { span.n id="total-requests" { (total.requests) } " requests" }
                div { span.n id="total-tokens" { (total.tokens()) } " tokens (" (total.input_tokens) " in, " (total.output_tokens) " out)" }
                div { span.n id="total-cost" { (dollars(total.cost_micro_usd)) } " cost" }
            }
            h2 { (metric) " per hour" }
            (raw(svg))
            h2 { "By " (group_name(by)) }
            table.list id="usage-by" {
                thead { tr { th { (group_name(by)) } th.num { "Requests" } th.num { "Input tokens" } th.num { "Output tokens" } th.num { "Cost" } } }
                tbody {
                    @for (value, sums) in &top {
                        tr {
                            td {
                                @match value {
                                    Some(v) => { a href={ "/ui/usage?" (params.with(group_name(by), v)) } { (v) } }
                                    None => { "(none)" }
                                }
                            }
                            td.num { (sums.requests) }
                            td.num { (sums.input_tokens) }
                            td.num { (sums.output_tokens) }
                            td.num { (dollars(sums.cost_micro_usd)) }
                        }
                    }
                    @if top.is_empty() { tr { td colspan="5" { "No usage reported in this period." } } }
                }
            }
            h2 { "Budgets in force" }
            @if budgets.is_empty() {
                p.hint { "No fleet-wide counter is in a window now (budgets show once Envoys report with a sync channel and a plan has limits)." }
            } @else {
                table.list {
                    thead { tr { th { "Who" } th { "Plan / limit" } th { "Used" } th {} th { "Resets" } } }
                    tbody {
                        @for b in &budgets {
                            tr {
                                td { (b.per) " " strong { (b.id) } }
                                td { (b.plan) " / " (b.limit) " (" (b.metric) ")" }
                                td.num { (b.used) " of " (b.limit_value) }
                                td { (raw(chart::budget_bar(b.used, b.limit_value))) }
                                td { (when(b.resets_at)) }
                            }
                        }
                    }
                }
            }
        };
        Ok(ok(frame("Usage", Some(&operator), "usage", body)))
    })
    .await
}

/// The ledger of the page's period and filters, an hour and key per line.
pub(super) async fn csv(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(params): Query<UsageParams>,
) -> Response {
    blocking(move || {
        operator(&state, &headers)?;
        let query = params.query((state.clock)());
        // The same CSV as `tokenward usage -o csv`.
        let out = crate::view::usage_csv(&state.plane.usage_ledger(&query)?);
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"tokenward-usage.csv\"",
                ),
            ],
            out,
        )
            .into_response())
    })
    .await
}
