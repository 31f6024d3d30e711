//! One view per resource: the JSON the admin API answers (and the CLI prints with `-o json`)
//! and the text the CLI prints, built in one place so the two never drift apart.

use serde_json::{json, Value};
use tokenward_filter::config::CredentialSource;

use crate::model::{AuditEntry, Availability, KeyState, SigningKeyRecord};
use crate::plane::{CreatedApiKey, MintedToken, ProviderListing, Removed, Revocation};

/// What one operation shows: as JSON, and as text for a terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub json: Value,
    pub text: String,
}

impl View {
    fn new(json: Value, text: impl Into<String>) -> View {
        View {
            json,
            text: text.into(),
        }
    }
}

/// Signing keys and where each is in its life.
pub fn signing_keys(keys: &[(SigningKeyRecord, KeyState)]) -> View {
    let rows = keys
        .iter()
        .map(|(k, s)| json!({"kid": k.kid, "alg": k.alg.as_str(), "state": s, "activate_at": k.activate_at, "retired_at": k.retired_at, "publish_until": k.publish_until}))
        .collect();
    let text = keys
        .iter()
        .map(|(k, s)| format!("{}  {}  {:?}", k.kid, k.alg.as_str(), s))
        .collect::<Vec<_>>()
        .join("\n");
    View::new(Value::Array(rows), text)
}

/// A key rotated in: published now, signing from `activate_at`.
pub fn rotated(key: &SigningKeyRecord) -> View {
    View::new(
        json!({"kid": key.kid, "activate_at": key.activate_at}),
        format!(
            "new key {}: published now, signing from {}",
            key.kid, key.activate_at
        ),
    )
}

pub fn minted(token: &MintedToken) -> View {
    View::new(
        serde_json::to_value(token).unwrap_or_default(),
        token.token.clone(),
    )
}

/// A new API key: shown this once.
pub fn api_key_created(created: &CreatedApiKey) -> View {
    View::new(
        json!({"id": created.id, "key": created.key}),
        format!(
            "{}\n(id {}; the key is shown only now)",
            created.key, created.id
        ),
    )
}

/// A revocation, with how many credentials this control plane knows it reached.
pub fn revoked(what: &Revocation, count: usize) -> View {
    let text = match what {
        Revocation::Jti { jti, .. } if count == 0 => format!(
            "jti {jti} revoked: no token minted here carries it; any that does is refused until it expires"
        ),
        Revocation::Jti { jti, .. } => format!("token {jti} revoked"),
        Revocation::Subject(subject) => format!(
            "subject {subject} revoked: {count} credentials now, and every credential of it from now on (until `tokenward token unrevoke --subject {subject}`)"
        ),
        Revocation::Tenant(tenant) => {
            format!("tenant {tenant} revoked: {count} credentials that exist now")
        }
        Revocation::ApiKey(id) => format!("API key {id} revoked"),
        Revocation::Key(kid) => {
            format!("signing key {kid} revoked: every token it signed is refused")
        }
    };
    View::new(
        json!({"revoked": count}),
        format!("{text}. A running `tokenward serve` pushes it to its Envoys within a second; an Envoy configured from a file needs `tokenward config render` again."),
    )
}

/// A subject's revocation lifted.
pub fn unrevoked(subject: &str) -> View {
    View::new(
        json!({"unrevoked": {"subject": subject}}),
        format!("subject {subject} is no longer revoked: its new credentials work; API keys revoked with it stay revoked"),
    )
}

/// A catalog entry removed, and what a forced removal took with it.
pub fn removal(kind: &str, name: &str, gone: &Removed) -> View {
    let mut text = format!("{kind} {name} removed");
    if !gone.routes.is_empty() {
        text.push_str(&format!(", with routes {}", gone.routes.join(", ")));
    }
    if !gone.revoked_api_keys.is_empty() {
        text.push_str(&format!(
            ", API keys revoked: {}",
            gone.revoked_api_keys.join(", ")
        ));
    }
    View::new(
        json!({
            "removed": {"kind": kind, "name": name},
            "routes": gone.routes,
            "revoked_api_keys": gone.revoked_api_keys,
        }),
        text,
    )
}

/// Every provider with where its credential comes from (never the credential) and whether it
/// can carry traffic: `status` `available`, `unavailable` (with `reason`, and the Envoys that
/// report so in `unavailable_in`) or `unknown`.
pub fn providers(listing: &[ProviderListing]) -> View {
    let rows = listing.iter().map(provider).collect();
    let text = listing
        .iter()
        .map(|p| {
            let credential = match (&p.stored.config.credential, &p.stored.credential_sealed) {
                (_, Some(_)) => "sealed".to_string(),
                (CredentialSource::Env(var), None) => format!("env {var}"),
                (CredentialSource::Inline(_), None) => "inline".to_string(),
            };
            let mut line = format!(
                "{}  {}  {credential}  ",
                p.stored.config.name, p.stored.config.authority
            );
            match &p.availability {
                Availability::Available => line.push_str("available"),
                Availability::Unavailable { reason } => {
                    line.push_str(&format!("unavailable: {reason}"));
                }
                Availability::Unknown { reason } => line.push_str(&format!("unknown: {reason}")),
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n");
    View::new(Value::Array(rows), text)
}

/// One provider's entry (what `PUT /admin/v1/providers/{name}` answers, too).
pub fn provider(p: &ProviderListing) -> Value {
    let config = &p.stored.config;
    let credential = match (&config.credential, &p.stored.credential_sealed) {
        (_, Some(_)) => json!({"sealed": true}),
        (CredentialSource::Env(var), None) => json!({"env": var}),
        (CredentialSource::Inline(_), None) => json!({"inline": true}),
    };
    let mut entry = json!({
        "name": config.name,
        "style": config.style,
        "cluster": config.cluster,
        "authority": config.authority,
        "credential": credential,
        "headers": config.headers,
    });
    if let (Some(map), Ok(Value::Object(status))) =
        (entry.as_object_mut(), serde_json::to_value(&p.availability))
    {
        map.extend(status);
        if !p.unavailable_in.is_empty() {
            map.insert("unavailable_in".into(), json!(p.unavailable_in));
        }
    }
    entry
}

/// The newest audit entries.
pub fn audit(entries: &[AuditEntry]) -> View {
    let text = entries
        .iter()
        .map(|e| {
            format!(
                "{}  {}  {}  {}  {}",
                e.at, e.actor, e.action, e.target, e.detail
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    View::new(serde_json::to_value(entries).unwrap_or_default(), text)
}
