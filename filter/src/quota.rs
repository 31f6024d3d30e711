//! Quotas: plans and their limits, the price table, and what one request reserves before it
//! is forwarded and settles once its usage is known. Counting itself is `counter`'s; this
//! module decides what to count, against which key, and what the client is told.
//!
//! A request counts against every limit of its credential's plan, each under one key per
//! (plan, limit, subject or tenant) in the shared store. Token and cost limits reserve an
//! estimate first (the prompt from the body size, the output from `max_tokens` or the
//! plan's default) and are corrected to the real usage after the response.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::config::{LimitScope, Metric, PlanConfig, PriceConfig};
use crate::counter::{self, Admission, QuotaError, SharedStore};
use crate::document::Entry;
use crate::error::{ErrorCode, Refusal};
use crate::identity::Identity;
use crate::invalid::{InvalidConfig, PartKind, Unavailable};
use crate::model::pattern_matches;
use crate::usage::Usage;
use crate::window::Window;

/// The compiled plans and prices.
#[derive(Debug, Default)]
pub struct Quotas {
    plans: HashMap<String, Arc<Plan>>,
    /// Plans that could not be loaded: their credentials are refused with 503 until they
    /// load again (letting them through unlimited would fail open).
    unavailable_plans: HashSet<String>,
    default_plan: DefaultPlan,
    prices: Vec<(String, Price)>,
}

#[derive(Debug, Default)]
enum DefaultPlan {
    /// Credentials that name no plan are unlimited.
    #[default]
    None,
    Plan(Arc<Plan>),
    /// The default plan could not be loaded.
    Unavailable,
}

#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub shadow: bool,
    pub clamp_max_tokens: bool,
    pub default_output_tokens: u64,
    pub limits: Vec<Limit>,
    /// The `RateLimit-Policy` value, made once; `None` when a month window (whose width
    /// changes) makes it per request.
    policy_header: Option<String>,
}

#[derive(Debug)]
pub struct Limit {
    pub name: String,
    pub metric: Metric,
    pub window: Window,
    pub limit: u64,
    per: LimitScope,
    /// The counter key without the subject or tenant. It names plan, limit, metric and
    /// window, so a config update that keeps them keeps the count, and one that changes
    /// what is counted starts afresh rather than misreading the old count.
    key_prefix: String,
}

/// A model's price, micro-USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
}

impl Price {
    /// The cost of `usage` in micro-USD, rounded up.
    pub fn cost(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        // Each product fits u128, but the sum of three need not (prices and counts near
        // u64::MAX): saturate, as the result does, rather than wrap to a small cost.
        let micro_millionths = (u128::from(usage.input_tokens - cached) * u128::from(self.input))
            .saturating_add(u128::from(cached) * u128::from(self.cached_input))
            .saturating_add(u128::from(usage.output_tokens) * u128::from(self.output));
        u64::try_from(micro_millionths.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// Plan and limit names appear in counter keys, stat names and headers.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Quotas {
    /// Compiles plans and prices. A plan that cannot be loaded is unavailable (its
    /// credentials get 503); so is every plan that counts cost when a price cannot be
    /// loaded, because the first matching price decides a cost and skipping one would
    /// charge the wrong one.
    pub(crate) fn compile(
        plans: &[(String, Entry<PlanConfig>)],
        default_plan: Option<&str>,
        prices: &[Entry<PriceConfig>],
        unavailable: &mut Unavailable,
    ) -> Quotas {
        let mut price_table = Vec::with_capacity(prices.len());
        let mut prices_refused = false;
        for (index, price) in prices.iter().enumerate() {
            match price {
                Ok(price) if !price.model.is_empty() => price_table.push((
                    price.model.clone(),
                    Price {
                        input: price.input,
                        output: price.output,
                        cached_input: price.cached_input.unwrap_or(price.input),
                    },
                )),
                Ok(_) => {
                    prices_refused = true;
                    let name = format!("prices[{index}]");
                    unavailable.add(PartKind::Price, name, InvalidConfig::PriceModel(index));
                }
                Err(unreadable) => {
                    prices_refused = true;
                    unavailable.unreadable(PartKind::Price, index, unreadable);
                }
            }
        }
        if prices_refused {
            price_table.clear();
        }
        let mut compiled = HashMap::with_capacity(plans.len());
        let mut refused = HashSet::new();
        for (index, (name, plan)) in plans.iter().enumerate() {
            let result = match plan {
                Ok(plan) => compile_plan(name, plan, !price_table.is_empty(), prices_refused),
                Err(unreadable) => Err(InvalidConfig::Unreadable {
                    kind: "plans",
                    index,
                    reason: unreadable.reason.clone(),
                }),
            };
            match result {
                Ok(plan) => {
                    compiled.insert(name.clone(), Arc::new(plan));
                }
                Err(reason) => {
                    unavailable.add(PartKind::Plan, name.clone(), reason);
                    refused.insert(name.clone());
                }
            }
        }
        let default_plan = match default_plan {
            None => DefaultPlan::None,
            Some(name) => match compiled.get(name) {
                Some(plan) => DefaultPlan::Plan(Arc::clone(plan)),
                None => {
                    if !refused.contains(name) {
                        unavailable.add(
                            PartKind::Plan,
                            name.to_string(),
                            InvalidConfig::UnknownDefaultPlan(name.to_string()),
                        );
                    }
                    DefaultPlan::Unavailable
                }
            },
        };
        Quotas {
            plans: compiled,
            unavailable_plans: refused,
            default_plan,
            prices: price_table,
        }
    }

    /// Compiles plans and prices that must all load: the first that cannot is the error.
    #[cfg(test)]
    pub(crate) fn compile_strict(
        plans: &std::collections::BTreeMap<String, PlanConfig>,
        default_plan: Option<&str>,
        prices: &[PriceConfig],
    ) -> Result<Quotas, InvalidConfig> {
        let plans: Vec<_> = plans
            .iter()
            .map(|(n, p)| (n.clone(), Ok(p.clone())))
            .collect();
        let prices: Vec<_> = prices.iter().cloned().map(Ok).collect();
        let mut unavailable = Unavailable::default();
        let quotas = Quotas::compile(&plans, default_plan, &prices, &mut unavailable);
        match unavailable.into_first() {
            Some(part) => Err(part.reason),
            None => Ok(quotas),
        }
    }

    /// Whether the configuration has the plan, loaded or not.
    pub fn has_plan(&self, name: &str) -> bool {
        self.plans.contains_key(name) || self.unavailable_plans.contains(name)
    }

    /// The plan a credential counts against: the one it names, else the default plan; `None`
    /// means no limits. A plan the configuration lacks is refused (fail closed).
    pub fn plan_for(&self, identity: &Identity) -> Result<Option<&Arc<Plan>>, Refusal> {
        let unavailable = || {
            Refusal::new(
                ErrorCode::PlanUnavailable,
                "the credential's plan could not be loaded by this gateway; try again later",
            )
        };
        match &identity.plan {
            Some(name) if self.unavailable_plans.contains(name) => Err(unavailable()),
            Some(name) => self.plans.get(name).map(Some).ok_or_else(|| {
                Refusal::new(
                    ErrorCode::UnknownPlan,
                    "the credential names a plan this gateway does not have",
                )
            }),
            None => match &self.default_plan {
                DefaultPlan::None => Ok(None),
                DefaultPlan::Plan(plan) => Ok(Some(plan)),
                DefaultPlan::Unavailable => Err(unavailable()),
            },
        }
    }

    /// The price of the first pattern that matches the model.
    pub fn price_for(&self, model: &str) -> Option<Price> {
        self.prices
            .iter()
            .find(|(pattern, _)| pattern_matches(pattern, model))
            .map(|(_, price)| *price)
    }
}

/// One plan. `priced`: the price table has entries; `prices_refused`: one could not be
/// loaded, so no cost can be trusted.
fn compile_plan(
    name: &str,
    plan: &PlanConfig,
    priced: bool,
    prices_refused: bool,
) -> Result<Plan, InvalidConfig> {
    let problem = |what: String| InvalidConfig::Plan {
        plan: name.to_string(),
        problem: what,
    };
    if !valid_name(name) {
        return Err(problem("a plan name is 1 to 64 of A-Z a-z 0-9 - _".into()));
    }
    let mut limits: Vec<Limit> = Vec::with_capacity(plan.limits.len());
    for limit in &plan.limits {
        if !valid_name(&limit.name) {
            return Err(problem("a limit name is 1 to 64 of A-Z a-z 0-9 - _".into()));
        }
        if limits.iter().any(|l| l.name == limit.name) {
            return Err(problem(format!("limit {:?} appears twice", limit.name)));
        }
        if limit.metric == Metric::CostMicroUsd && prices_refused {
            return Err(problem(format!(
                "limit {:?} counts cost and a price could not be loaded",
                limit.name
            )));
        }
        if limit.metric == Metric::CostMicroUsd && !priced {
            return Err(problem(format!(
                "limit {:?} counts cost but \"prices\" is empty",
                limit.name
            )));
        }
        limits.push(Limit {
            name: limit.name.clone(),
            metric: limit.metric,
            window: limit.window,
            limit: limit.limit,
            per: limit.per,
            key_prefix: format!(
                "tw:q:{name}:{}:{}:{}:",
                limit.name,
                metric_name(limit.metric),
                window_name(limit.window)
            ),
        });
    }
    let policy_header =
        (!limits.iter().any(|l| l.window == Window::Month)).then(|| policy_header(&limits, 0));
    Ok(Plan {
        name: name.to_string(),
        shadow: plan.shadow,
        clamp_max_tokens: plan.clamp_max_tokens,
        default_output_tokens: plan.default_output_tokens,
        limits,
        policy_header,
    })
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Requests => "requests",
        Metric::InputTokens => "input_tokens",
        Metric::OutputTokens => "output_tokens",
        Metric::TotalTokens => "total_tokens",
        Metric::CostMicroUsd => "cost_micro_usd",
    }
}

fn window_name(window: Window) -> &'static str {
    match window {
        Window::Minute => "minute",
        Window::Hour => "hour",
        Window::Day => "day",
        Window::Month => "month",
    }
}

fn is_token_metric(metric: Metric) -> bool {
    matches!(
        metric,
        Metric::InputTokens | Metric::OutputTokens | Metric::TotalTokens
    )
}

impl Limit {
    /// The counter key: a subject's (`s:`), a tenant's (`t:`), or that of a subject without
    /// a tenant under a tenant limit (`ts:`: its own tenant, never a tenant of that name).
    fn key(&self, identity: &Identity) -> String {
        let (kind, id) = match (self.per, &identity.tenant) {
            (LimitScope::Subject, _) => ("s", &identity.subject),
            (LimitScope::Tenant, Some(tenant)) => ("t", tenant),
            (LimitScope::Tenant, None) => ("ts", &identity.subject),
        };
        let mut key = String::with_capacity(self.key_prefix.len() + kind.len() + 1 + id.len());
        key.push_str(&self.key_prefix);
        key.push_str(kind);
        key.push(':');
        key.push_str(id);
        key
    }

    /// How much of this limit `usage` takes.
    fn amount(&self, usage: &Usage, price: Option<Price>) -> u64 {
        match self.metric {
            Metric::Requests => 1,
            Metric::InputTokens => usage.input_tokens,
            Metric::OutputTokens => usage.output_tokens,
            Metric::TotalTokens => usage.total_tokens(),
            Metric::CostMicroUsd => price.map_or(0, |p| p.cost(usage)),
        }
    }
}

/// What a request is expected to use: its estimated tokens and the model's price.
/// `metered`: the endpoint reports usage (a generation or an embedding), so cost limits
/// apply to it whatever the estimate; the default is a request that uses no tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    pub tokens: Usage,
    pub price: Option<Price>,
    pub metered: bool,
}

impl Demand {
    /// The prompt estimated from the body size (about four bytes a token; JSON around the
    /// text makes this an overestimate) and the output the request allows.
    pub fn estimate(body_bytes: u64, output_tokens: u64, price: Option<Price>) -> Demand {
        Demand {
            tokens: Usage {
                input_tokens: body_bytes.div_ceil(4),
                output_tokens,
                cached_input_tokens: 0,
            },
            price,
            metered: true,
        }
    }
}

/// The counts a request holds, one per limit of its plan, until it settles.
#[derive(Debug)]
pub struct Grant {
    plan: Arc<Plan>,
    held: Vec<Held>,
    price: Option<Price>,
    /// Stat names for the operator: shadow limits this request went past, store failures.
    pub events: Vec<String>,
}

#[derive(Debug)]
struct Held {
    limit: usize,
    key: String,
    window_start: u64,
    reserved: u64,
    /// The count right after admission.
    used: u64,
}

/// How a request's reservations are corrected once it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The response reported its usage: charge exactly that.
    Usage(Usage),
    /// Nothing was used (the provider answered with an error, or the request never left):
    /// give the token and cost reservations back.
    Refund,
    /// The provider answered but the answer did not finish (a stream cut short, the client
    /// gone) or could not be read: the provider may have billed more than it reported so
    /// far, so charge the larger of the reservation and what was reported.
    Unfinished(Option<Usage>),
}

/// A refusal by quota, with the stats it counts under.
#[derive(Debug)]
pub struct QuotaRefusal {
    pub refusal: Refusal,
    pub stats: Vec<String>,
}

/// The most output tokens the plan's token and cost limits still allow a request that
/// needs `demand.tokens.input_tokens` of input; `None` when no limit bounds the output.
pub fn output_allowance(
    plan: &Plan,
    identity: &Identity,
    demand: &Demand,
    store: &dyn SharedStore,
    now: u64,
) -> Result<Option<u64>, QuotaError> {
    let input_only = Usage {
        output_tokens: 0,
        ..demand.tokens
    };
    let mut allowance: Option<u64> = None;
    for limit in &plan.limits {
        let fits = match limit.metric {
            Metric::Requests | Metric::InputTokens => continue,
            Metric::OutputTokens => None,
            Metric::TotalTokens => Some(demand.tokens.input_tokens),
            Metric::CostMicroUsd => match demand.price {
                Some(price) if price.output > 0 => Some(price.cost(&input_only)),
                _ => continue,
            },
        };
        let used = counter::peek(store, &limit.key(identity), limit.window, now)?;
        let left = limit
            .limit
            .saturating_sub(used)
            .saturating_sub(fits.unwrap_or(0));
        let tokens = match (limit.metric, demand.price) {
            (Metric::CostMicroUsd, Some(price)) => {
                u64::try_from(u128::from(left) * 1_000_000 / u128::from(price.output))
                    .unwrap_or(u64::MAX)
            }
            _ => left,
        };
        allowance = Some(allowance.map_or(tokens, |a| a.min(tokens)));
    }
    Ok(allowance)
}

/// Counts `demand` against every limit of `plan`, all or nothing: when one limit refuses,
/// the counts already taken are given back. A shadow plan counts everything and refuses
/// nothing. Running out of CAS attempts refuses with 429 and `Retry-After: 1`.
pub fn admit(
    plan: &Arc<Plan>,
    identity: &Identity,
    demand: &Demand,
    store: &dyn SharedStore,
    now: u64,
) -> Result<Grant, QuotaRefusal> {
    let mut events = Vec::new();
    if demand.metered && demand.price.is_none() {
        if let Some(limit) = plan
            .limits
            .iter()
            .find(|l| l.metric == Metric::CostMicroUsd)
        {
            let stat = format!("{}.{}.{}", plan.name, limit.name, "unpriced");
            if plan.shadow {
                // Counted as over the limit: the cost cannot be known.
                events.push(format!("tokenward.quota.shadow_exceeded.{stat}"));
            } else {
                return Err(QuotaRefusal {
                    refusal: Refusal::new(
                        ErrorCode::ModelNotPriced,
                        format!(
                            "the plan limits cost ({:?}) and the gateway has no price for this model",
                            limit.name
                        ),
                    ),
                    stats: vec![format!(
                        "tokenward.quota.refused.{}.{}",
                        plan.name, limit.name
                    )],
                });
            }
        }
    }
    let mut grant = Grant {
        plan: Arc::clone(plan),
        held: Vec::with_capacity(plan.limits.len()),
        price: demand.price,
        events,
    };
    for (index, limit) in plan.limits.iter().enumerate() {
        let amount = limit.amount(&demand.tokens, demand.price);
        let key = limit.key(identity);
        let outcome = if amount == 0 {
            // Nothing to count (a request that uses no tokens): the count is only read,
            // for the headers.
            counter::peek(store, &key, limit.window, now).map(|used| Admission::Admitted {
                used,
                window_start: limit.window.start(now),
            })
        } else {
            counter::admit(
                store,
                &key,
                limit.window,
                now,
                amount,
                limit.limit,
                !plan.shadow,
            )
        };
        match outcome {
            Ok(Admission::Admitted { used, window_start }) => {
                if used > limit.limit && amount > 0 {
                    grant.events.push(format!(
                        "tokenward.quota.shadow_exceeded.{}.{}",
                        plan.name, limit.name
                    ));
                }
                grant.held.push(Held {
                    limit: index,
                    key,
                    window_start,
                    reserved: amount,
                    used,
                });
            }
            Ok(Admission::Refused { used, resets_at }) => {
                // The counts as they are once this request's share is given back.
                let mut states: Vec<_> = grant
                    .states()
                    .into_iter()
                    .zip(&grant.held)
                    .map(|((i, used, reset), held)| (i, used.saturating_sub(held.reserved), reset))
                    .collect();
                states.push((index, used, resets_at));
                let mut stats = grant.settle(Settlement::Refund, store, now, true);
                stats.push(format!(
                    "tokenward.quota.refused.{}.{}",
                    plan.name, limit.name
                ));
                return Err(QuotaRefusal {
                    refusal: over_limit(plan, limit, amount, used, resets_at, now)
                        .with_headers(rate_limit_headers(plan, &states, now, resets_at)),
                    stats,
                });
            }
            Err(error) if plan.shadow => {
                log::warn!("quota {}/{} not counted: {error}", plan.name, limit.name);
                grant
                    .events
                    .push("tokenward.quota.store_errors".to_string());
            }
            Err(error) => {
                log::warn!("quota {}/{} refused: {error}", plan.name, limit.name);
                let mut stats = grant.settle(Settlement::Refund, store, now, true);
                stats.push("tokenward.quota.store_errors".to_string());
                let refusal = match error {
                    QuotaError::Contended => Refusal::new(
                        ErrorCode::RateLimitExceeded,
                        "the quota counter is too busy right now; retry in a second",
                    )
                    .with_headers(vec![("retry-after".into(), "1".into())]),
                    QuotaError::Store(_) => Refusal::new(
                        ErrorCode::InternalError,
                        "the quota counter could not be read",
                    ),
                };
                return Err(QuotaRefusal { refusal, stats });
            }
        }
    }
    Ok(grant)
}

fn over_limit(
    plan: &Plan,
    limit: &Limit,
    amount: u64,
    used: u64,
    resets_at: u64,
    now: u64,
) -> Refusal {
    let code = if limit.metric == Metric::CostMicroUsd {
        ErrorCode::BudgetExceeded
    } else {
        ErrorCode::RateLimitExceeded
    };
    let what = match limit.metric {
        Metric::Requests => "requests",
        Metric::InputTokens => "input tokens",
        Metric::OutputTokens => "output tokens",
        Metric::TotalTokens => "tokens",
        Metric::CostMicroUsd => "micro-USD",
    };
    let message = if amount > limit.limit {
        format!(
            "this request needs about {amount} {what}, more than the limit {:?} of plan {:?} allows per {} ({})",
            limit.name,
            plan.name,
            window_name(limit.window),
            limit.limit
        )
    } else {
        format!(
            "limit {:?} of plan {:?} is used up: {used} of {} {what} per {}; it resets in {}",
            limit.name,
            plan.name,
            limit.limit,
            window_name(limit.window),
            duration(resets_at.saturating_sub(now))
        )
    };
    Refusal::new(code, message)
}

impl Grant {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// (limit, count after admission, reset time) of every limit held.
    fn states(&self) -> Vec<(usize, u64, u64)> {
        self.held
            .iter()
            .map(|h| {
                let window = self.plan.limits[h.limit].window;
                (h.limit, h.used, window.end(h.window_start))
            })
            .collect()
    }

    /// The rate-limit headers for a response the grant let through (none in shadow mode:
    /// turning shadow on must not change what clients see).
    pub fn client_headers(&self, now: u64) -> Vec<(String, String)> {
        if self.plan.shadow {
            return Vec::new();
        }
        rate_limit_headers(&self.plan, &self.states(), now, 0)
    }

    /// Corrects the reservations; returns stat names of failed corrections. Request counts
    /// stay (the request was made) unless `all` says the request never left.
    pub fn settle(
        &self,
        settlement: Settlement,
        store: &dyn SharedStore,
        now: u64,
        all: bool,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        for held in &self.held {
            let limit = &self.plan.limits[held.limit];
            if limit.metric == Metric::Requests && !all {
                continue;
            }
            let actual = match settlement {
                Settlement::Usage(usage) => limit.amount(&usage, self.price),
                Settlement::Refund => 0,
                Settlement::Unfinished(usage) => usage
                    .map_or(0, |u| limit.amount(&u, self.price))
                    .max(held.reserved),
            };
            let delta = i64::try_from(actual)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(held.reserved).unwrap_or(i64::MAX));
            if let Err(error) = counter::settle(
                store,
                &held.key,
                limit.window,
                now,
                held.window_start,
                delta,
            ) {
                log::warn!(
                    "quota {}/{} not settled ({delta:+}): {error}",
                    self.plan.name,
                    limit.name
                );
                failures.push("tokenward.quota.settle_errors".to_string());
            }
        }
        failures
    }
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) for every limit
/// known, OpenAI's `x-ratelimit-*` for the tightest request and token limits, and
/// `Retry-After` when `retry_at` is set (a 429).
fn rate_limit_headers(
    plan: &Plan,
    states: &[(usize, u64, u64)],
    now: u64,
    retry_at: u64,
) -> Vec<(String, String)> {
    let policy = plan
        .policy_header
        .clone()
        .unwrap_or_else(|| policy_header(&plan.limits, now));
    // These headers go on every answer: built by hand, as core::fmt costs microseconds here.
    let mut current = String::with_capacity(states.len() * 24);
    // The tightest request and token limits: (limit, remaining, seconds to reset).
    let mut requests: Option<(&Limit, u64, u64)> = None;
    let mut tokens: Option<(&Limit, u64, u64)> = None;
    for &(index, used, resets_at) in states {
        let Some(limit) = plan.limits.get(index) else {
            continue;
        };
        let remaining = limit.limit.saturating_sub(used);
        let reset = resets_at.saturating_sub(now);
        if !current.is_empty() {
            current.push_str(", ");
        }
        current.push('"');
        current.push_str(&limit.name);
        current.push_str("\";r=");
        push_number(&mut current, remaining);
        current.push_str(";t=");
        push_number(&mut current, reset);
        let slot = match limit.metric {
            Metric::Requests => &mut requests,
            m if is_token_metric(m) => &mut tokens,
            _ => continue,
        };
        if slot.is_none_or(|(_, r, _)| remaining < r) {
            *slot = Some((limit, remaining, reset));
        }
    }
    let mut headers = Vec::with_capacity(9);
    headers.push(("ratelimit-policy".to_string(), policy));
    headers.push(("ratelimit".to_string(), current));
    for (names, tightest) in [
        (
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            requests,
        ),
        (
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
            tokens,
        ),
    ] {
        if let Some((limit, remaining, reset)) = tightest {
            headers.push((names[0].to_string(), number(limit.limit)));
            headers.push((names[1].to_string(), number(remaining)));
            headers.push((names[2].to_string(), duration(reset)));
        }
    }
    if retry_at > 0 {
        headers.push((
            "retry-after".to_string(),
            number(retry_at.saturating_sub(now).max(1)),
        ));
    }
    headers
}

/// Appends `n` in decimal.
fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

fn number(n: u64) -> String {
    let mut out = String::with_capacity(20);
    push_number(&mut out, n);
    out
}

/// `RateLimit-Policy`: every limit with its quota and window width (a month's as of `now`).
fn policy_header(limits: &[Limit], now: u64) -> String {
    let mut policy = Vec::with_capacity(limits.len());
    for limit in limits {
        let width = limit.window.end(now) - limit.window.start(now);
        let unit = match limit.metric {
            Metric::Requests => "",
            Metric::CostMicroUsd => ";qu=\"micro-usd\"",
            _ => ";qu=\"tokens\"",
        };
        policy.push(format!(
            "\"{}\";q={};w={width}{unit}",
            limit.name, limit.limit
        ));
    }
    policy.join(", ")
}

/// Seconds as OpenAI writes its reset times: `45s`, `6m0s`, `2h0m5s`.
fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::with_capacity(16);
    if h > 0 {
        push_number(&mut out, h);
        out.push('h');
    }
    if h > 0 || m > 0 {
        push_number(&mut out, m);
        out.push('m');
    }
    push_number(&mut out, s);
    out.push('s');
    out
}

#[cfg(test)]
mod tests;
