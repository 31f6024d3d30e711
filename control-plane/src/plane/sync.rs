//! What the sync channel needs of the control plane: the configuration a pull-mode filter
//! fetches, signed by every published signing key (so a filter that knows any of them, from
//! its bootstrap's trust anchor or its last configuration, verifies it across rotations);
//! proxy credentials; and the usage reports the filters send.

use tokenward_filter::sync::{ConfigSignature, SyncReport, SCOPE_SYNC, SIGNATURE_AUDIENCE};

use super::closed_hours::{self, Closed, ClosedTop};
use super::*;
use crate::store::{hour_of, UsageDimension, UsageFilter, UsageRow, UsageSums};

/// A configuration signed for pull-mode filters.
#[derive(Debug, Clone)]
pub struct SignedConfig {
    pub version: String,
    /// The store revision it was rendered at.
    pub revision: u64,
    /// The document as sent (its SHA-256 is what is signed).
    pub body: Vec<u8>,
    /// Comma-separated compact JWS, one per published key.
    pub signature: String,
    pub signed_at: u64,
}

/// How long a signature holds: a recorded answer cannot be replayed to a filter for longer.
pub const SIGNATURE_LIFETIME: u64 = 3600;
/// A configuration served longer than this unchanged is signed again.
pub const RESIGN_AFTER: u64 = 600;
/// The most rows of the ledger read at once (an hour and key each; ~100 bytes apiece in
/// memory, several times that as JSON or CSV).
pub const LEDGER_ROWS_MAX: usize = 100_000;

impl<S: Store + ?Sized> ControlPlane<S> {
    /// Signs a rendered configuration for the sync channel.
    pub fn sign_config(
        &self,
        config: &Config,
        revision: u64,
        now: u64,
    ) -> Result<SignedConfig, PlaneError> {
        let body = serde_json::to_vec(config).map_err(|e| PlaneError::Signing(e.to_string()))?;
        let digest: String = hmac_sha256::Hash::hash(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let keys = self.store.signing_keys()?;
        let revoked = self.store.revoked_key_ids()?;
        let mut signatures = Vec::new();
        for key in model::published_keys(&keys, now)
            .into_iter()
            .filter(|k| !revoked.contains(&k.kid))
        {
            let claims = Claims::with_custom_claims(
                ConfigSignature {
                    sha256: digest.clone(),
                    revision,
                },
                Duration::from_secs(SIGNATURE_LIFETIME),
            )
            .with_audience(SIGNATURE_AUDIENCE);
            let token = self.sign(key, claims, now, SIGNATURE_LIFETIME)?;
            signatures.push(token);
        }
        if signatures.is_empty() {
            return Err(PlaneError::NoActiveKey);
        }
        Ok(SignedConfig {
            version: config.version.clone().unwrap_or_default(),
            revision,
            body,
            signature: signatures.join(","),
            signed_at: now,
        })
    }

    /// A proxy credential: an API key scoped to the sync channel only. It is never pushed to
    /// the filters (it opens no route), only the control plane accepts it.
    pub fn create_proxy_credential(
        &self,
        name: &str,
        now: u64,
    ) -> Result<CreatedApiKey, PlaneError> {
        if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "a proxy credential's name must be 1-128 visible ASCII characters",
            ));
        }
        self.create_api_key(
            &ApiKeyRequest {
                subject: format!("proxy:{name}"),
                tenant: None,
                scopes: vec![SCOPE_SYNC.to_string()],
                models: Vec::new(),
                plan: None,
                expires_at: None,
            },
            now,
        )
    }

    /// Takes a usage report (once, however often it is sent).
    pub fn record_usage(&self, report: &SyncReport, now: u64) -> Result<bool, PlaneError> {
        if report.node.is_empty() || report.boot.is_empty() || report.node.len() > 512 {
            return Err(invalid("a report names its node and boot"));
        }
        Ok(self.store.record_usage(report, now)?)
    }

    pub fn usage(&self, since: u64) -> Result<Vec<UsageRow>, PlaneError> {
        Ok(self.store.usage(since)?)
    }

    /// The usage ledger from `query.since`, narrowed by its filters (in the store's query):
    /// per hour and key, or with `query.by`, summed per value of one dimension (largest cost
    /// first); at most `LEDGER_ROWS_MAX` rows either way (more is refused: narrow the filters
    /// or the period).
    pub fn usage_ledger(&self, query: &UsageQuery) -> Result<UsageLedger, PlaneError> {
        self.usage_ledger_within(query, LEDGER_ROWS_MAX)
    }

    fn usage_ledger_within(
        &self,
        query: &UsageQuery,
        max_rows: usize,
    ) -> Result<UsageLedger, PlaneError> {
        // Beyond 2^63 seconds no hour is kept: the store counts time in i64.
        let since = query.since.min(i64::MAX as u64);
        let Some(by) = query.by else {
            let rows = self.store.usage_rows(
                since,
                u64::MAX,
                &query.filter(),
                max_rows.saturating_add(1),
            )?;
            if rows.len() > max_rows {
                return Err(too_large(max_rows));
            }
            return Ok(UsageLedger::Hours(rows));
        };
        let totals = self.store.usage_by(
            since,
            u64::MAX,
            &query.filter(),
            by.dimension(),
            max_rows.saturating_add(1),
        )?;
        if totals.len() > max_rows {
            return Err(too_large(max_rows));
        }
        let totals = totals
            .into_iter()
            .map(|(value, sums)| UsageTotal {
                by,
                value: (!value.is_empty()).then_some(value),
                requests: sums.requests,
                input_tokens: sums.input_tokens,
                output_tokens: sums.output_tokens,
                cached_input_tokens: sums.cached_input_tokens,
                cost_micro_usd: sums.cost_micro_usd,
            })
            .collect();
        Ok(UsageLedger::Totals(by, totals))
    }

    /// The ledger from `query.since` narrowed by its filters, summed per hour (a chart's
    /// points; hours without usage are absent). Without a filter, ended hours come from the
    /// cache of closed hours and the current one from the store; a filtered query is read
    /// whole (its entry would hardly be read again).
    pub fn usage_series(
        &self,
        query: &UsageQuery,
        now: u64,
    ) -> Result<Vec<(u64, UsageSums)>, PlaneError> {
        let since = hour_of(query.since.min(i64::MAX as u64));
        let filter = query.filter();
        let current_hour = hour_of(now);
        if since >= current_hour || filter != UsageFilter::default() {
            return Ok(self.store.usage_by_hour(since, u64::MAX, &filter)?);
        }
        let closed = self.closed_hours.get_or(None, since, now, |until| {
            Ok::<_, PlaneError>(Closed::Hours(
                self.store.usage_by_hour(since, until, &filter)?,
            ))
        })?;
        let Closed::Hours(closed) = closed.as_ref() else {
            return Ok(Vec::new());
        };
        let mut series = closed.clone();
        series.extend(self.store.usage_by_hour(current_hour, u64::MAX, &filter)?);
        Ok(series)
    }

    /// The ledger from `query.since` narrowed by its filters, summed per value of `by`,
    /// largest cost first, at most `limit` values. Without a filter, the ended hours' largest
    /// values come from the cache and the current hour is added to them; whenever that cannot
    /// tell the answer exactly (a value outside the kept ones grew this hour, or more are
    /// asked for than are kept), the store sums the period itself.
    pub fn usage_top(
        &self,
        query: &UsageQuery,
        by: UsageGroup,
        limit: usize,
        now: u64,
    ) -> Result<Vec<(Option<String>, UsageSums)>, PlaneError> {
        let since = hour_of(query.since.min(i64::MAX as u64));
        let filter = query.filter();
        let dimension = by.dimension();
        let current_hour = hour_of(now);
        let whole = || {
            self.store
                .usage_by(since, u64::MAX, &filter, dimension, limit)
        };
        let values = if since >= current_hour
            || filter != UsageFilter::default()
            || limit > closed_hours::KEPT_VALUES
        {
            whole()?
        } else {
            let closed = self
                .closed_hours
                .get_or(Some(dimension), since, now, |until| {
                    Ok::<_, PlaneError>(Closed::Values(ClosedTop::from_read(self.store.usage_by(
                        since,
                        until,
                        &filter,
                        dimension,
                        closed_hours::KEPT_VALUES + 1,
                    )?)))
                })?;
            let Closed::Values(closed) = closed.as_ref() else {
                return Ok(Vec::new());
            };
            // The current hour whole, unless it alone holds more values than a top keeps.
            let current = self.store.usage_by(
                current_hour,
                u64::MAX,
                &filter,
                dimension,
                closed_hours::KEPT_VALUES + 1,
            )?;
            if current.len() > closed_hours::KEPT_VALUES {
                whole()?
            } else {
                match closed_hours::merge_top(closed, current, limit) {
                    Some(merged) => merged,
                    None => whole()?,
                }
            }
        };
        Ok(values
            .into_iter()
            .map(|(value, sums)| ((!value.is_empty()).then_some(value), sums))
            .collect())
    }

    /// The start of the last hour a credential was used in, as the reports tell.
    pub fn last_used(&self, credential: &str) -> Result<Option<u64>, PlaneError> {
        Ok(self.store.last_used(credential)?)
    }
}

fn too_large(max_rows: usize) -> PlaneError {
    invalid(format!(
        "the usage ledger of this period and these filters holds more than {max_rows} rows, \
         too many to read at once: narrow the filters (subject, tenant, credential, model, \
         provider) or the period"
    ))
}

/// Which usage to read.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    /// Hours that begin at or after this (Unix seconds; the hour it falls in counts).
    pub since: u64,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    /// An API key's id or a token's jti.
    pub credential: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub by: Option<UsageGroup>,
}

impl UsageQuery {
    fn filter(&self) -> UsageFilter {
        UsageFilter {
            subject: self.subject.clone(),
            tenant: self.tenant.clone(),
            credential: self.credential.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
        }
    }
}

/// A dimension of the ledger to sum by.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroup {
    #[default]
    Subject,
    Tenant,
    /// The API key or token.
    Credential,
    Model,
    Provider,
}

impl UsageGroup {
    fn dimension(self) -> UsageDimension {
        match self {
            UsageGroup::Subject => UsageDimension::Subject,
            UsageGroup::Tenant => UsageDimension::Tenant,
            UsageGroup::Credential => UsageDimension::Credential,
            UsageGroup::Model => UsageDimension::Model,
            UsageGroup::Provider => UsageDimension::Provider,
        }
    }
}

/// Usage summed over the hours asked for, for one value of a dimension.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageTotal {
    pub by: UsageGroup,
    /// `None`: the entries without one (a credential without a tenant, say).
    pub value: Option<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cost_micro_usd: u64,
}

/// The ledger as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageLedger {
    Hours(Vec<UsageRow>),
    /// Summed by one dimension (its totals may be empty).
    Totals(UsageGroup, Vec<UsageTotal>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::store::SqliteStore;

    #[test]
    fn the_ledger_is_read_narrowed_and_refused_past_its_row_limit() {
        let plane = ControlPlane::new(
            SqliteStore::in_memory().unwrap(),
            MasterKey::generate().unwrap(),
            "test",
        );
        let hour = 1_800_000_000;
        for (seq, subject) in [(1, "alice"), (2, "bob"), (3, "alice")] {
            let report = serde_json::json!({
                "node": "n", "boot": "b", "seq": seq,
                "entries": [{"subject": subject, "provider": "openai", "model": "gpt-4o",
                             "requests": 1, "input_tokens": 1, "output_tokens": 1,
                             "cached_input_tokens": 0, "cost_micro_usd": 1}],
            });
            let at = hour + (seq - 1) * 3600 + 10;
            plane
                .record_usage(&serde_json::from_value(report).unwrap(), at)
                .unwrap();
        }
        let alice = UsageQuery {
            since: hour,
            subject: Some("alice".into()),
            ..UsageQuery::default()
        };
        let Ok(UsageLedger::Hours(rows)) = plane.usage_ledger_within(&alice, 2) else {
            panic!("alice's two rows fit");
        };
        let hours: Vec<(u64, &str)> = rows
            .iter()
            .map(|r| (r.hour, r.entry.subject.as_str()))
            .collect();
        assert_eq!(hours, [(hour, "alice"), (hour + 7200, "alice")]);
        let everyone = UsageQuery {
            since: hour,
            ..UsageQuery::default()
        };
        match plane.usage_ledger_within(&everyone, 2) {
            Err(PlaneError::Invalid(message)) => assert!(
                message.contains("more than 2 rows") && message.contains("narrow"),
                "{message}"
            ),
            other => panic!("three rows past a limit of two: {other:?}"),
        }
        // Summed by a dimension, the limit counts values.
        let by = UsageQuery {
            by: Some(UsageGroup::Subject),
            ..everyone
        };
        assert!(matches!(
            plane.usage_ledger_within(&by, 2),
            Ok(UsageLedger::Totals(UsageGroup::Subject, totals)) if totals.len() == 2
        ));
        assert!(matches!(
            plane.usage_ledger_within(&by, 1),
            Err(PlaneError::Invalid(_))
        ));
    }
}
