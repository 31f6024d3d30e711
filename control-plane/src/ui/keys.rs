//! The keys-and-tokens page: API keys (searchable, 50 a page) and recent tokens with what
//! each grants, its expiry, when it was last used and its status; create, revoke and rotate
//! an API key and revoke a token, each after a confirmation. A new key is shown once.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::{ago, blocking, confirm, confirmation, frame, ok, operator, when, writer, Refused};
use crate::model::ApiKeyRecord;
use crate::plane::{ApiKeyRequest, Revocation};
use crate::state::ServerState;

const PER_PAGE: usize = 50;
const TOKENS_SHOWN: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub(super) struct KeysQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: usize,
}

pub(super) async fn page(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(query): Query<KeysQuery>,
) -> Response {
    blocking(move || {
        let operator = operator(&state, &headers)?;
        let now = (state.clock)();
        let plane = &state.plane;
        let suspended: BTreeSet<String> = plane.revocations(now)?.subjects.into_iter().collect();
        let revoked_jtis: BTreeSet<String> = plane
            .revocations(now)?
            .jtis
            .into_iter()
            .map(|(jti, _)| jti)
            .collect();
        let needle = query.q.trim().to_lowercase();
        let mut keys: Vec<ApiKeyRecord> = plane
            .api_keys(None, None)?
            .into_iter()
            .filter(|k| {
                needle.is_empty()
                    || k.id.to_lowercase().contains(&needle)
                    || k.subject.to_lowercase().contains(&needle)
                    || k.tenant.as_deref().is_some_and(|t| t.to_lowercase().contains(&needle))
            })
            .collect();
        keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        let total = keys.len();
        let pages = total.div_ceil(PER_PAGE).max(1);
        let page = query.page.min(pages - 1);
        let shown: Vec<&ApiKeyRecord> = keys.iter().skip(page * PER_PAGE).take(PER_PAGE).collect();
        let mut last_used = Vec::with_capacity(shown.len());
        for key in &shown {
            last_used.push(plane.last_used(&key.id)?);
        }
        // Tokens of the last day: live ones and those that expired lately.
        let tokens = plane.recent_tokens(now.saturating_sub(86_400), TOKENS_SHOWN)?;
        let mut token_used = Vec::with_capacity(tokens.len());
        for (token, _) in &tokens {
            token_used.push(plane.last_used(&token.jti)?);
        }
        let key_status = |k: &ApiKeyRecord| -> &'static str {
            if k.revoked_at.is_some() {
                "revoked"
            } else if k.expires_at.is_some_and(|t| t <= now) {
                "expired"
            } else if suspended.contains(&k.subject) {
                "suspended"
            } else {
                "active"
            }
        };
        let body = html! {
            @if operator.can_write {
                details.panel {
                    summary { "Create an API key" }
                    form.grid method="post" action="/ui/keys" {
                        input type="hidden" name="csrf" value=(operator.csrf);
                        label { "Subject" input name="subject" required placeholder="team-a"; }
                        label { "Tenant" input name="tenant" placeholder="(none)"; }
                        label { "Scopes (space-separated)" input name="scopes" value="chat"; }
                        label { "Models (space-separated patterns; empty: none)" input name="models" value="*"; }
                        label { "Plan" input name="plan" placeholder="(default plan)"; }
                        label { "Expires in days" input name="expires_days" type="number" min="1" placeholder="(never)"; }
                        button type="submit" { "Create key" }
                    }
                }
            }
            h2 { "API keys " span.count { (total) } }
            form.filters method="get" action="/ui/keys" {
                input name="q" value=(query.q) placeholder="search id, subject, tenant";
                button type="submit" { "Search" }
            }
            table.list {
                thead { tr {
                    th { "Id" } th { "Subject" } th { "Tenant" } th { "Scopes" } th { "Models" }
                    th { "Plan" } th { "Expires" } th { "Last used" } th { "Status" } th {}
                } }
                tbody {
                    @for (key, used) in shown.iter().zip(&last_used) {
                        tr data-key=(key.id) {
                            td { code { (key.id) } }
                            td { (key.subject) }
                            td { (key.tenant.as_deref().unwrap_or("—")) }
                            td { (key.scopes.join(" ")) }
                            td { @if key.models.is_empty() { "none" } @else { (key.models.join(" ")) } }
                            td { (key.plan.as_deref().unwrap_or("default")) }
                            td { (key.expires_at.map_or("never".to_string(), when)) }
                            td { (used.map_or("never".to_string(), |h| format!("hour of {}", when(h)))) }
                            td { span class={ "status " (key_status(key)) } { (key_status(key)) } }
                            td.actions {
                                @if operator.can_write && key_status(key) != "revoked" && key_status(key) != "expired" {
                                    a href={ "/ui/keys/rotate?id=" (key.id) } { "Rotate" }
                                    " "
                                    a.danger href={ "/ui/keys/revoke?id=" (key.id) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                p.pager {
                    @if page > 0 { a href={ "/ui/keys?" (pager(page - 1, &query.q)) } { "← newer" } " " }
                    "page " (page + 1) " of " (pages)
                    @if page + 1 < pages { " " a href={ "/ui/keys?" (pager(page + 1, &query.q)) } { "older →" } }
                }
            }
            h2 { "Recent tokens" }
            table.list {
                thead { tr {
                    th { "Token id" } th { "Subject" } th { "Tenant" } th { "Scopes" } th { "Models" }
                    th { "Plan" } th { "Expires" } th { "Last used" } th { "Status" } th {}
                } }
                tbody {
                    @for ((token, grants), used) in tokens.iter().zip(&token_used) {
                        @let status = if revoked_jtis.contains(&token.jti) { "revoked" }
                            else if token.expires_at <= now { "expired" }
                            else if suspended.contains(&token.subject) { "suspended" }
                            else { "active" };
                        tr {
                            td { code { (token.jti) } }
                            td { (token.subject) }
                            td { (token.tenant.as_deref().unwrap_or("—")) }
                            td { (grants.scopes.join(" ")) }
                            td { (grants.models.as_ref().map_or("none".to_string(), |m| m.join(" "))) }
                            td { (grants.plan.as_deref().unwrap_or("default")) }
                            td { (when(token.expires_at)) }
                            td { (used.map_or("never".to_string(), |h| format!("hour of {}", when(h)))) }
                            td { span class={ "status " (status) } { (status) } }
                            td.actions {
                                @if operator.can_write && status == "active" {
                                    a.danger href={ "/ui/tokens/revoke?jti=" (token.jti) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
            p.hint { "Tokens minted in the last day, newest first; " (ago(now.saturating_sub(86_400), now)) " is as far back as this list goes." }
        };
        Ok(ok(frame("Keys & tokens", Some(&operator), "keys", body)))
    })
    .await
}

/// The query string of another page of the same search (`q` encoded: a search for `a&page=9`
/// or `#` stays the search it was).
fn pager(page: usize, q: &str) -> String {
    serde_urlencoded::to_string([("page", page.to_string().as_str()), ("q", q)]).unwrap_or_default()
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateForm {
    csrf: String,
    subject: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    expires_days: String,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn optional(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

pub(super) async fn create(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Form(form): Form<CreateForm>,
) -> Response {
    blocking(move || {
        let (operator, plane) = writer(&state, &headers, &form.csrf)?;
        let now = (state.clock)();
        let expires_at = match form.expires_days.trim() {
            "" => None,
            days => Some(
                days.parse::<u64>()
                    .ok()
                    .filter(|d| (1..=3650).contains(d))
                    .map(|d| now + d * 86_400)
                    .ok_or_else(|| {
                        Refused::from(crate::plane::PlaneError::Invalid(
                            "expires in days: a whole number from 1 to 3650".into(),
                        ))
                    })?,
            ),
        };
        let created = plane.create_api_key(
            &ApiKeyRequest {
                subject: form.subject.trim().to_string(),
                tenant: optional(&form.tenant),
                scopes: words(&form.scopes),
                models: words(&form.models),
                plan: optional(&form.plan),
                expires_at,
            },
            now,
        )?;
        Ok(shown_once(&operator, "API key created", &created))
    })
    .await
}

/// The page that shows a new key, the only time it is shown.
fn shown_once(
    operator: &crate::plane::dashboard::Operator,
    title: &str,
    created: &crate::plane::CreatedApiKey,
) -> Response {
    ok(frame(
        title,
        Some(operator),
        "keys",
        html! {
            div.created {
                p { "Key " code { (created.id) } " for " strong { (created.record.subject) } ". Copy it now: it is not shown again and the control plane keeps only its hash." }
                input #new-key .secret readonly value=(created.key);
                p { a href="/ui/keys" { "Back to keys" } }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct KeyTarget {
    id: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct KeyAction {
    csrf: String,
    id: String,
}

pub(super) async fn confirm_revoke(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(target): Query<KeyTarget>,
) -> Response {
    confirmation(state, headers, move |operator| {
        confirm(
            operator,
            "keys",
            "Revoke an API key",
            html! { "Revoke " code { (target.id) } "? Every Envoy refuses it within a second, and the tokens it was exchanged for too. This cannot be undone." },
            "/ui/keys/revoke",
            &[("id", &target.id)],
            "Revoke key",
        )
    })
    .await
}

pub(super) async fn revoke(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Form(form): Form<KeyAction>,
) -> Response {
    revoke_then_back(state, headers, form.csrf, Revocation::ApiKey(form.id)).await
}

/// A revocation posted from the keys page (a key or a token), then back to that page.
async fn revoke_then_back(
    state: Arc<ServerState>,
    headers: HeaderMap,
    csrf: String,
    revocation: Revocation,
) -> Response {
    blocking(move || {
        let (_, plane) = writer(&state, &headers, &csrf)?;
        plane.revoke(&revocation, (state.clock)())?;
        Ok(axum::response::Redirect::to("/ui/keys").into_response())
    })
    .await
}

pub(super) async fn confirm_rotate(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(target): Query<KeyTarget>,
) -> Response {
    confirmation(state, headers, move |operator| {
        confirm(
            operator,
            "keys",
            "Rotate an API key",
            html! { "Rotate " code { (target.id) } "? A new key with the same subject, scopes, models, plan and expiry is made and shown once; the old one is revoked at once." },
            "/ui/keys/rotate",
            &[("id", &target.id)],
            "Rotate key",
        )
    })
    .await
}

pub(super) async fn rotate(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Form(form): Form<KeyAction>,
) -> Response {
    blocking(move || {
        let (operator, plane) = writer(&state, &headers, &form.csrf)?;
        let created = plane.rotate_api_key(&form.id, (state.clock)())?;
        Ok(shown_once(&operator, "API key rotated", &created))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenTarget {
    jti: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenAction {
    csrf: String,
    jti: String,
}

pub(super) async fn confirm_revoke_token(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(target): Query<TokenTarget>,
) -> Response {
    confirmation(state, headers, move |operator| {
        confirm(
            operator,
            "keys",
            "Revoke a token",
            html! { "Revoke the token " code { (target.jti) } "? Every Envoy refuses it within a second." },
            "/ui/tokens/revoke",
            &[("jti", &target.jti)],
            "Revoke token",
        )
    })
    .await
}

pub(super) async fn revoke_token(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Form(form): Form<TokenAction>,
) -> Response {
    let revocation = Revocation::Jti {
        jti: form.jti,
        expires_at: None,
    };
    revoke_then_back(state, headers, form.csrf, revocation).await
}
