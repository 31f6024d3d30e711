//! The dashboard (docs/dashboard.md): HTML pages under `/ui/` on the admin API's listener,
//! rendered on the server (maud escapes every value), with no script and no asset from
//! elsewhere. An operator signs in with an admin credential; the session cookie is HttpOnly,
//! SameSite=Strict, Secure and `__Host-` under TLS, and every form that changes something carries the
//! session's CSRF token and needs `admin:write`. Pages read through `ControlPlane`, as the
//! admin API does; nothing here runs SQL.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

use crate::plane::dashboard::{Operator, SessionError};
use crate::state::{Plane, ServerState};

mod chart;
mod fleet;
mod keys;
mod logs;
mod usage;

/// The session cookie's name over plain HTTP (a loopback listener).
const COOKIE: &str = "tokenward_session";
/// Its name under TLS: a browser takes a `__Host-` cookie only from this host itself, Secure,
/// with `Path=/` and no `Domain`, so a neighbouring host cannot plant one (cookie tossing).
const COOKIE_TLS: &str = "__Host-tokenward_session";
/// What a page may load: its own stylesheet, nothing else; no script at all.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/keys") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/keys") }))
        .route("/ui/assets/style.css", get(style))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/keys", get(keys::page).post(keys::create))
        .route(
            "/ui/keys/revoke",
            get(keys::confirm_revoke).post(keys::revoke),
        )
        .route(
            "/ui/keys/rotate",
            get(keys::confirm_rotate).post(keys::rotate),
        )
        .route(
            "/ui/tokens/revoke",
            get(keys::confirm_revoke_token).post(keys::revoke_token),
        )
        .route("/ui/usage", get(usage::page))
        .route("/ui/usage.csv", get(usage::csv))
        .route("/ui/fleet", get(fleet::page))
        .route("/ui/signing-keys", get(fleet::signing_keys))
        .route(
            "/ui/signing-keys/rotate",
            get(fleet::confirm_rotate_signing_key).post(fleet::rotate_signing_key),
        )
        .route("/ui/audit", get(logs::audit))
        .route("/ui/alerts", get(logs::alerts))
        .route(
            "/ui/subjects/lift",
            get(logs::confirm_lift).post(logs::lift),
        )
        .with_state(state)
        .layer(axum::middleware::from_fn(security_headers))
}

/// Whether the admin API's listener serves TLS: the cookie is then Secure.
pub fn cookie_secure(state: &ServerState) -> bool {
    state.tls.load(std::sync::atomic::Ordering::Relaxed)
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // Not no-referrer: under it a browser sends `Origin: null` with the pages' own forms,
    // and the origin check of `writer` could no longer tell them from a sandboxed frame's.
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("ui/style.css"),
    )
        .into_response()
}

/// What a page answers instead of itself: the sign-in page, a refusal, an error page.
pub(crate) struct Refused(Box<Response>);

impl Refused {
    pub(crate) fn new(response: Response) -> Self {
        Refused(Box::new(response))
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<crate::plane::PlaneError> for Refused {
    fn from(error: crate::plane::PlaneError) -> Self {
        use crate::plane::PlaneError;
        let status = match &error {
            PlaneError::Invalid(_) | PlaneError::Rejected(_) => StatusCode::BAD_REQUEST,
            PlaneError::NotFound(_) => StatusCode::NOT_FOUND,
            PlaneError::InUse(_)
            | PlaneError::NotInitialised
            | PlaneError::AlreadyInitialised
            | PlaneError::NoActiveKey => StatusCode::CONFLICT,
            PlaneError::Store(_) | PlaneError::Crypto(_) | PlaneError::Signing(_) => {
                tracing::error!(%error, "dashboard: the request failed");
                return Refused::new(message_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "the control plane could not complete the request; its log says why",
                ));
            }
        };
        Refused::new(message_page(status, "Not done", &error.to_string()))
    }
}

/// A page that says one thing, with a way back.
pub(crate) fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = html! {
        p.notice { (message) }
        p { a href="/ui/keys" { "Back to the dashboard" } }
    };
    (status, ok(frame(title, None, "", body))).into_response()
}

/// The signed-in operator of the request, or the sign-in page.
pub(crate) fn operator(state: &ServerState, headers: &HeaderMap) -> Result<Operator, Refused> {
    let to_login = || Refused::new(Redirect::to("/ui/login").into_response());
    let id = session_cookie(headers, cookie_secure(state)).ok_or_else(to_login)?;
    state
        .plane
        .session(&id, (state.clock)())
        .map_err(|_| to_login())
}

/// The operator, allowed to change things: `admin:write`, and a form of this session (its
/// CSRF token; and, when the browser says where the form came from, this origin).
pub(crate) fn writer(
    state: &ServerState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<(Operator, Plane), Refused> {
    let operator = operator(state, headers)?;
    if !constant_time_eq(csrf.as_bytes(), operator.csrf.as_bytes()) || !same_origin(headers) {
        return Err(Refused::new(message_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "this form did not come from a page of your session; reload the page and try again",
        )));
    }
    if !operator.can_write {
        return Err(Refused::new(message_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "your credential may only look (admin:read); acting needs admin:write",
        )));
    }
    // As every admin API write: the xDS loop renders at least once after it.
    state
        .changed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let plane = state.plane.acting_as(operator.identity.subject());
    Ok((operator, plane))
}

/// Whether a form came from this host, as far as the browser says (`Origin`; `null` is not).
fn same_origin(headers: &HeaderMap) -> bool {
    match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://").map(|(_, rest)| rest))
            .is_some_and(|o| Some(o) == host.to_str().ok()),
        _ => true,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session id the request's cookie carries. A request with two cookies of that name is
/// not signed in: one of them was planted (set for a parent domain or a longer path, it comes
/// first or last depending on the browser), and which one the operator's is cannot be told.
fn session_cookie(headers: &HeaderMap, secure: bool) -> Option<String> {
    let name = if secure { COOKIE_TLS } else { COOKIE };
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Some(value.to_string()).filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that holds `id` for `max_age` seconds (an empty id and 0: the
/// cookie is cleared).
fn session_set_cookie(id: &str, max_age: u64, secure: bool) -> String {
    if secure {
        format!("{COOKIE_TLS}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}; Secure")
    } else {
        format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}")
    }
}

/// Runs a page's work on the blocking pool (the store is synchronous).
pub(crate) async fn blocking(
    work: impl FnOnce() -> Result<Response, Refused> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(response)) => response,
        Ok(Err(refused)) => *refused.0,
        Err(_) => message_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "the control plane could not complete the request",
        ),
    }
}

/// The page around a body: header with navigation and who is signed in.
pub(crate) fn frame(
    title: &str,
    operator: Option<&Operator>,
    active: &str,
    body: Markup,
) -> Markup {
    const NAV: &[(&str, &str)] = &[
        ("keys", "Keys & tokens"),
        ("usage", "Usage"),
        ("fleet", "Fleet"),
        ("signing-keys", "Signing keys"),
        ("audit", "Audit log"),
        ("alerts", "Alerts"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "tokenward · " (title) }
                link rel="stylesheet" href="/ui/assets/style.css";
            }
            body {
                header.top {
                    a.brand href="/ui/keys" { "tokenward" }
                    @if let Some(op) = operator {
                        nav {
                            @for (path, name) in NAV {
                                a href={ "/ui/" (path) } class=[(active == *path).then_some("active")] { (name) }
                            }
                        }
                        div.who {
                            span { (op.identity.subject()) }
                            span.badge { @if op.can_write { "admin:write" } @else { "admin:read" } }
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(op.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page answer.
pub(crate) fn ok(markup: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A confirmation page's answer: `page` drawn for the signed-in operator.
pub(crate) async fn confirmation(
    state: Arc<ServerState>,
    headers: HeaderMap,
    page: impl FnOnce(&Operator) -> Response + Send + 'static,
) -> Response {
    blocking(move || Ok(page(&operator(&state, &headers)?))).await
}

/// A form that asks before it acts: what will happen, and one button.
pub(crate) fn confirm(
    operator: &Operator,
    active: &str,
    title: &str,
    question: Markup,
    action: &str,
    fields: &[(&str, &str)],
    button: &str,
) -> Response {
    ok(frame(
        title,
        Some(operator),
        active,
        html! {
            div.confirm {
                p { (question) }
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(operator.csrf);
                    @for (name, value) in fields {
                        input type="hidden" name=(name) value=(value);
                    }
                    button.danger type="submit" { (button) }
                    " "
                    a href={ "/ui/" (active) } { "Cancel" }
                }
            }
        },
    ))
}

/// Unix seconds as UTC, to the minute.
pub(crate) fn when(at: u64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(at.min(253_402_300_799) as i64) else {
        return at.to_string();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// How long ago `at` was, roughly.
pub(crate) fn ago(at: u64, now: u64) -> String {
    let d = now.saturating_sub(at);
    match d {
        0..=59 => format!("{d} s ago"),
        60..=3599 => format!("{} min ago", d / 60),
        3600..=86_399 => format!("{} h ago", d / 3600),
        _ => format!("{} d ago", d / 86_400),
    }
}

/// Micro-dollars as dollars.
pub(crate) fn dollars(micro: u64) -> String {
    format!("${}.{:04}", micro / 1_000_000, (micro % 1_000_000) / 100)
}

async fn login_page(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let signed_in = blocking(move || {
        operator(&state, &headers)?;
        Ok(Redirect::to("/ui/keys").into_response())
    })
    .await;
    if signed_in.status().is_redirection()
        && signed_in
            .headers()
            .get(header::LOCATION)
            .is_some_and(|l| l == "/ui/keys")
    {
        return signed_in;
    }
    ok(login_form(None))
}

fn login_form(error: Option<&str>) -> Markup {
    frame(
        "Sign in",
        None,
        "",
        html! {
            form.login method="post" action="/ui/login" {
                @if let Some(error) = error { p.error { (error) } }
                label for="credential" { "Admin credential (API key or token with admin:read or admin:write)" }
                input id="credential" type="password" name="credential" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
            p.hint { "Create one with " code { "tokenward apikey create --subject you --scope admin:read --scope admin:write" } "." }
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    credential: String,
}

async fn login(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // Another site's form must not sign a browser in under the attacker's credential.
    if !same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            ok(login_form(Some("this sign-in did not come from this page"))),
        )
            .into_response();
    }
    let secure = cookie_secure(&state);
    blocking(move || {
        let now = (state.clock)();
        // The browser's earlier session, if it still has one: a new sign-in replaces it.
        let previous = session_cookie(&headers, secure);
        match state
            .plane
            .sign_in(form.credential.trim(), previous.as_deref(), now)
        {
            Ok((id, operator)) => {
                let max_age = operator.expires_at.saturating_sub(now);
                let cookie = session_set_cookie(&id, max_age, secure);
                let mut response = Redirect::to("/ui/keys").into_response();
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().insert(header::SET_COOKIE, value);
                }
                Ok(response)
            }
            Err(error) => {
                // Logged for whoever watches for guessing; never the credential itself. A
                // valid credential without an admin scope reads as an invalid one to the
                // browser: the page must not confirm that a guessed key exists.
                let reason = match &error {
                    SessionError::NotAnAdmin => "the credential carries no admin scope",
                    SessionError::Refused(crate::plane::AuthError::Plane(error)) => {
                        tracing::error!(%error, "dashboard: sign-in failed");
                        return Ok((
                            StatusCode::INTERNAL_SERVER_ERROR,
                            ok(login_form(Some(
                                "the control plane could not check the credential; its log says why",
                            ))),
                        )
                            .into_response());
                    }
                    SessionError::Ended | SessionError::Refused(_) => {
                        "the credential is unknown, expired or revoked"
                    }
                };
                tracing::warn!(
                    reason,
                    origin = ?headers.get(header::ORIGIN),
                    "dashboard: a sign-in was refused"
                );
                Ok((
                    StatusCode::UNAUTHORIZED,
                    ok(login_form(Some(
                        "this credential is not valid (unknown, expired or revoked) or not an admin credential",
                    ))),
                )
                    .into_response())
            }
        }
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let secure = cookie_secure(&state);
    blocking(move || {
        let operator = operator(&state, &headers)?;
        if !constant_time_eq(form.csrf.as_bytes(), operator.csrf.as_bytes()) {
            return Err(Refused::new(message_page(
                StatusCode::FORBIDDEN,
                "Refused",
                "this form did not come from a page of your session",
            )));
        }
        if let Some(id) = session_cookie(&headers, secure) {
            state
                .plane
                .acting_as(operator.identity.subject())
                .sign_out(&id, (state.clock)())?;
        }
        let mut response = Redirect::to("/ui/login").into_response();
        if let Ok(value) = HeaderValue::from_str(&session_set_cookie("", 0, secure)) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        Ok(response)
    })
    .await
}

/// Markup already escaped (an SVG chart built here).
pub(crate) fn raw(text: String) -> PreEscaped<String> {
    PreEscaped(text)
}

#[cfg(test)]
mod tests;
