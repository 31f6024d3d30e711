//! Fleet-wide quotas (docs/quotas.md): every report's counters of plan limits come in here,
//! and the answer is the reporting Envoy's allowance of each limit the fleet uses now — a
//! ceiling on its own counter for the window. Allowances are leases on what is left: what
//! every other Envoy may still count to (its ceiling, granted or said) is set aside first, so
//! the ceilings of the fleet never add up past the limit; of the rest, each Envoy gets a
//! share weighted by its demand in the window (what it counted plus what its allowance
//! refused). A lone busy Envoy gets nearly all of it, idle ones shrink to a sliver on their
//! next report. `quota_state` is what `tokenward quota show` reads.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tokenward_filter::config::PlanConfig;
use tokenward_filter::sync::{key_parts, FleetAnswer, FleetGrant, SyncReport};
use tokenward_filter::window::Window;

use super::*;
use crate::store::FleetRow;

/// An Envoy process that reported this recently is part of the fleet (heartbeats come every
/// 10 s).
pub const LIVE_SECONDS: u64 = 15;
/// Counters any Envoy reported this recently are answered to every Envoy, so an Envoy that
/// does not use one shrinks its allowance of it too.
pub const ACTIVE_MS: u64 = 10_000;
/// The least weight of a live Envoy, in millionths of the fleet's demand: one that asked for
/// nothing yet still gets a sliver, so its first request is not refused for a report interval.
const MIN_WEIGHT_PPM: u64 = 10_000;
const PPM: u64 = 1_000_000;

/// One Envoy's allowance of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allotment {
    pub ceiling: u64,
    pub share_ppm: u64,
}

/// A counter's rows in the window in force, as `allot` weighs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holder {
    pub used: u64,
    pub denied: u64,
    /// The most it may count to: its ceiling, granted or said.
    pub promised: u64,
    pub share_ppm: u64,
    /// Reported lately: its demand counts.
    pub live: bool,
}

/// The allowance of holder `me` among `holders` (one window of one counter) under `limit`.
/// What the others may still count to is set aside; of what is left after every count, `me`
/// gets its demand-weighted share, never more than is not set aside. The shares of the live
/// holders add up to at most one whole: the one an Envoy counts to in a window the control
/// plane has not granted yet (a new window, or while it is unreachable).
pub fn allot(limit: u64, holders: &[Holder], me: usize) -> Allotment {
    let Some(mine) = holders.get(me) else {
        return Allotment {
            ceiling: 0,
            share_ppm: 0,
        };
    };
    let used: u64 = holders.iter().map(|h| h.used).fold(0, u64::saturating_add);
    let free = limit.saturating_sub(used);
    let set_aside: u64 = holders
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .map(|(_, h)| h.promised.saturating_sub(h.used))
        .fold(0, u64::saturating_add);
    let available = free.saturating_sub(set_aside);
    let wanted = |h: &Holder| h.used.saturating_add(h.denied);
    let weighed: Vec<&Holder> = holders
        .iter()
        .enumerate()
        .filter(|(i, h)| h.live || *i == me)
        .map(|(_, h)| h)
        .collect();
    let demand: u64 = weighed
        .iter()
        .map(|h| wanted(h))
        .fold(0, u64::saturating_add);
    let least = (u128::from(demand) * u128::from(MIN_WEIGHT_PPM) / u128::from(PPM)).max(1);
    let weight = |h: &Holder| u128::from(wanted(h)).max(least);
    let total: u128 = weighed.iter().map(|h| weight(h)).sum();
    let mut share_ppm = u64::try_from(weight(mine) * u128::from(PPM) / total.max(1)).unwrap_or(PPM);
    let others_share: u64 = holders
        .iter()
        .enumerate()
        .filter(|(i, h)| *i != me && h.live)
        .map(|(_, h)| h.share_ppm)
        .sum();
    share_ppm = share_ppm.min(PPM.saturating_sub(others_share));
    let target =
        u64::try_from((u128::from(free) * weight(mine)).div_ceil(total.max(1))).unwrap_or(u64::MAX);
    Allotment {
        ceiling: mine.used.saturating_add(target.min(available)),
        share_ppm,
    }
}

/// A counter key's limit and window, from the plans in force; `None` for a key of a plan or
/// limit the configuration no longer has.
fn limit_of(plans: &HashMap<String, PlanConfig>, key: &str) -> Option<(u64, Window)> {
    let parts = key_parts(key)?;
    let limit = plans
        .get(parts.plan)?
        .limits
        .iter()
        .find(|l| l.name == parts.limit && l.window == parts.window)?;
    Some((limit.limit, limit.window))
}

/// A counter's state across the fleet, for `quota show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuotaState {
    pub plan: String,
    pub limit: String,
    pub metric: String,
    pub window: Window,
    /// `subject` or `tenant`.
    pub per: &'static str,
    pub id: String,
    pub limit_value: u64,
    pub used: u64,
    pub remaining: u64,
    pub resets_at: u64,
    /// Envoy processes that counted it in the window.
    pub proxies: usize,
}

impl<S: Store + ?Sized> ControlPlane<S> {
    /// Takes a report's counters and answers the reporting Envoy with its allowances: of every
    /// counter it reported and every counter the fleet reported lately.
    pub fn fleet_answer(
        &self,
        report: &SyncReport,
        now_ms: u64,
    ) -> Result<FleetAnswer, PlaneError> {
        let now = now_ms / 1000;
        self.serialized(|| {
            let plans: HashMap<String, PlanConfig> = self.store.plans()?.into_iter().collect();
            let rules = self.alert_rules()?;
            let streams: HashSet<(String, String)> = self
                .store
                .report_streams_since(now.saturating_sub(LIVE_SECONDS))?
                .into_iter()
                .collect();
            let fleet_size = u64::try_from(streams.len()).unwrap_or(u64::MAX).max(1);
            let me = (report.node.clone(), report.boot.clone());
            let mut keys = BTreeSet::new();
            for counter in &report.counters {
                let Some((_, window)) = limit_of(&plans, &counter.key) else {
                    continue;
                };
                let start = counter.window_start;
                if window.start(start) != start || window.end(start) <= now {
                    continue;
                }
                keys.insert(counter.key.clone());
                let rows = self.store.fleet_rows(&counter.key)?;
                let held = rows
                    .into_iter()
                    .find(|r| r.window_start == start && r.node == me.0 && r.boot == me.1);
                if held.as_ref().is_some_and(|r| r.seq > report.seq) {
                    continue;
                }
                let held = held.unwrap_or_default();
                self.store.put_fleet_row(&FleetRow {
                    key: counter.key.clone(),
                    window_start: start,
                    window_end: window.end(start),
                    node: me.0.clone(),
                    boot: me.1.clone(),
                    seq: report.seq,
                    used: counter.used,
                    denied: counter.denied,
                    held: counter.ceiling,
                    granted: held.granted,
                    share_ppm: held.share_ppm,
                    reported_at: now_ms,
                })?;
            }
            let reported = keys.clone();
            keys.extend(
                self.store
                    .fleet_keys_since(now_ms.saturating_sub(ACTIVE_MS), now)?,
            );
            let mut grants = Vec::with_capacity(keys.len());
            for key in keys {
                let Some((limit, window)) = limit_of(&plans, &key) else {
                    continue;
                };
                let start = window.start(now);
                let rows = self.store.fleet_rows(&key)?;
                // The share each process had in the latest earlier window: what it counts to
                // in this one until it is granted.
                let mut last_share: BTreeMap<(&str, &str), u64> = BTreeMap::new();
                for row in rows.iter().filter(|r| r.window_start < start) {
                    last_share.insert((row.node.as_str(), row.boot.as_str()), row.share_ppm);
                }
                let unheard = |node: &str, boot: &str| match last_share.get(&(node, boot)) {
                    Some(share) => {
                        u64::try_from(u128::from(limit) * u128::from(*share) / u128::from(PPM))
                            .unwrap_or(limit)
                    }
                    None => limit.div_ceil(fleet_size),
                };
                let mut current: Vec<FleetRow> = rows
                    .iter()
                    .filter(|r| r.window_start == start)
                    .cloned()
                    .collect();
                let used: u64 = current.iter().map(|r| r.used).fold(0, u64::saturating_add);
                self.fire_alerts(&rules, &key, (start, window.end(start)), used, limit, now)?;
                let mine = match current
                    .iter()
                    .position(|r| r.node == me.0 && r.boot == me.1)
                {
                    Some(index) => {
                        // An Envoy numbers a report only once the last one was answered: a
                        // later report than the one this row was granted in says the Envoy
                        // counts to that grant now, even if it did not name the counter.
                        let row = &mut current[index];
                        if !reported.contains(&key) && report.seq > row.seq {
                            row.held = row.granted;
                        }
                        index
                    }
                    None => {
                        current.push(FleetRow {
                            key: key.clone(),
                            window_start: start,
                            window_end: window.end(start),
                            node: me.0.clone(),
                            boot: me.1.clone(),
                            held: unheard(&me.0, &me.1),
                            ..FleetRow::default()
                        });
                        current.len() - 1
                    }
                };
                let mut holders: Vec<Holder> = current
                    .iter()
                    .map(|r| Holder {
                        used: r.used,
                        denied: r.denied,
                        promised: r.held.max(r.granted).max(r.used),
                        share_ppm: r.share_ppm,
                        live: streams.contains(&(r.node.clone(), r.boot.clone())),
                    })
                    .collect();
                // Live processes with no row yet count to their unheard share at any moment.
                for (node, boot) in &streams {
                    if !current.iter().any(|r| &r.node == node && &r.boot == boot) {
                        holders.push(Holder {
                            promised: unheard(node, boot),
                            live: true,
                            ..Holder::default()
                        });
                    }
                }
                let allotment = allot(limit, &holders, mine);
                let mut row = current.swap_remove(mine);
                row.seq = row.seq.max(report.seq);
                row.granted = allotment.ceiling;
                row.share_ppm = allotment.share_ppm;
                self.store.put_fleet_row(&row)?;
                grants.push(FleetGrant {
                    key,
                    window_start: start,
                    ceiling: allotment.ceiling,
                    share_ppm: u32::try_from(allotment.share_ppm).unwrap_or(u32::MAX),
                });
            }
            Ok(FleetAnswer { fleet_size, grants })
        })
    }

    /// Every counter of the windows in force whose subject or tenant is the one asked for
    /// (every counter when neither is), summed over the fleet; fullest first.
    pub fn quota_state(
        &self,
        subject: Option<&str>,
        tenant: Option<&str>,
        now: u64,
    ) -> Result<Vec<QuotaState>, PlaneError> {
        let plans: HashMap<String, PlanConfig> = self.store.plans()?.into_iter().collect();
        let mut by_key: BTreeMap<String, (u64, usize)> = BTreeMap::new();
        for row in self.store.fleet_current(now)? {
            let entry = by_key.entry(row.key).or_default();
            entry.0 = entry.0.saturating_add(row.used);
            if row.seq > 0 {
                entry.1 += 1;
            }
        }
        let mut states = Vec::new();
        for (key, (used, proxies)) in by_key {
            let Some(parts) = key_parts(&key) else {
                continue;
            };
            let wanted = match parts.scope {
                _ if subject.is_none() && tenant.is_none() => true,
                "s" | "ts" => subject == Some(parts.id),
                "t" => tenant == Some(parts.id),
                _ => false,
            };
            let Some((limit, window)) = limit_of(&plans, &key).filter(|_| wanted) else {
                continue;
            };
            states.push(QuotaState {
                plan: parts.plan.to_string(),
                limit: parts.limit.to_string(),
                metric: parts.metric.to_string(),
                window,
                per: if parts.scope == "t" {
                    "tenant"
                } else {
                    "subject"
                },
                id: parts.id.to_string(),
                limit_value: limit,
                used,
                remaining: limit.saturating_sub(used),
                resets_at: window.end(now),
                proxies,
            });
        }
        states.sort_by(|a, b| {
            let fill =
                |s: &QuotaState| u128::from(s.used) * 1000 / u128::from(s.limit_value.max(1));
            fill(b)
                .cmp(&fill(a))
                .then_with(|| a.plan.cmp(&b.plan).then(a.limit.cmp(&b.limit)))
        });
        Ok(states)
    }
}

#[cfg(test)]
mod tests;
