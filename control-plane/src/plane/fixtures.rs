//! Fixtures of the plane's tests: an initialised installation on in-memory SQLite, and one
//! with plan `team` of one per-minute limit (and a price for every model, so a cost limit
//! loads).

use tokenward_filter::config::{LimitConfig, LimitScope, Metric, PriceConfig};
use tokenward_filter::window::Window;

use super::*;
use crate::store::SqliteStore;

pub fn initialised(now: u64) -> ControlPlane<SqliteStore> {
    let plane = ControlPlane::new(
        SqliteStore::in_memory().unwrap(),
        MasterKey::generate().unwrap(),
        "test",
    );
    plane
        .init(
            &InitSettings {
                issuer: "https://cp.test".into(),
                audiences: vec!["gateway".into()],
                alg: Alg::EdDSA,
            },
            now,
        )
        .unwrap();
    plane
}

/// Plan `team` with the per-minute limit `name` of `limit` `metric`, counted `per`.
pub fn with_team_plan(
    now: u64,
    name: &str,
    metric: Metric,
    per: LimitScope,
    limit: u64,
) -> ControlPlane<SqliteStore> {
    let plane = initialised(now);
    plane
        .put_price(
            PriceConfig {
                model: "*".into(),
                input: 1,
                output: 1,
                cached_input: None,
            },
            now,
        )
        .unwrap();
    let plan = tokenward_filter::testing::plan(
        vec![LimitConfig {
            name: name.into(),
            metric,
            window: Window::Minute,
            limit,
            per,
        }],
        0,
    );
    plane.put_plan("team", plan, now).unwrap();
    plane
}
