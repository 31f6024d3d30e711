use std::collections::BTreeMap;

use super::*;
use crate::config::LimitConfig;
use crate::quota::counter::fake::FakeStore;
use crate::quota::counter::MAX_CAS_ATTEMPTS;
use crate::identity::Grants;
use crate::testing::limit;

// 2024-02-29T13:45:30Z.
const NOW: u64 = 1_709_214_330;

fn plan(limits: Vec<LimitConfig>) -> PlanConfig {
    crate::testing::plan(limits, 100)
}

fn price(model: &str, input: u64, output: u64, cached: Option<u64>) -> PriceConfig {
    PriceConfig {
        model: model.into(),
        input,
        output,
        cached_input: cached,
    }
}

fn quotas(plans: Vec<(&str, PlanConfig)>, prices: &[PriceConfig]) -> Quotas {
    let plans: BTreeMap<String, PlanConfig> =
        plans.into_iter().map(|(n, p)| (n.to_string(), p)).collect();
    Quotas::compile_strict(&plans, None, prices).unwrap()
}

fn who(subject: &str, tenant: Option<&str>, plan: Option<&str>) -> Identity {
    Identity::api_key(
        "k".into(),
        subject,
        Arc::new(Grants {
            tenant: tenant.map(str::to_string),
            plan: plan.map(str::to_string),
            ..Grants::default()
        }),
        None,
    )
}

fn tokens(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: 0,
    }
}

/// A request to an endpoint that reports usage, with no price.
fn demand(input: u64, output: u64) -> Demand {
    Demand {
        tokens: tokens(input, output),
        price: None,
        metered: true,
    }
}

/// A request that uses no tokens (a model list).
fn unmetered() -> Demand {
    Demand::default()
}

fn header<'a, N: AsRef<str>>(headers: &'a [(N, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.as_ref() == name)
        .map(|(_, v)| v.as_str())
}

fn used(store: &FakeStore, plan: &Plan, index: usize, identity: &Identity) -> u64 {
    store.used(&plan.limits[index].key(identity))
}

#[test]
fn configuration_mistakes_are_refused_with_their_place() {
    let compile =
        |plans: Vec<(&str, PlanConfig)>, default: Option<&str>, prices: &[PriceConfig]| {
            let plans: BTreeMap<String, PlanConfig> =
                plans.into_iter().map(|(n, p)| (n.to_string(), p)).collect();
            Quotas::compile_strict(&plans, default, prices)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
    let rpm = || limit("rpm", Metric::Requests, Window::Minute, 5);
    assert!(compile(vec![("free tier", plan(vec![rpm()]))], None, &[]).contains("plan name"));
    assert!(compile(vec![("free", plan(vec![rpm(), rpm()]))], None, &[]).contains("twice"));
    assert!(compile(
        vec![(
            "free",
            plan(vec![limit("usd", Metric::CostMicroUsd, Window::Month, 5)])
        )],
        None,
        &[]
    )
    .contains("prices"));
    assert!(compile(vec![("free", plan(vec![rpm()]))], Some("gold"), &[]).contains("gold"));
    assert!(compile(vec![], None, &[price("", 1, 1, None)]).contains("prices[0]"));
}

#[test]
fn a_credential_counts_against_its_plan_the_default_or_nothing() {
    let plans: BTreeMap<String, PlanConfig> = [
        ("free".to_string(), plan(vec![])),
        ("pro".to_string(), plan(vec![])),
    ]
    .into();
    let with_default = Quotas::compile_strict(&plans, Some("free"), &[]).unwrap();
    let name = |q: &Quotas, plan: Option<&str>| {
        q.plan_for(&who("a", None, plan))
            .map(|p| p.map(|p| p.name.clone()))
    };
    assert_eq!(name(&with_default, Some("pro")), Ok(Some("pro".into())));
    assert_eq!(name(&with_default, None), Ok(Some("free".into())));
    let without_default = Quotas::compile_strict(&plans, None, &[]).unwrap();
    assert_eq!(name(&without_default, None), Ok(None));
    let unknown = name(&with_default, Some("gold")).unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownPlan);
    assert_eq!(unknown.code.status(), 403);
}

/// Found while writing the `policy` fuzz target's invariants (its seed `price-max` pins it):
/// prices and counts near u64::MAX overflowed the u128 sum, a panic natively and a wrapped,
/// tiny cost in the Wasm build.
#[test]
fn cost_of_absurd_prices_and_counts_saturates() {
    let q = quotas(vec![], &[price("m", u64::MAX, u64::MAX, None)]);
    let most = Usage {
        input_tokens: u64::MAX,
        output_tokens: u64::MAX,
        cached_input_tokens: u64::MAX / 2,
    };
    assert_eq!(q.price_for("m").unwrap().cost(&most), u64::MAX);
}

#[test]
fn cost_is_priced_per_million_with_cached_input_and_rounded_up() {
    let q = quotas(
        vec![],
        &[
            price("gpt-4o-mini*", 150_000, 600_000, Some(75_000)),
            price("gpt-4o*", 2_500_000, 10_000_000, None),
        ],
    );
    let mini = q.price_for("gpt-4o-mini-2024-07-18").unwrap();
    let usage = Usage {
        input_tokens: 1000,
        output_tokens: 500,
        cached_input_tokens: 400,
    };
    // 600 × 0.15 + 400 × 0.075 + 500 × 0.6 = 90 + 30 + 300 micro-USD.
    assert_eq!(mini.cost(&usage), 420);
    let big = q.price_for("gpt-4o").unwrap();
    assert_eq!(
        big.cached_input, big.input,
        "cached input defaults to the input price"
    );
    assert_eq!(big.cost(&tokens(1, 0)), 3, "2.5 micro-USD rounds up");
    assert_eq!(q.price_for("claude-3"), None);
}

#[test]
fn a_request_limit_admits_exactly_its_limit_and_says_when_it_resets() {
    let q = quotas(
        vec![(
            "free",
            plan(vec![limit("rpm", Metric::Requests, Window::Minute, 3)]),
        )],
        &[],
    );
    let alice = who("alice", None, Some("free"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let store = FakeStore::default();
    for _ in 0..3 {
        admit(plan, &alice, &demand(0, 0), &store, None, NOW).unwrap();
    }
    let refused = admit(plan, &alice, &demand(0, 0), &store, None, NOW).unwrap_err();
    assert_eq!(refused.refusal.code, ErrorCode::RateLimitExceeded);
    assert_eq!(refused.refusal.code.status(), 429);
    assert_eq!(refused.stats, ["tokenward.quota.refused.free.rpm"]);
    assert!(refused
        .refusal
        .message
        .contains("3 of 3 requests per minute"));
    let headers = refused.refusal.headers();
    assert_eq!(header(&headers, "retry-after"), Some("30"));
    assert_eq!(
        header(&headers, "ratelimit-policy"),
        Some("\"rpm\";q=3;w=60")
    );
    assert_eq!(header(&headers, "ratelimit"), Some("\"rpm\";r=0;t=30"));
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(
        header(&headers, "x-ratelimit-remaining-requests"),
        Some("0")
    );
    assert_eq!(header(&headers, "x-ratelimit-reset-requests"), Some("30s"));
    assert_eq!(used(&store, plan, 0, &alice), 3);
    // Another subject has its own count; the next minute starts afresh.
    admit(
        plan,
        &who("bob", None, Some("free")),
        &demand(0, 0),
        &store,
        None,
        NOW,
    )
    .unwrap();
    admit(plan, &alice, &demand(0, 0), &store, None, NOW + 30).unwrap();
}

#[test]
fn limits_are_all_or_nothing() {
    let q = quotas(
        vec![(
            "free",
            plan(vec![
                limit("rpm", Metric::Requests, Window::Minute, 100),
                limit("tpd", Metric::TotalTokens, Window::Day, 1000),
            ]),
        )],
        &[],
    );
    let alice = who("alice", None, Some("free"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let store = FakeStore::default();
    admit(plan, &alice, &demand(600, 100), &store, None, NOW).unwrap();
    let refused = admit(plan, &alice, &demand(300, 100), &store, None, NOW).unwrap_err();
    assert_eq!(refused.stats, ["tokenward.quota.refused.free.tpd"]);
    assert_eq!(
        used(&store, plan, 0, &alice),
        1,
        "the refused request's count under the other limit was given back"
    );
    assert_eq!(used(&store, plan, 1, &alice), 700);
    let headers = refused.refusal.headers();
    assert_eq!(
        header(&headers, "x-ratelimit-remaining-tokens"),
        Some("300")
    );
    assert_eq!(
        header(&headers, "x-ratelimit-reset-tokens"),
        Some("10h14m30s")
    );
    assert_eq!(
        header(&headers, "ratelimit"),
        Some("\"rpm\";r=99;t=30, \"tpd\";r=300;t=36870")
    );
}

#[test]
fn a_request_bigger_than_the_whole_limit_says_so() {
    let q = quotas(
        vec![(
            "free",
            plan(vec![limit("tpm", Metric::InputTokens, Window::Minute, 50)]),
        )],
        &[],
    );
    let alice = who("alice", None, Some("free"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let refused = admit(plan, &alice, &demand(80, 0), &FakeStore::default(), None, NOW).unwrap_err();
    assert!(refused.refusal.message.contains("more than the limit"));
    // No wait helps: no Retry-After, and the SDKs are told not to retry.
    let headers = refused.refusal.headers();
    assert_eq!(header(&headers, "retry-after"), None);
    assert_eq!(header(&headers, "x-should-retry"), Some("false"));
}

#[test]
fn a_limit_that_resets_later_than_an_sdk_waits_says_so_and_when() {
    let q = quotas(
        vec![
            (
                "minute",
                plan(vec![limit("rpm", Metric::Requests, Window::Minute, 1)]),
            ),
            (
                "day",
                plan(vec![limit("rpd", Metric::Requests, Window::Day, 1)]),
            ),
        ],
        &[],
    );
    let store = FakeStore::default();
    let refused_by = |name: &str| {
        let who = who("alice", None, Some(name));
        let plan = q.plan_for(&who).unwrap().unwrap();
        admit(plan, &who, &demand(1, 0), &store, None, NOW).unwrap();
        admit(plan, &who, &demand(1, 0), &store, None, NOW)
            .unwrap_err()
            .refusal
            .headers()
    };
    // A minute: the SDK's own retry after Retry-After can succeed.
    let minute = refused_by("minute");
    assert_eq!(header(&minute, "retry-after"), Some("30"));
    assert_eq!(header(&minute, "x-should-retry"), None);
    // A day: Retry-After stays truthful, and the SDKs stop.
    let day = refused_by("day");
    let retry: u64 = header(&day, "retry-after").unwrap().parse().unwrap();
    assert!(retry > SDK_RETRY_WAIT_SECONDS, "{retry}");
    assert_eq!(header(&day, "x-should-retry"), Some("false"));
}

#[test]
fn tenant_limits_count_every_credential_of_the_tenant() {
    let mut shared = limit("tenant-rpm", Metric::Requests, Window::Hour, 2);
    shared.per = LimitScope::Tenant;
    let q = quotas(vec![("team", plan(vec![shared]))], &[]);
    let store = FakeStore::default();
    let alice = who("alice", Some("acme"), Some("team"));
    let bob = who("bob", Some("acme"), Some("team"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    admit(plan, &alice, &demand(0, 0), &store, None, NOW).unwrap();
    admit(plan, &bob, &demand(0, 0), &store, None, NOW).unwrap();
    assert!(admit(plan, &alice, &demand(0, 0), &store, None, NOW).is_err());
    // Without a tenant, a credential is its own tenant.
    let loner = who("carol", None, Some("team"));
    admit(plan, &loner, &demand(0, 0), &store, None, NOW).unwrap();
}

#[test]
fn shadow_mode_counts_everything_and_refuses_nothing() {
    let mut shadow = plan(vec![limit("rpm", Metric::Requests, Window::Minute, 2)]);
    shadow.shadow = true;
    let q = quotas(vec![("trial", shadow)], &[]);
    let alice = who("alice", None, Some("trial"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let store = FakeStore::default();
    let grants: Vec<Grant> = (0..5)
        .map(|_| admit(plan, &alice, &demand(0, 0), &store, None, NOW).unwrap())
        .collect();
    assert_eq!(used(&store, plan, 0, &alice), 5);
    let over: Vec<_> = grants.iter().flat_map(|g| g.events.iter()).collect();
    assert_eq!(over.len(), 3);
    assert!(over
        .iter()
        .all(|e| *e == "tokenward.quota.shadow_exceeded.trial.rpm"));
    assert!(
        grants[4].client_headers(NOW).is_empty(),
        "clients see no difference in shadow mode"
    );
}

#[test]
fn a_contended_counter_refuses_with_retry_after_and_holds_nothing() {
    let mut per_tenant = limit("rpm", Metric::Requests, Window::Minute, 100);
    per_tenant.per = LimitScope::Tenant;
    let q = quotas(
        vec![(
            "free",
            plan(vec![
                limit("rpd", Metric::Requests, Window::Day, 100),
                per_tenant,
            ]),
        )],
        &[],
    );
    let alice = who("alice", Some("acme"), Some("free"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let contended = FakeStore::with_conflicts(MAX_CAS_ATTEMPTS, 0);
    let refused = admit(plan, &alice, &demand(0, 0), &contended, None, NOW).unwrap_err();
    assert_eq!(refused.refusal.code, ErrorCode::RateLimitExceeded);
    assert_eq!(header(&refused.refusal.headers(), "retry-after"), Some("1"));
    assert_eq!(refused.stats, ["tokenward.quota.store_errors"]);
    assert_eq!(used(&contended, plan, 0, &alice), 0, "nothing was counted");
    // The subject's key goes through, then the tenant's stays contended: the subject's
    // count is given back (the refund is the first write after the conflicts run out).
    let late = FakeStore::with_conflicts_after(1, MAX_CAS_ATTEMPTS, 0);
    let refused = admit(plan, &alice, &demand(0, 0), &late, None, NOW).unwrap_err();
    assert_eq!(refused.refusal.code, ErrorCode::RateLimitExceeded);
    assert_eq!(
        used(&late, plan, 0, &alice),
        0,
        "the subject's count was given back"
    );
}

#[test]
fn a_request_reads_and_writes_one_key_per_scope_however_many_limits() {
    let mut per_tenant = limit("tenant-rpm", Metric::Requests, Window::Minute, 1000);
    per_tenant.per = LimitScope::Tenant;
    let q = quotas(
        vec![(
            "team",
            plan(vec![
                limit("rpm", Metric::Requests, Window::Minute, 100),
                limit("rpd", Metric::Requests, Window::Day, 1000),
                limit("tpm", Metric::TotalTokens, Window::Minute, 10_000),
                limit("tpd", Metric::TotalTokens, Window::Day, 100_000),
                per_tenant,
            ]),
        )],
        &[],
    );
    let alice = who("alice", Some("acme"), Some("team"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let store = FakeStore::default();
    let grant = admit(plan, &alice, &demand(10, 20), &store, None, NOW).unwrap();
    assert_eq!((store.reads(), store.writes()), (2, 2), "subject's key and tenant's key");
    assert_eq!(store.keys_with("tw:qg:team:s:alice"), 1);
    assert_eq!(store.keys_with("tw:qg:team:t:acme"), 1);
    assert_eq!(store.key_count(), 2);
    assert_eq!([0, 1, 2, 3, 4].map(|i| used(&store, plan, i, &alice)), [1, 1, 30, 30, 1]);
    assert!(grant
        .settle(Settlement::Usage(tokens(10, 5)), &store, NOW, false)
        .is_empty());
    assert_eq!(
        (store.reads(), store.writes()),
        (3, 3),
        "the settlement touches only the key holding token limits, once"
    );
    assert_eq!([0, 1, 2, 3, 4].map(|i| used(&store, plan, i, &alice)), [1, 1, 15, 15, 1]);
}

#[test]
fn settlement_charges_the_real_usage_and_refunds_per_the_rule() {
    let q = quotas(
        vec![(
            "free",
            plan(vec![
                limit("rpm", Metric::Requests, Window::Minute, 100),
                limit("in", Metric::InputTokens, Window::Day, 10_000),
                limit("out", Metric::OutputTokens, Window::Day, 10_000),
                limit("usd", Metric::CostMicroUsd, Window::Month, 1_000_000),
            ]),
        )],
        &[price("*", 1_000_000, 2_000_000, None)],
    );
    let alice = who("alice", None, Some("free"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let store = FakeStore::default();
    let priced = |input, output| Demand {
        tokens: tokens(input, output),
        price: q.price_for("any"),
        metered: true,
    };
    let grant = admit(plan, &alice, &priced(100, 500), &store, None, NOW).unwrap();
    assert_eq!(
        used(&store, plan, 3, &alice),
        100 + 1000,
        "reserved: 1 + 2 micro-USD a token"
    );
    assert!(grant
        .settle(Settlement::Usage(tokens(80, 7)), &store, NOW + 1, false)
        .is_empty());
    assert_eq!(
        [0, 1, 2, 3].map(|i| used(&store, plan, i, &alice)),
        [1, 80, 7, 94],
        "exactly the usage; the request count stays"
    );
    let grant = admit(plan, &alice, &priced(100, 500), &store, None, NOW).unwrap();
    grant.settle(Settlement::Refund, &store, NOW + 1, false);
    assert_eq!(
        [0, 1, 2, 3].map(|i| used(&store, plan, i, &alice)),
        [2, 80, 7, 94]
    );
    let grant = admit(plan, &alice, &priced(100, 500), &store, None, NOW).unwrap();
    grant.settle(Settlement::Unfinished(None), &store, NOW + 1, false);
    assert_eq!(
        [0, 1, 2, 3].map(|i| used(&store, plan, i, &alice)),
        [3, 180, 507, 1194],
        "unfinished without usage: the reservation stays"
    );
    let grant = admit(plan, &alice, &priced(10, 10), &store, None, NOW).unwrap();
    grant.settle(
        Settlement::Unfinished(Some(tokens(10, 3))),
        &store,
        NOW + 1,
        false,
    );
    assert_eq!(
        [0, 1, 2, 3].map(|i| used(&store, plan, i, &alice)),
        [4, 190, 517, 1224],
        "a stream cut short after reporting 3 of 10 output tokens is charged the reservation"
    );
}

#[test]
fn a_priced_limit_refuses_a_model_without_a_price() {
    let q = quotas(
        vec![(
            "free",
            plan(vec![limit("usd", Metric::CostMicroUsd, Window::Month, 100)]),
        )],
        &[price("gpt-*", 1, 1, None)],
    );
    let alice = who("alice", None, Some("free"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let refused = admit(plan, &alice, &demand(10, 10), &FakeStore::default(), None, NOW).unwrap_err();
    assert_eq!(refused.refusal.code, ErrorCode::ModelNotPriced);
    let unknown = admit(plan, &alice, &demand(0, 0), &FakeStore::default(), None, NOW).unwrap_err();
    assert_eq!(
        unknown.refusal.code,
        ErrorCode::ModelNotPriced,
        "a metered request with a zero estimate is still refused"
    );
    // A request that uses no tokens (a model list) needs no price.
    admit(plan, &alice, &unmetered(), &FakeStore::default(), None, NOW).unwrap();
    // A shadow plan lets it through and counts it as over the limit.
    let mut shadow = plan_config_with_cost();
    shadow.shadow = true;
    let q = quotas(vec![("free", shadow)], &[price("gpt-*", 1, 1, None)]);
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let grant = admit(plan, &alice, &demand(10, 10), &FakeStore::default(), None, NOW).unwrap();
    assert_eq!(
        grant.events,
        ["tokenward.quota.shadow_exceeded.free.usd.unpriced"]
    );
}

fn plan_config_with_cost() -> PlanConfig {
    plan(vec![limit("usd", Metric::CostMicroUsd, Window::Month, 100)])
}

#[test]
fn spent_money_is_budget_exceeded() {
    let q = quotas(
        vec![(
            "free",
            plan(vec![limit("usd", Metric::CostMicroUsd, Window::Month, 100)]),
        )],
        &[price("*", 1_000_000, 1_000_000, None)],
    );
    let alice = who("alice", None, Some("free"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let priced = Demand {
        tokens: tokens(60, 60),
        price: q.price_for("m"),
        metered: true,
    };
    let refused = admit(plan, &alice, &priced, &FakeStore::default(), None, NOW).unwrap_err();
    assert_eq!(refused.refusal.code, ErrorCode::BudgetExceeded);
    assert_eq!(refused.refusal.code.error_type(), "insufficient_quota");
    let headers = refused.refusal.headers();
    assert_eq!(
        header(&headers, "ratelimit-policy"),
        Some("\"usd\";q=100;w=2505600;qu=\"micro-usd\"")
    );
    assert_eq!(header(&headers, "x-ratelimit-remaining-tokens"), None);
}

#[test]
fn the_output_allowance_is_what_the_tightest_limit_leaves() {
    let q = quotas(
        vec![(
            "free",
            plan(vec![
                limit("rpm", Metric::Requests, Window::Minute, 100),
                limit("total", Metric::TotalTokens, Window::Day, 1000),
                limit("usd", Metric::CostMicroUsd, Window::Day, 2000),
            ]),
        )],
        &[price("*", 1_000_000, 4_000_000, None)],
    );
    let alice = who("alice", None, Some("free"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let store = FakeStore::default();
    let ask = Demand {
        tokens: tokens(200, 5000),
        price: q.price_for("m"),
        metered: true,
    };
    // total: 1000 - 200 = 800; cost: (2000 - 200) / 4 = 450.
    assert_eq!(
        output_allowance(plan, &alice, &ask, &store, None, NOW),
        Ok(Some(450))
    );
    admit(
        plan,
        &alice,
        &Demand {
            tokens: tokens(100, 200),
            ..ask
        },
        &store,
        None,
        NOW,
    )
    .unwrap();
    // total: 1000 - 300 - 200 = 500; cost: (2000 - 900 - 200) / 4 = 225.
    assert_eq!(
        output_allowance(plan, &alice, &ask, &store, None, NOW),
        Ok(Some(225))
    );
    let requests_only = quotas(vec![("free", plan_requests_only())], &[]);
    let p = requests_only.plan_for(&alice).unwrap().unwrap();
    assert_eq!(output_allowance(p, &alice, &ask, &store, None, NOW), Ok(None));
}

fn plan_requests_only() -> PlanConfig {
    plan(vec![limit("rpm", Metric::Requests, Window::Minute, 1)])
}

#[test]
fn success_headers_show_the_tightest_limits() {
    let q = quotas(
        vec![(
            "free",
            plan(vec![
                limit("rpm", Metric::Requests, Window::Minute, 10),
                limit("rpd", Metric::Requests, Window::Day, 1000),
                limit("tpm", Metric::TotalTokens, Window::Minute, 5000),
            ]),
        )],
        &[],
    );
    let alice = who("alice", None, Some("free"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let grant = admit(plan, &alice, &demand(100, 100), &FakeStore::default(), None, NOW).unwrap();
    let headers = grant.client_headers(NOW);
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), Some("10"));
    assert_eq!(
        header(&headers, "x-ratelimit-remaining-requests"),
        Some("9")
    );
    assert_eq!(header(&headers, "x-ratelimit-limit-tokens"), Some("5000"));
    assert_eq!(
        header(&headers, "x-ratelimit-remaining-tokens"),
        Some("4800")
    );
    assert_eq!(header(&headers, "retry-after"), None);
    assert_eq!(
        header(&headers, "ratelimit-policy"),
        Some("\"rpm\";q=10;w=60, \"rpd\";q=1000;w=86400, \"tpm\";q=5000;w=60;qu=\"tokens\"")
    );
}

#[test]
fn a_near_limit_plan_sends_headers_only_at_a_fifth_left_and_on_refusals() {
    let mut near = plan(vec![
        limit("rpm", Metric::Requests, Window::Minute, 10),
        limit("tpm", Metric::TotalTokens, Window::Minute, 1000),
    ]);
    near.rate_limit_headers = RateLimitHeaders::NearLimit;
    let q = quotas(vec![("near", near)], &[]);
    let alice = who("alice", None, Some("near"));
    let plan = q.plan_for(&alice).unwrap().unwrap();
    let store = FakeStore::default();
    let mut sent = Vec::new();
    for _ in 0..10 {
        let grant = admit(plan, &alice, &demand(0, 0), &store, None, NOW).unwrap();
        let headers = grant.client_headers(NOW);
        assert_eq!(grant.sends_headers(), !headers.is_empty());
        sent.push(header(&headers, "x-ratelimit-remaining-requests").map(str::to_string));
    }
    // 10 requests a minute: the 8th leaves 2 (a fifth) and is the first to say so.
    let remaining: Vec<Option<&str>> = sent.iter().map(Option::as_deref).collect();
    assert_eq!(
        remaining,
        [None, None, None, None, None, None, None, Some("2"), Some("1"), Some("0")]
    );
    // A refusal always carries them.
    let refused = admit(plan, &alice, &demand(0, 0), &store, None, NOW).unwrap_err();
    let headers = refused.refusal.headers();
    assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(header(&headers, "retry-after"), Some("30"));

    // Any limit near its quota is enough: a token limit with a fifth left, requests far from theirs.
    let bob = who("bob", None, Some("near"));
    let far = admit(plan, &bob, &demand(100, 100), &store, None, NOW).unwrap();
    assert!(far.client_headers(NOW).is_empty());
    let close = admit(plan, &bob, &demand(300, 300), &store, None, NOW).unwrap();
    let headers = close.client_headers(NOW);
    assert_eq!(header(&headers, "x-ratelimit-remaining-tokens"), Some("200"));
    assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), Some("8"));
}

#[test]
fn near_limit_is_a_fifth_of_the_quota_or_less() {
    use super::admission::near_limit;
    assert!(!near_limit(10, 7));
    assert!(near_limit(10, 8));
    assert!(near_limit(10, 11));
    assert!(near_limit(0, 0));
    assert!(!near_limit(u64::MAX, 0));
    assert!(near_limit(u64::MAX, u64::MAX / 5 * 4 + 1));
}

#[test]
fn counter_keys_survive_a_recompile_and_change_with_what_is_counted() {
    let build = |metric| {
        quotas(
            vec![("free", plan(vec![limit("l", metric, Window::Day, 10)]))],
            &[],
        )
    };
    let alice = who("alice", None, Some("free"));
    let key = |q: &Quotas| q.plan_for(&alice).unwrap().unwrap().limits[0].key(&alice);
    assert_eq!(key(&build(Metric::Requests)), key(&build(Metric::Requests)));
    assert_ne!(
        key(&build(Metric::Requests)),
        key(&build(Metric::TotalTokens))
    );
    assert_eq!(
        key(&build(Metric::Requests)),
        "tw:q:free:l:requests:day:s:alice"
    );
}

#[test]
fn durations_read_like_openai_reset_times() {
    assert_eq!(duration(0), "0s");
    assert_eq!(duration(59), "59s");
    assert_eq!(duration(360), "6m0s");
    assert_eq!(duration(7205), "2h0m5s");
    assert_eq!(number(0), "0");
    assert_eq!(number(u64::MAX), u64::MAX.to_string());
}

#[test]
fn numbers_are_written_as_to_string_writes_them() {
    let mut samples = vec![0, 1, 9, 10, 99, u64::MAX, u64::MAX - 1];
    for digits in 1..=19u32 {
        let power = 10u64.pow(digits);
        samples.extend([power - 1, power, power + 1, power + 7, power / 2 * 3]);
    }
    samples.extend([100_000_000, 100_000_001, 10_000_000_000_000_000, 10_000_000_100_000_000]);
    for n in samples {
        assert_eq!(number(n), n.to_string());
    }
}
