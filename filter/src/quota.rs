//! Quotas: plans and their limits, the price table, and what one request reserves before it
//! is forwarded and settles once its usage is known. Counting itself is `counter`'s; this
//! module decides what to count, against which key, and what the client is told.
//!
//! A request counts against every limit of its credential's plan. The shared store holds one
//! key per (plan, scope, subject or tenant) with a slot for each limit of that scope, so a
//! request reads and writes each key once however many limits it has. Token and cost limits
//! reserve an estimate first (the prompt from the body size, the output from `max_tokens` or
//! the plan's default) and are corrected to the real usage after the response.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::config::{LimitScope, Metric, PlanConfig, PriceConfig, RateLimitHeaders, Unreachable};
use counter::{QuotaError, SharedStore, Slot};
use crate::document::Entry;
use crate::error::{ErrorCode, Refusal};
use crate::identity::Identity;
use crate::invalid::{InvalidConfig, PartKind, Unavailable};
use crate::model::pattern_matches;
use crate::quoted::Quoted;
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
    /// With a sync channel: what this Envoy does while the control plane is away.
    pub unreachable: Unreachable,
    /// Which answers carry the rate-limit headers.
    pub rate_limit_headers: RateLimitHeaders,
    pub limits: Vec<Limit>,
    /// The limits by the scope they count per, in plan order: one counter key each.
    groups: Vec<LimitGroup>,
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
    /// Its slot in the group's key: it names limit, metric and window, so a config update
    /// that keeps them keeps the count, and one that changes what is counted starts afresh
    /// rather than misreading the old count.
    slot: Slot,
    /// The name the fleet knows its counters by, without the subject or tenant
    /// (`tw:q:<plan>:<limit>:<metric>:<window>:`).
    key_prefix: String,
}

/// The limits of a plan that count per the same scope, by index.
#[derive(Debug)]
struct LimitGroup {
    per: LimitScope,
    limits: Vec<usize>,
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
        match &identity.grants.plan {
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
            return Err(problem(format!("limit {} appears twice", Quoted(&limit.name))));
        }
        if limit.metric == Metric::CostMicroUsd && prices_refused {
            return Err(problem(format!(
                "limit {} counts cost and a price could not be loaded",
                Quoted(&limit.name)
            )));
        }
        if limit.metric == Metric::CostMicroUsd && !priced {
            return Err(problem(format!(
                "limit {} counts cost but \"prices\" is empty",
                Quoted(&limit.name)
            )));
        }
        let slot = Slot::new(
            &limit.name,
            metric_name(limit.metric),
            limit.window,
            window_name(limit.window),
        );
        if limits.iter().any(|l| l.slot.id == slot.id) {
            return Err(problem(format!("limit {} collides with another", Quoted(&limit.name))));
        }
        limits.push(Limit {
            name: limit.name.clone(),
            metric: limit.metric,
            window: limit.window,
            limit: limit.limit,
            per: limit.per,
            slot,
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
    let mut groups: Vec<LimitGroup> = Vec::new();
    for (index, limit) in limits.iter().enumerate() {
        match groups.iter_mut().find(|g| g.per == limit.per) {
            Some(group) => group.limits.push(index),
            None => groups.push(LimitGroup {
                per: limit.per,
                limits: vec![index],
            }),
        }
    }
    Ok(Plan {
        name: name.to_string(),
        shadow: plan.shadow,
        clamp_max_tokens: plan.clamp_max_tokens,
        default_output_tokens: plan.default_output_tokens,
        unreachable: plan.unreachable,
        rate_limit_headers: plan.rate_limit_headers,
        limits,
        groups,
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

/// Whose count a limit of scope `per` is: a subject's (`s`), a tenant's (`t`), or that of a
/// subject without a tenant under a tenant limit (`ts`: its own tenant, never a tenant of
/// that name).
fn scope_of(per: LimitScope, identity: &Identity) -> (&'static str, &str) {
    match (per, &identity.grants.tenant) {
        (LimitScope::Subject, _) => ("s", identity.subject()),
        (LimitScope::Tenant, Some(tenant)) => ("t", tenant),
        (LimitScope::Tenant, None) => ("ts", identity.subject()),
    }
}

/// The shared-data key of a plan's counters of one scope: `tw:qg:<plan>:<s|t|ts>:<id>`.
fn group_key(plan: &str, kind: &str, id: &str) -> String {
    let mut key = String::with_capacity(6 + plan.len() + 1 + kind.len() + 1 + id.len());
    key.push_str("tw:qg:");
    key.push_str(plan);
    key.push(':');
    key.push_str(kind);
    key.push(':');
    key.push_str(id);
    key
}

impl LimitGroup {
    fn key(&self, plan: &str, identity: &Identity) -> String {
        let (kind, id) = scope_of(self.per, identity);
        group_key(plan, kind, id)
    }
}

/// Where the counter the fleet names `key` (`Limit::key`) is stored: its group key and slot.
pub fn locate(key: &str) -> Option<(String, Slot)> {
    let parts = fleet::key_parts(key)?;
    let window_name = window_name(parts.window);
    let slot = Slot::new(parts.limit, parts.metric, parts.window, window_name);
    Some((group_key(parts.plan, parts.scope, parts.id), slot))
}

/// The count in force at `now` of the counter the fleet names `key`; 0 for a name that is
/// not a counter's.
fn peek_named(store: &dyn SharedStore, key: &str, now: u64) -> Result<u64, QuotaError> {
    match locate(key) {
        Some((group, slot)) => Ok(counter::peek(store, &group, std::iter::once(slot), now)?
            .first()
            .copied()
            .unwrap_or(0)),
        None => Ok(0),
    }
}

impl Limit {
    /// The name the fleet knows this limit's counter of `identity` by.
    fn key(&self, identity: &Identity) -> String {
        let (kind, id) = scope_of(self.per, identity);
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

mod admission;
pub mod counter;
pub mod fleet;
mod headers;

use headers::policy_header;
#[cfg(test)]
use headers::{duration, number};

pub use admission::{admit_counted, clamp_output, Demand, Fleet, Grant, Settlement};
#[cfg(any(test, feature = "test-support"))]
pub use admission::{admit, output_allowance, QuotaRefusal, SDK_RETRY_WAIT_SECONDS};

#[cfg(test)]
mod tests;
