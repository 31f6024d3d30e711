//! What one request reserves before it is forwarded, and how it settles once its usage is
//! known: admission all or nothing across the plan's limits, the output clamp, settlement.

use std::cell::RefCell;
use std::sync::Arc;

use super::fleet::{Allowances, Ceiling};
use super::headers::{duration, rate_limit_headers};
use super::{window_name, Limit, Plan, Price};
use crate::config::{Metric, RateLimitHeaders};
use crate::quota::counter::{self, Admission, Ask, Correction, QuotaError, SharedStore};
use crate::error::{ErrorCode, Refusal};
use crate::identity::Identity;
use crate::quoted::Quoted;
use crate::stat;
use crate::usage::Usage;

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

/// The worker's fleet allowances when the plan's limits hold across the fleet (a sync
/// channel), `None` when this Envoy counts alone.
pub type Fleet<'a> = Option<&'a RefCell<Allowances>>;

/// The most a counter may hold on this Envoy now: the limit, or this Envoy's allowance of it.
fn ceiling_of(
    plan: &Plan,
    limit: &Limit,
    identity: &Identity,
    fleet: Fleet<'_>,
    now: u64,
) -> Ceiling {
    match fleet {
        None => Ceiling::Count(limit.limit),
        Some(fleet) => {
            let key = limit.key(identity);
            let unreachable = if plan.shadow {
                // Shadow plans refuse nothing, the control plane's absence included.
                crate::config::Unreachable::Fallback
            } else {
                plan.unreachable
            };
            fleet.borrow_mut().ceiling(
                &key,
                limit.limit,
                limit.window.start(now),
                now.saturating_mul(1000),
                unreachable,
            )
        }
    }
}

/// The counts a request holds, one per limit of its plan, until it settles.
#[derive(Debug)]
pub struct Grant {
    plan: Arc<Plan>,
    /// The counter keys held: one per scope of the plan's limits.
    keys: Vec<String>,
    held: Vec<Held>,
    price: Option<Price>,
    /// Stat names for the operator: shadow limits this request went past, store failures.
    pub events: Vec<String>,
}

#[derive(Debug)]
struct Held {
    limit: usize,
    /// Its key in `Grant::keys`.
    key: usize,
    window_start: u64,
    reserved: u64,
    /// The count right after admission.
    used: u64,
    /// What the counter may hold on this Envoy (the limit, or its fleet allowance).
    ceiling: u64,
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
    fleet: Fleet<'_>,
    now: u64,
) -> Result<Option<u64>, QuotaError> {
    let input_only = Usage {
        output_tokens: 0,
        ..demand.tokens
    };
    let mut allowance: Option<u64> = None;
    for group in &plan.groups {
        let bounded = |limit: &Limit| match limit.metric {
            Metric::Requests | Metric::InputTokens => None,
            Metric::OutputTokens => Some(None),
            Metric::TotalTokens => Some(Some(demand.tokens.input_tokens)),
            Metric::CostMicroUsd => match demand.price {
                Some(price) if price.output > 0 => Some(Some(price.cost(&input_only))),
                _ => None,
            },
        };
        let limits: Vec<(&Limit, Option<u64>)> = group
            .limits
            .iter()
            .map(|&i| &plan.limits[i])
            .filter_map(|l| bounded(l).map(|fits| (l, fits)))
            .collect();
        if limits.is_empty() {
            continue;
        }
        let key = group.key(&plan.name, identity);
        let counts = counter::peek(store, &key, limits.iter().map(|(l, _)| l.slot), now)?;
        for ((limit, fits), used) in limits.into_iter().zip(counts) {
            let ceiling = match ceiling_of(plan, limit, identity, fleet, now) {
                Ceiling::Count(ceiling) => ceiling,
                Ceiling::Unreachable => 0,
            };
            let left = ceiling
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
    }
    Ok(allowance)
}

/// The longest `Retry-After` the official SDKs wait for (OpenAI's and Anthropic's honour up to
/// 60 s, then back off on their own): a longer wait is no retry's to bridge.
pub const SDK_RETRY_WAIT_SECONDS: u64 = 60;

/// Under `clamp_max_tokens`, the output limit written into a request so its answer cannot
/// outgrow what the plan still allows: the fields to set (those the request sets, by
/// `sets`, else the first of `limit_fields`) and the cap, with `demand` lowered to it.
/// `None` when nothing is clamped: the plan does not clamp or only watches (shadow), the API
/// has no limit field, the request already asks for exactly the cap, or nothing is left (the
/// admission then refuses with the limit's headers). Otherwise the limit is written also
/// where the request set none, so no answer can outgrow its reservation.
#[allow(clippy::too_many_arguments)]
pub fn clamp_output(
    plan: &Plan,
    identity: &Identity,
    demand: &mut Demand,
    limit_fields: &'static [&'static str],
    sets: &dyn Fn(&str) -> bool,
    requested: Option<u64>,
    store: &dyn SharedStore,
    fleet: Fleet<'_>,
    now: u64,
) -> Option<(Vec<&'static str>, u64)> {
    if !plan.clamp_max_tokens || plan.shadow || limit_fields.is_empty() {
        return None;
    }
    let allowance = output_allowance(plan, identity, demand, store, fleet, now)
        .ok()
        .flatten();
    let output = demand.tokens.output_tokens;
    let capped = allowance.map_or(output, |a| a.min(output));
    if capped == 0 || requested == Some(capped) {
        return None;
    }
    let present: Vec<&'static str> = limit_fields.iter().copied().filter(|f| sets(f)).collect();
    let targets = if present.is_empty() {
        limit_fields[..1].to_vec()
    } else {
        present
    };
    demand.tokens.output_tokens = capped;
    Some((targets, capped))
}

/// `admit`, with the stats it counted (granted or refused) appended to `events`.
pub fn admit_counted(
    plan: &Arc<Plan>,
    identity: &Identity,
    demand: &Demand,
    store: &dyn SharedStore,
    fleet: Fleet<'_>,
    now: u64,
    events: &mut Vec<String>,
) -> Result<Grant, Refusal> {
    match admit(plan, identity, demand, store, fleet, now) {
        Ok(mut grant) => {
            events.append(&mut grant.events);
            Ok(grant)
        }
        Err(mut refused) => {
            events.append(&mut refused.stats);
            Err(refused.refusal)
        }
    }
}

/// Counts `demand` against every limit of `plan`, all or nothing: when one limit refuses,
/// the counts already taken are given back. A shadow plan counts everything and refuses
/// nothing. Running out of CAS attempts refuses with 429 and `Retry-After: 1`. With `fleet`,
/// each counter goes only as far as this Envoy's allowance of its limit.
pub fn admit(
    plan: &Arc<Plan>,
    identity: &Identity,
    demand: &Demand,
    store: &dyn SharedStore,
    fleet: Fleet<'_>,
    now: u64,
) -> Result<Grant, QuotaRefusal> {
    let mut events = Vec::new();
    if demand.metered && demand.price.is_none() {
        if let Some(limit) = plan
            .limits
            .iter()
            .find(|l| l.metric == Metric::CostMicroUsd)
        {
            if plan.shadow {
                // Counted as over the limit: the cost cannot be known.
                events.push(stat::quota_shadow_exceeded(
                    &plan.name,
                    &format!("{}.unpriced", limit.name),
                ));
            } else {
                return Err(QuotaRefusal {
                    refusal: Refusal::new(
                        ErrorCode::ModelNotPriced,
                        format!(
                            "the plan limits cost ({}) and the gateway has no price for this model",
                            Quoted(&limit.name)
                        ),
                    ),
                    stats: vec![stat::quota_refused(&plan.name, &limit.name)],
                });
            }
        }
    }
    let mut grant = Grant {
        plan: Arc::clone(plan),
        keys: Vec::with_capacity(plan.groups.len()),
        held: Vec::with_capacity(plan.limits.len()),
        price: demand.price,
        events,
    };
    for group in &plan.groups {
        let mut asks = Vec::with_capacity(group.limits.len());
        for &index in &group.limits {
            let limit = &plan.limits[index];
            let ceiling = match ceiling_of(plan, limit, identity, fleet, now) {
                Ceiling::Count(ceiling) => ceiling,
                Ceiling::Unreachable => {
                    let mut stats = grant.settle(Settlement::Refund, store, now, true);
                    stats.push(stat::quota_refused(&plan.name, &limit.name));
                    return Err(QuotaRefusal {
                        refusal: Refusal::new(
                            ErrorCode::QuotaUnavailable,
                            format!(
                                "plan {} shares its limits across the gateway and fails \
                                 closed: the control plane that shares them has not answered \
                                 lately; try again later",
                                Quoted(&plan.name)
                            ),
                        )
                        .with_headers(vec![("retry-after".into(), "1".into())]),
                        stats,
                    });
                }
            };
            asks.push(Ask {
                slot: limit.slot,
                amount: limit.amount(&demand.tokens, demand.price),
                ceiling,
            });
        }
        let key = group.key(&plan.name, identity);
        match counter::admit(store, &key, &asks, now, !plan.shadow) {
            Ok(Admission::Admitted(counts)) => {
                for ((&index, ask), count) in group.limits.iter().zip(&asks).zip(counts) {
                    if count.used > ask.ceiling && ask.amount > 0 {
                        let name = &plan.limits[index].name;
                        grant.events.push(stat::quota_shadow_exceeded(&plan.name, name));
                    }
                    grant.held.push(Held {
                        limit: index,
                        key: grant.keys.len(),
                        window_start: count.window_start,
                        reserved: ask.amount,
                        used: count.used,
                        ceiling: ask.ceiling,
                    });
                }
                grant.keys.push(key);
            }
            Ok(Admission::Refused {
                index: refused,
                counts,
                resets_at,
            }) => {
                let index = group.limits[refused];
                let limit = &plan.limits[index];
                let (amount, ceiling) = (asks[refused].amount, asks[refused].ceiling);
                let used = counts[refused].used;
                // Only this Envoy's allowance is used up (the limit would take it): the
                // control plane weighs the refused demand and may grant more within a report
                // interval, so the client is told to retry in a second.
                let share_only = ceiling < limit.limit
                    && used.saturating_add(amount) <= limit.limit;
                if share_only {
                    if let Some(fleet) = fleet {
                        fleet.borrow_mut().denied(
                            &limit.key(identity),
                            limit.window.start(now),
                            amount,
                        );
                    }
                }
                // The counts as they are once this request's share is given back: those
                // held under other keys, and this key's limits up to the refusing one.
                let mut states: Vec<_> = grant
                    .states()
                    .into_iter()
                    .zip(&grant.held)
                    .map(|((i, used, reset), held)| (i, used.saturating_sub(held.reserved), reset))
                    .collect();
                for (at, &i) in group.limits.iter().enumerate().take(refused) {
                    let before = &plan.limits[i];
                    states.push((
                        i,
                        shown_used(before, counts[at].used, asks[at].ceiling),
                        before.window.end(counts[at].window_start),
                    ));
                }
                states.push((index, shown_used(limit, used, ceiling), resets_at));
                let mut stats = grant.settle(Settlement::Refund, store, now, true);
                stats.push(stat::quota_refused(&plan.name, &limit.name));
                // A request bigger than the whole limit never fits: no wait helps, so no
                // Retry-After. Neither it nor one that fits only after a reset longer than an
                // SDK waits can be fixed by the SDK's retries: `x-should-retry: false` stops
                // them (Retry-After still says when the window resets).
                let never_fits = amount > limit.limit;
                let retry_at = if never_fits {
                    0
                } else if share_only {
                    now + 1
                } else {
                    resets_at
                };
                let mut headers: Vec<(String, String)> =
                    rate_limit_headers(plan, &states, now, retry_at)
                        .into_iter()
                        .map(|(name, value)| (name.to_string(), value))
                        .collect();
                if never_fits
                    || !share_only && resets_at.saturating_sub(now) > SDK_RETRY_WAIT_SECONDS
                {
                    headers.push(("x-should-retry".to_string(), "false".to_string()));
                }
                let refusal = if share_only {
                    share_used_up(plan, limit, used, ceiling)
                } else {
                    over_limit(plan, limit, amount, used, resets_at, now)
                };
                return Err(QuotaRefusal {
                    refusal: refusal.with_headers(headers),
                    stats,
                });
            }
            Err(error) if plan.shadow => {
                log::warn!("quota of plan {} not counted: {error}", plan.name);
                grant.events.push(stat::QUOTA_STORE_ERRORS.to_string());
            }
            Err(error) => {
                log::warn!("quota of plan {} refused: {error}", plan.name);
                let mut stats = grant.settle(Settlement::Refund, store, now, true);
                stats.push(stat::QUOTA_STORE_ERRORS.to_string());
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

/// The count the client's headers show: what is left on this Envoy's allowance, as a count
/// of the whole limit.
fn shown_used(limit: &Limit, used: u64, ceiling: u64) -> u64 {
    used.saturating_add(limit.limit.saturating_sub(ceiling))
}

/// Whether a fifth of the quota or less is left (`near_limit` plans send headers then).
pub(super) fn near_limit(quota: u64, used: u64) -> bool {
    u128::from(quota.saturating_sub(used)) * 5 <= u128::from(quota)
}

fn share_used_up(plan: &Plan, limit: &Limit, used: u64, ceiling: u64) -> Refusal {
    let code = if limit.metric == Metric::CostMicroUsd {
        ErrorCode::BudgetExceeded
    } else {
        ErrorCode::RateLimitExceeded
    };
    Refusal::new(
        code,
        format!(
            "limit {} of plan {} ({} per {}) is shared across the gateway's proxies, and this \
             proxy's share is used up ({used} of {ceiling}); shares are rebalanced every second",
            Quoted(&limit.name),
            Quoted(&plan.name),
            limit.limit,
            window_name(limit.window)
        ),
    )
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
            "this request needs about {amount} {what}, more than the limit {} of plan {} allows per {} ({})",
            Quoted(&limit.name),
            Quoted(&plan.name),
            window_name(limit.window),
            limit.limit
        )
    } else {
        format!(
            "limit {} of plan {} is used up: {used} of {} {what} per {}; it resets in {}",
            Quoted(&limit.name),
            Quoted(&plan.name),
            limit.limit,
            window_name(limit.window),
            duration(resets_at.saturating_sub(now))
        )
    };
    Refusal::new(code, message)
}

impl Grant {
    #[cfg(any(test, feature = "test-support"))]
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// (limit, count after admission, reset time) of every limit held.
    fn states(&self) -> Vec<(usize, u64, u64)> {
        self.held
            .iter()
            .map(|h| {
                let limit = &self.plan.limits[h.limit];
                (
                    h.limit,
                    shown_used(limit, h.used, h.ceiling),
                    limit.window.end(h.window_start),
                )
            })
            .collect()
    }

    /// Whether the answer the grant let through carries rate-limit headers: never in shadow
    /// mode (turning shadow on must not change what clients see); with `near_limit` only when
    /// some limit held has a fifth of its quota or less left.
    pub fn sends_headers(&self) -> bool {
        !self.plan.shadow
            && match self.plan.rate_limit_headers {
                RateLimitHeaders::Always => true,
                RateLimitHeaders::NearLimit => self.held.iter().any(|h| {
                    let limit = &self.plan.limits[h.limit];
                    let used = shown_used(limit, h.used, h.ceiling);
                    near_limit(limit.limit, used)
                }),
            }
    }

    /// Whether the provider's rate-limit headers are kept from the client: always, except in
    /// shadow mode (which changes nothing clients see).
    pub fn hides_provider_rate_limits(&self) -> bool {
        !self.plan.shadow
    }

    /// The rate-limit headers for a response the grant let through, if it sends them.
    pub fn client_headers(&self, now: u64) -> Vec<(&'static str, String)> {
        if !self.sends_headers() {
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
        for (at, key) in self.keys.iter().enumerate() {
            let corrections: Vec<Correction> = self
                .held
                .iter()
                .filter(|h| h.key == at)
                .filter_map(|held| {
                    let limit = &self.plan.limits[held.limit];
                    if limit.metric == Metric::Requests && !all {
                        return None;
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
                    Some(Correction {
                        slot: limit.slot,
                        reserved_in: held.window_start,
                        delta,
                    })
                })
                .collect();
            if let Err(error) = counter::settle(store, key, &corrections, now) {
                log::warn!("quota of plan {} not settled: {error}", self.plan.name);
                failures.push(stat::QUOTA_SETTLE_ERRORS.to_string());
            }
        }
        failures
    }
}
