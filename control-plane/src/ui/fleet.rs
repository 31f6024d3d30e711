//! The fleet page (each Envoy: what it runs per resource, what it refused and why, when it
//! was last seen) and the signing keys with their lifecycle and a rotation.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;

use super::{ago, blocking, confirm, confirmation, frame, ok, operator, when, writer, CsrfForm};
use crate::model::KeyState;
use crate::state::{ServerState, PROXY_STALE_AFTER};

pub(super) async fn page(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    blocking(move || {
        let operator = operator(&state, &headers)?;
        let now = (state.clock)();
        let current = state.synced.borrow().as_ref().map(|c| c.version.clone());
        let published = state
            .published
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let mut fleet = state.fleet();
        fleet.sort_by(|a, b| a.node.cmp(&b.node));
        let body = html! {
            @if let Some(version) = &current {
                p.hint { "Configuration in force: " code { (version) } }
            }
            table.list id="fleet" {
                thead { tr {
                    th { "Envoy (node)" } th { "Channel" } th { "Replica" } th { "Runs" }
                    th { "Refused (NACK)" } th { "Last seen" } th { "Status" }
                } }
                tbody {
                    @for proxy in &fleet {
                        @let s = &proxy.status;
                        @let lag = now.saturating_sub(s.last_seen);
                        // An ADS Envoy runs what this replica serves, type by type; a pull-mode
                        // one reports the configuration's own version.
                        @let up_to_date = if s.cluster == "sync" {
                            current.as_ref().is_none_or(|v| s.acked.values().any(|a| a == v))
                        } else {
                            s.acked.iter().all(|(kind, v)| published.get(kind).is_none_or(|p| p == v))
                        };
                        @let status = if !s.connected || lag > PROXY_STALE_AFTER { "disconnected" }
                            else if !s.nacked.is_empty() { "refusing" }
                            else if !up_to_date { "behind" }
                            else { "in sync" };
                        tr {
                            td { code { (proxy.node) } }
                            td { (if s.cluster == "sync" { "sync channel (pull)" } else { "ADS" }) }
                            td { (proxy.replica) }
                            td {
                                @for (kind, version) in &s.acked {
                                    div { span.muted { (short_type(kind)) } " " code { (version) } }
                                }
                            }
                            td {
                                @for (kind, nack) in &s.nacked {
                                    div.error { span.muted { (short_type(kind)) } " " code { (nack.version) } ": " (nack.error) }
                                }
                            }
                            td { (ago(s.last_seen, now)) " (" (when(s.last_seen)) ")" }
                            td { span class={ "status " (status.replace(' ', "-")) } { (status) } }
                        }
                    }
                    @if fleet.is_empty() { tr { td colspan="7" { "No Envoy has connected or reported yet." } } }
                }
            }
            p.hint { "Last seen: the last ADS message or heartbeat, or the last report of a pull-mode Envoy; an Envoy silent for " (PROXY_STALE_AFTER) " s shows disconnected." }
        };
        Ok(ok(frame("Fleet", Some(&operator), "fleet", body)))
    })
    .await
}

/// `type.googleapis.com/envoy.config.cluster.v3.Cluster` → `Cluster`.
fn short_type(kind: &str) -> &str {
    kind.rsplit(['.', '/']).next().unwrap_or(kind)
}

pub(super) async fn signing_keys(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Response {
    blocking(move || {
        let operator = operator(&state, &headers)?;
        let now = (state.clock)();
        let mut keys = state.plane.key_states(now)?;
        keys.sort_by_key(|k| std::cmp::Reverse(k.0.created_at));
        let revoked = state.plane.revocations(now)?.key_ids;
        let body = html! {
            @if operator.can_write {
                p { a.button href="/ui/signing-keys/rotate" { "Rotate the signing key" } }
            }
            table.list id="signing-keys" {
                thead { tr { th { "Key id" } th { "Algorithm" } th { "State" } th { "Created" } th { "Signs from" } th { "Retired" } th { "Published until" } } }
                tbody {
                    @for (key, key_state) in &keys {
                        @let name = if revoked.contains(&key.kid) { "revoked" } else { state_name(*key_state) };
                        tr {
                            td { code { (key.kid) } }
                            td { (key.alg.as_str()) }
                            td { span class={ "status " (name) } { (name) } }
                            td { (when(key.created_at)) }
                            td { (when(key.activate_at)) }
                            td { (key.retired_at.map_or("—".to_string(), when)) }
                            td { (key.publish_until.map_or("—".to_string(), when)) }
                        }
                    }
                }
            }
            p.hint { "A new key is published before it signs (announced), signs (active), then stays published until every token it signed has expired (retired), and is then removed." }
        };
        Ok(ok(frame("Signing keys", Some(&operator), "signing-keys", body)))
    })
    .await
}

fn state_name(state: KeyState) -> &'static str {
    match state {
        KeyState::Announced => "announced",
        KeyState::Active => "active",
        KeyState::Retired => "retired",
        KeyState::Removed => "removed",
    }
}

pub(super) async fn confirm_rotate_signing_key(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Response {
    confirmation(state, headers, move |operator| {
        confirm(
            operator,
            "signing-keys",
            "Rotate the signing key",
            html! { "Make a new signing key? It is published now and signs once every Envoy has had time to learn it (the key overlap setting); the current key retires then and stays published until its tokens expire." },
            "/ui/signing-keys/rotate",
            &[],
            "Rotate",
        )
    })
    .await
}

pub(super) async fn rotate_signing_key(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    blocking(move || {
        let (_, plane) = writer(&state, &headers, &form.csrf)?;
        let now = (state.clock)();
        let alg = plane
            .key_states(now)?
            .into_iter()
            .max_by_key(|(k, _)| k.created_at)
            .map_or(crate::model::Alg::EdDSA, |(k, _)| k.alg);
        plane.rotate_key(alg, None, now)?;
        Ok(Redirect::to("/ui/signing-keys").into_response())
    })
    .await
}
