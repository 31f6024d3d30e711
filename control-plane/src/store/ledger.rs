//! The usage ledger read in SQL, summed per hour or per value of one dimension (the dashboard
//! and `GET /admin/v1/usage?by=…` read a million rows this way), and the dashboard's sessions.
//! The statements are constants shared by both stores: `$n` placeholders are Postgres's and
//! SQLite binds them by position of first use, which is their number here.

use serde::Serialize;

/// Filters of a ledger read; `None`: any value. The columns keep "none" as the empty string,
/// so a filter for an empty value is no filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub subject: Option<String>,
    pub tenant: Option<String>,
    /// An API key's id or a token's jti.
    pub credential: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
}

impl UsageFilter {
    /// The filters in the statements' order ($3 … $7); "" for none.
    pub(crate) fn params(&self) -> [&str; 5] {
        fn or_any(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or("")
        }
        [
            or_any(&self.subject),
            or_any(&self.tenant),
            or_any(&self.credential),
            or_any(&self.model),
            or_any(&self.provider),
        ]
    }
}

/// A dimension the ledger is summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageDimension {
    Subject,
    Tenant,
    Credential,
    Model,
    Provider,
}

/// Sums of the ledger's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageSums {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cost_micro_usd: u64,
}

impl UsageSums {
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Adds `more`, each count stopping at its maximum rather than wrapping (a count reported
    /// wrong must not make a total small).
    pub fn add(&mut self, more: &UsageSums) {
        self.requests = self.requests.saturating_add(more.requests);
        self.input_tokens = self.input_tokens.saturating_add(more.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(more.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(more.cached_input_tokens);
        self.cost_micro_usd = self.cost_micro_usd.saturating_add(more.cost_micro_usd);
    }
}

/// A signed-in dashboard session. The cookie holds the id; the store keeps its SHA-256 and
/// who the admin credential it was opened with is (JSON: an API key's id and hash, a token's
/// jti, signing key and grants), never the credential, so every page checks that credential
/// is still in force (a revoked or expired credential ends the session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSession {
    pub id_sha256: String,
    pub credential: String,
    pub subject: String,
    pub created_at: u64,
    pub expires_at: u64,
}

macro_rules! sums_by {
    ($column:literal) => {
        concat!(
            "SELECT ",
            $column,
            ", CAST(SUM(requests) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT),
                CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT),
                CAST(SUM(cost_micro_usd) AS BIGINT)
             FROM usage
             WHERE hour >= $1 AND hour < $2 AND ($3 = '' OR subject = $3)
               AND ($4 = '' OR tenant = $4) AND ($5 = '' OR credential = $5)
               AND ($6 = '' OR model = $6) AND ($7 = '' OR provider = $7)
             GROUP BY ",
            $column,
            " ORDER BY 6 DESC, 2 DESC, 1 LIMIT $8"
        )
    };
}

/// Sums per value of `by`, largest cost first (then requests).
pub(crate) fn sums_by_sql(by: UsageDimension) -> &'static str {
    match by {
        UsageDimension::Subject => sums_by!("subject"),
        UsageDimension::Tenant => sums_by!("tenant"),
        UsageDimension::Credential => sums_by!("credential"),
        UsageDimension::Model => sums_by!("model"),
        UsageDimension::Provider => sums_by!("provider"),
    }
}

/// Sums per hour, oldest first (the statement of `sums_by_sql` without a limit).
pub(crate) const SUMS_BY_HOUR: &str = "SELECT hour, CAST(SUM(requests) AS BIGINT),
        CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT),
        CAST(SUM(cached_input_tokens) AS BIGINT), CAST(SUM(cost_micro_usd) AS BIGINT)
     FROM usage
     WHERE hour >= $1 AND hour < $2 AND ($3 = '' OR subject = $3)
       AND ($4 = '' OR tenant = $4) AND ($5 = '' OR credential = $5)
       AND ($6 = '' OR model = $6) AND ($7 = '' OR provider = $7)
     GROUP BY hour ORDER BY hour";

/// The ledger's rows, an hour and key each, oldest first, at most `$8` (the filters of the
/// sums; the export reads this rather than every row of the period).
pub(crate) const LEDGER_ROWS: &str = "SELECT hour, subject, tenant, plan, credential, provider,
        model, requests, input_tokens, output_tokens, cached_input_tokens, cost_micro_usd
     FROM usage
     WHERE hour >= $1 AND hour < $2 AND ($3 = '' OR subject = $3)
       AND ($4 = '' OR tenant = $4) AND ($5 = '' OR credential = $5)
       AND ($6 = '' OR model = $6) AND ($7 = '' OR provider = $7)
     ORDER BY hour, subject, tenant, plan, credential, provider, model LIMIT $8";

/// The last hour a credential was used in (an index on (credential, hour) answers it).
pub(crate) const LAST_USED: &str = "SELECT MAX(hour) FROM usage WHERE credential = $1";
