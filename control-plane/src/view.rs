//! One view per resource: the JSON the admin API answers (and the CLI prints with `-o json`)
//! and the text the CLI prints, built in one place so the two never drift apart.

use serde_json::{json, Value};
use tokenward_filter::config::{CredentialSource, PlanConfig, PriceConfig, RouteConfig};

use crate::model::{
    ApiKeyRecord, AuditEntry, Availability, IssuedToken, KeyState, SigningKeyRecord,
};
use crate::plane::{
    CreatedApiKey, MintedToken, ProviderListing, Removed, Revocation, RevocationListing,
};

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

    /// The one entry of a list view of one entry.
    pub fn single(self) -> View {
        let json = match self.json {
            Value::Array(mut items) if items.len() == 1 => items.swap_remove(0),
            other => other,
        };
        View {
            json,
            text: self.text,
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
        .map(|(k, s)| {
            let mut line = format!(
                "{}  {}  {:?}  signing from {}",
                k.kid,
                k.alg.as_str(),
                s,
                rfc3339(k.activate_at)
            );
            if let Some(retired) = k.retired_at {
                line.push_str(&format!("  retired {}", rfc3339(retired)));
            }
            line
        })
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
            key.kid,
            rfc3339(key.activate_at)
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

/// A Unix time as RFC 3339 in UTC, for people (JSON keeps Unix seconds).
pub fn rfc3339(unix: u64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
    else {
        return unix.to_string();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// API keys, never their hashes: who they stand for, what they may do, and whether they work.
pub fn api_keys(keys: &[ApiKeyRecord], now: u64) -> View {
    let status = |k: &ApiKeyRecord| match (k.revoked_at, k.expires_at) {
        (Some(_), _) => "revoked",
        (None, Some(t)) if t <= now => "expired",
        _ => "active",
    };
    let rows = keys
        .iter()
        .map(|k| {
            json!({"id": k.id, "subject": k.subject, "tenant": k.tenant, "scopes": k.scopes,
                "models": k.models, "plan": k.plan, "created_at": k.created_at,
                "expires_at": k.expires_at, "revoked_at": k.revoked_at, "status": status(k)})
        })
        .collect();
    let text = keys
        .iter()
        .map(|k| {
            format!(
                "{}  {}  {}  scopes {}  {}  expires {}",
                k.id,
                k.subject,
                or_dash(k.tenant.as_deref()),
                if k.scopes.is_empty() {
                    "-".to_string()
                } else {
                    k.scopes.join(",")
                },
                status(k),
                k.expires_at.map_or("never".to_string(), rfc3339)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    View::new(Value::Array(rows), text)
}

/// Minted tokens still accepted.
pub fn tokens(tokens: &[IssuedToken]) -> View {
    let text = tokens
        .iter()
        .map(|t| {
            format!(
                "{}  {}  {}  key {}  issued {}  expires {}",
                t.jti,
                t.subject,
                or_dash(t.tenant.as_deref()),
                t.kid,
                rfc3339(t.issued_at),
                rfc3339(t.expires_at)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    View::new(serde_json::to_value(tokens).unwrap_or_default(), text)
}

/// What is revoked.
pub fn revocations(listing: &RevocationListing) -> View {
    let mut lines: Vec<String> = listing
        .jtis
        .iter()
        .map(|(jti, until)| format!("jti {jti}  kept until {}", rfc3339(*until)))
        .collect();
    lines.extend(listing.subjects.iter().map(|s| format!("subject {s}")));
    lines.extend(listing.key_ids.iter().map(|k| format!("signing key {k}")));
    View::new(
        json!({
            "jtis": listing.jtis.iter().map(|(jti, until)| json!({"jti": jti, "until": until})).collect::<Vec<_>>(),
            "subjects": listing.subjects,
            "key_ids": listing.key_ids,
        }),
        lines.join("\n"),
    )
}

pub fn routes(routes: &[RouteConfig]) -> View {
    let text = routes
        .iter()
        .map(|r| {
            let to = match &r.provider {
                Some(provider) => provider.clone(),
                None => r
                    .model_providers
                    .iter()
                    .map(|m| format!("{}={}", m.pattern, m.provider))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let methods = if r.methods.is_empty() {
                "any".to_string()
            } else {
                r.methods.join(",")
            };
            format!("{}  {}  {methods}  -> {to}", r.name, r.path_prefix)
        })
        .collect::<Vec<_>>()
        .join("\n");
    View::new(serde_json::to_value(routes).unwrap_or_default(), text)
}

pub fn plans(plans: &[(String, PlanConfig)], default_plan: Option<&str>) -> View {
    let text = plans
        .iter()
        .map(|(name, plan)| {
            let limits = plan
                .limits
                .iter()
                .map(|l| format!("{}={} {:?}/{:?}", l.name, l.limit, l.metric, l.window))
                .collect::<Vec<_>>()
                .join(", ");
            let default = if Some(name.as_str()) == default_plan {
                " (default)"
            } else {
                ""
            };
            let closed = if plan.unreachable == tokenward_filter::config::Unreachable::FailClosed {
                "  (fails closed without the control plane)"
            } else {
                ""
            };
            let headers = if plan.rate_limit_headers
                == tokenward_filter::config::RateLimitHeaders::NearLimit
            {
                "  (rate-limit headers near the limit only)"
            } else {
                ""
            };
            format!("{name}{default}  {limits}{closed}{headers}")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let map: serde_json::Map<String, Value> = plans
        .iter()
        .map(|(name, plan)| (name.clone(), serde_json::to_value(plan).unwrap_or_default()))
        .collect();
    View::new(json!({"plans": map, "default_plan": default_plan}), text)
}

/// Prices, shown in USD per million tokens (JSON: micro-USD per million, as configured).
pub fn prices(prices: &[PriceConfig]) -> View {
    let usd = |micro: u64| {
        let text = format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
        let text = text.trim_end_matches('0');
        text.strip_suffix('.').unwrap_or(text).to_string()
    };
    let text = prices
        .iter()
        .map(|p| {
            let cached = p
                .cached_input
                .map_or(String::new(), |c| format!("  cached input ${}", usd(c)));
            format!(
                "{}  input ${}  output ${}{cached}  per million tokens",
                p.model,
                usd(p.input),
                usd(p.output)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    View::new(serde_json::to_value(prices).unwrap_or_default(), text)
}

/// The newest audit entries.
pub fn audit(entries: &[AuditEntry]) -> View {
    let text = entries
        .iter()
        .map(|e| {
            format!(
                "{}  {}  {}  {}  {}",
                rfc3339(e.at),
                e.actor,
                e.action,
                e.target,
                e.detail
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    View::new(serde_json::to_value(entries).unwrap_or_default(), text)
}

/// Usage the filters reported, one line per hour and key.
pub fn usage(rows: &[crate::store::UsageRow]) -> View {
    let text = if rows.is_empty() {
        "no usage reported".to_string()
    } else {
        rows.iter()
            .map(|r| {
                let e = &r.entry;
                format!(
                    "{}  {}  tenant={}  plan={}  credential={}  {}/{}  requests={} input={} output={} cached={} cost_micro_usd={}",
                    rfc3339(r.hour),
                    e.subject,
                    e.tenant.as_deref().unwrap_or("-"),
                    e.plan.as_deref().unwrap_or("-"),
                    e.credential.as_deref().unwrap_or("-"),
                    e.provider,
                    e.model.as_deref().unwrap_or("-"),
                    e.requests,
                    e.input_tokens,
                    e.output_tokens,
                    e.cached_input_tokens,
                    e.cost_micro_usd
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    View::new(serde_json::to_value(rows).unwrap_or_default(), text)
}

/// Alert thresholds, the webhook and the newest alerts.
pub fn alerts(
    rules: &[crate::plane::alerts::AlertRule],
    webhook: Option<&str>,
    events: &[crate::store::AlertEvent],
) -> View {
    let mut lines = vec![format!(
        "webhook: {}",
        webhook.unwrap_or("none (`tokenward alert webhook --url URL`)")
    )];
    if rules.is_empty() {
        lines.push("no thresholds".to_string());
    }
    for rule in rules {
        let at: Vec<String> = rule.thresholds.iter().map(|t| format!("{t}%")).collect();
        lines.push(format!(
            "{}/{}  at {}",
            rule.plan,
            rule.limit,
            at.join(", ")
        ));
    }
    for e in events {
        let state = match e.delivered_at {
            Some(at) => format!("delivered {}", rfc3339(at)),
            None if e.attempts >= crate::store::ALERT_ATTEMPTS => {
                format!("given up after {} attempts: {}", e.attempts, e.last_error)
            }
            None if e.attempts == 0 => "pending".to_string(),
            None => format!("retrying ({} attempts): {}", e.attempts, e.last_error),
        };
        // A spend spike's threshold is the plan's multiple of the baseline, not a percent.
        let at = if e.key.starts_with(crate::plane::spikes::SPIKE_KEY_PREFIX) {
            format!(
                "{}× the baseline in the hour from {}",
                e.threshold,
                rfc3339(e.window_start)
            )
        } else {
            format!("{}%", e.threshold)
        };
        lines.push(format!(
            "{}  {} at {}: {}",
            rfc3339(e.fired_at),
            e.key,
            at,
            state
        ));
    }
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "key": e.key,
                "window_start": e.window_start,
                "threshold": e.threshold,
                "fired_at": e.fired_at,
                "attempts": e.attempts,
                "delivered_at": e.delivered_at,
                "last_error": e.last_error,
                "body": serde_json::from_str::<Value>(&e.body).unwrap_or(Value::Null),
            })
        })
        .collect();
    View::new(
        json!({"webhook": webhook, "rules": rules, "events": events}),
        lines.join("\n"),
    )
}

/// What is left of fleet-wide limits, per counter.
pub fn quota(states: &[crate::plane::fleet::QuotaState]) -> View {
    let text = if states.is_empty() {
        "no counter in the windows in force (limits are counted here once Envoys report them \
         over the sync channel)"
            .to_string()
    } else {
        states
            .iter()
            .map(|s| {
                format!(
                    "{}/{}  {} {}  {:?} per {:?}: used {} of {}, {} left, resets {}  ({} proxies)",
                    s.plan,
                    s.limit,
                    s.per,
                    s.id,
                    s.metric,
                    s.window,
                    s.used,
                    s.limit_value,
                    s.remaining,
                    rfc3339(s.resets_at),
                    s.proxies
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    View::new(serde_json::to_value(states).unwrap_or_default(), text)
}

/// Usage summed per value of one dimension.
pub fn usage_totals(totals: &[crate::plane::UsageTotal]) -> View {
    let text = if totals.is_empty() {
        "no usage reported".to_string()
    } else {
        totals
            .iter()
            .map(|t| {
                format!(
                    "{}  requests={} input={} output={} cached={} cost_micro_usd={}",
                    t.value.as_deref().unwrap_or("-"),
                    t.requests,
                    t.input_tokens,
                    t.output_tokens,
                    t.cached_input_tokens,
                    t.cost_micro_usd
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    View::new(serde_json::to_value(totals).unwrap_or_default(), text)
}

/// The ledger as CSV (RFC 4180): a header line, then one line per row.
pub fn usage_csv(ledger: &crate::plane::UsageLedger) -> String {
    use crate::plane::UsageLedger;
    let mut out = String::new();
    let opt = |v: &Option<String>| csv_field(v.as_deref().unwrap_or(""));
    match ledger {
        UsageLedger::Hours(rows) => {
            out.push_str("hour,subject,tenant,plan,credential,provider,model,requests,input_tokens,output_tokens,cached_input_tokens,cost_micro_usd\n");
            for r in rows {
                let e = &r.entry;
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{},{},{},{}\n",
                    rfc3339(r.hour),
                    csv_field(&e.subject),
                    opt(&e.tenant),
                    opt(&e.plan),
                    opt(&e.credential),
                    csv_field(&e.provider),
                    opt(&e.model),
                    e.requests,
                    e.input_tokens,
                    e.output_tokens,
                    e.cached_input_tokens,
                    e.cost_micro_usd
                ));
            }
        }
        UsageLedger::Totals(by, totals) => {
            let by = serde_json::to_value(by)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "value".into());
            out.push_str(&format!(
                "{by},requests,input_tokens,output_tokens,cached_input_tokens,cost_micro_usd\n"
            ));
            for t in totals {
                out.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    opt(&t.value),
                    t.requests,
                    t.input_tokens,
                    t.output_tokens,
                    t.cached_input_tokens,
                    t.cost_micro_usd
                ));
            }
        }
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break; a leading `=`, `+`,
/// `-`, `@`, tab or carriage return is prefixed with `'` so a spreadsheet does not run it as a
/// formula (some skip a leading tab or `\r` and read the formula behind it; OWASP's list).
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod csv_tests {
    use super::*;
    use crate::plane::{UsageGroup, UsageLedger, UsageTotal};

    #[test]
    fn csv_fields_are_quoted_and_never_run_as_formulas() {
        let totals = UsageLedger::Totals(
            UsageGroup::Subject,
            vec![UsageTotal {
                by: UsageGroup::Subject,
                value: Some("=HYPERLINK(\"x\"), a".into()),
                requests: 2,
                ..UsageTotal::default()
            }],
        );
        assert_eq!(
            usage_csv(&totals),
            "subject,requests,input_tokens,output_tokens,cached_input_tokens,cost_micro_usd\n\"'=HYPERLINK(\"\"x\"\"), a\",2,0,0,0,0\n"
        );
        for (value, field) in [
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "\"'\r=1+1\""),
            ("a=1", "a=1"),
        ] {
            assert_eq!(csv_field(value), field, "{value:?}");
        }
    }
}
