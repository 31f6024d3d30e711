//! Sums of the ledger's hours that are over, kept per unfiltered query. A report counts in the
//! hour the control plane receives it, so an hour that has ended takes no more usage: a
//! dashboard page over 30 days sums the closed hours once per hour (and query) and only the
//! current hour on every load. Kept a few minutes at most, so a replica whose clock runs
//! behind another's (and still wrote into the hour just ended) is read again soon.
//!
//! Memory is bounded three ways: a query by value keeps only its largest `KEPT_VALUES` (grouped
//! by credential, a month holds one value per token: millions), the cache holds at most
//! `KEPT_QUERIES` queries and `KEPT_ROWS` rows in all, and filtered queries are not kept at all
//! (each filter value would be an entry of its own that nobody reads twice). Entries are
//! shared (`Arc`), never copied under the lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::store::{UsageDimension, UsageSums};

/// How long closed sums are trusted, whatever the hour.
const KEPT_SECONDS: u64 = 300;
/// The most queries kept.
const KEPT_QUERIES: usize = 32;
/// The most rows (hours or values) kept over all queries: about a megabyte.
const KEPT_ROWS: usize = 10_000;
/// The largest values a query by value keeps: ten times the dashboard's top 50, so the
/// current hour can reorder them without the store being asked again.
pub(super) const KEPT_VALUES: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QueryKey {
    by: Option<UsageDimension>,
    since_hour: u64,
}

/// The closed hours of one query.
#[derive(Debug)]
pub(super) enum Closed {
    Hours(Vec<(u64, UsageSums)>),
    Values(ClosedTop),
}

impl Closed {
    fn rows(&self) -> usize {
        match self {
            Closed::Hours(hours) => hours.len(),
            Closed::Values(top) => top.values.len(),
        }
    }
}

/// The largest values of the closed hours, in the store's order (largest cost, then
/// requests, then the value).
#[derive(Debug)]
pub(super) struct ClosedTop {
    pub(super) values: Vec<(String, UsageSums)>,
    /// Whether these are all the values; otherwise every value left out sums no more than the
    /// last one kept.
    pub(super) complete: bool,
}

impl ClosedTop {
    /// The store's answer to a read of at most `KEPT_VALUES + 1` values.
    pub(super) fn from_read(mut values: Vec<(String, UsageSums)>) -> Self {
        let complete = values.len() <= KEPT_VALUES;
        values.truncate(KEPT_VALUES);
        ClosedTop { values, complete }
    }
}

struct Entry {
    key: QueryKey,
    /// The current hour when it was summed: the closed hours end there.
    current_hour: u64,
    built_at: u64,
    closed: Arc<Closed>,
}

#[derive(Default)]
pub struct ClosedHours {
    entries: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for ClosedHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClosedHours(…)")
    }
}

impl ClosedHours {
    /// The closed sums of an unfiltered query, from the cache or from `sum` (which then fills
    /// it). A filtered query must not come here: it is read from the store whole.
    pub(super) fn get_or<E>(
        &self,
        by: Option<UsageDimension>,
        since_hour: u64,
        now: u64,
        sum: impl FnOnce(u64) -> Result<Closed, E>,
    ) -> Result<Arc<Closed>, E> {
        let current_hour = now - now % 3600;
        let key = QueryKey { by, since_hour };
        // A panic elsewhere while the lock was held leaves the entries whole (each change
        // below is one push or remove): a poisoned lock must not turn the cache off.
        if let Some(entry) = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|e| {
                e.key == key
                    && e.current_hour == current_hour
                    && now.saturating_sub(e.built_at) < KEPT_SECONDS
            })
        {
            return Ok(Arc::clone(&entry.closed));
        }
        let closed = Arc::new(sum(current_hour)?);
        let rows = closed.rows();
        if rows > KEPT_ROWS {
            return Ok(closed);
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|e| e.key != key && e.current_hour == current_hour);
        // Oldest first out, until the new entry fits both bounds.
        while !entries.is_empty()
            && (entries.len() >= KEPT_QUERIES
                || held_rows(&entries).saturating_add(rows) > KEPT_ROWS)
        {
            entries.remove(0);
        }
        entries.push(Entry {
            key,
            current_hour,
            built_at: now,
            closed: Arc::clone(&closed),
        });
        Ok(closed)
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        (entries.len(), held_rows(&entries))
    }
}

fn held_rows(entries: &[Entry]) -> usize {
    entries.iter().map(|e| e.closed.rows()).sum()
}

/// The order of a top: largest cost first, then requests, then the value.
fn top_order(a: &(String, UsageSums), b: &(String, UsageSums)) -> std::cmp::Ordering {
    (b.1.cost_micro_usd, b.1.requests)
        .cmp(&(a.1.cost_micro_usd, a.1.requests))
        .then_with(|| a.0.cmp(&b.0))
}

/// The closed hours' top and the current hour's sums per value (all of them), as one list in
/// the top's order, at most `limit`; `None` when the kept top cannot tell it exactly (a
/// value left out of it may now rank among the first `limit`: the caller asks the store).
pub(super) fn merge_top(
    closed: &ClosedTop,
    current: Vec<(String, UsageSums)>,
    limit: usize,
) -> Option<Vec<(String, UsageSums)>> {
    if !closed.complete && limit > closed.values.len() {
        return None;
    }
    let mut by_value: HashMap<&str, UsageSums> = closed
        .values
        .iter()
        .map(|(value, sums)| (value.as_str(), sums.clone()))
        .collect();
    let mut left_out = Vec::new();
    for (value, sums) in &current {
        match by_value.get_mut(value.as_str()) {
            Some(total) => total.add(sums),
            None if closed.complete => {
                by_value.insert(value, sums.clone());
            }
            None => left_out.push(sums),
        }
    }
    let mut merged: Vec<(String, UsageSums)> = by_value
        .into_iter()
        .map(|(value, sums)| (value.to_string(), sums))
        .collect();
    merged.sort_by(top_order);
    merged.truncate(limit);
    if let (Some((_, floor)), Some((_, last))) = (closed.values.last(), merged.last()) {
        // A value left out summed no more than `floor` in the closed hours (by cost, then
        // requests): with its current hour added it must stay strictly below the last one
        // shown, or the answer is not known here.
        for sums in left_out {
            let most = (
                floor.cost_micro_usd.saturating_add(sums.cost_micro_usd),
                floor.requests.saturating_add(sums.requests),
            );
            if most >= (last.cost_micro_usd, last.requests) {
                return None;
            }
        }
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::plane::{ControlPlane, UsageGroup, UsageQuery};
    use crate::store::SqliteStore;

    // 1_800_000_000 is a whole hour.
    const HOUR: u64 = 1_800_000_000;

    fn report(plane: &ControlPlane<SqliteStore>, seq: u64, subject: &str, requests: u64, at: u64) {
        let report = serde_json::json!({
            "node": "n", "boot": "b", "seq": seq,
            "entries": [{"subject": subject, "provider": "openai", "model": "gpt-4o",
                         "credential": format!("key-{subject}"), "requests": requests,
                         "input_tokens": 1, "output_tokens": 1, "cached_input_tokens": 0,
                         "cost_micro_usd": requests}],
        });
        plane
            .record_usage(&serde_json::from_value(report).unwrap(), at)
            .unwrap();
    }

    #[test]
    fn long_periods_add_the_current_hour_live_to_the_ended_hours_kept_until_the_hour_turns() {
        let plane = ControlPlane::new(
            SqliteStore::in_memory().unwrap(),
            MasterKey::generate().unwrap(),
            "test",
        );
        let query = UsageQuery {
            since: HOUR - 24 * 3600,
            ..UsageQuery::default()
        };
        let requests = |now: u64| -> Vec<(Option<String>, u64)> {
            plane
                .usage_top(&query, UsageGroup::Subject, 10, now)
                .unwrap()
                .into_iter()
                .map(|(v, s)| (v, s.requests))
                .collect()
        };
        let series = |now: u64| -> Vec<(u64, u64)> {
            plane
                .usage_series(&query, now)
                .unwrap()
                .into_iter()
                .map(|(h, s)| (h, s.requests))
                .collect()
        };
        report(&plane, 1, "alice", 5, HOUR - 3600 + 10);
        report(&plane, 2, "bob", 2, HOUR + 10);
        let now = HOUR + 60;
        assert_eq!(
            requests(now),
            vec![(Some("alice".into()), 5), (Some("bob".into()), 2)]
        );
        assert_eq!(series(now), vec![(HOUR - 3600, 5), (HOUR, 2)]);
        // The current hour moves on every read; the ended ones come from the cache.
        report(&plane, 3, "bob", 10, HOUR + 100);
        assert_eq!(
            requests(now + 60),
            vec![(Some("bob".into()), 12), (Some("alice".into()), 5)]
        );
        assert_eq!(series(now + 60), vec![(HOUR - 3600, 5), (HOUR, 12)]);
        // The hour turns: what was current is now summed with the ended hours.
        report(&plane, 4, "carol", 1, HOUR + 3600 + 5);
        let later = HOUR + 3600 + 30;
        assert_eq!(
            requests(later),
            vec![
                (Some("bob".into()), 12),
                (Some("alice".into()), 5),
                (Some("carol".into()), 1)
            ]
        );
        assert_eq!(
            series(later),
            vec![(HOUR - 3600, 5), (HOUR, 12), (HOUR + 3600, 1)]
        );
        // The top's limit applies after the merge.
        assert_eq!(
            plane
                .usage_top(&query, UsageGroup::Subject, 1, later)
                .unwrap()[0]
                .0
                .as_deref(),
            Some("bob")
        );
    }

    fn plane() -> ControlPlane<SqliteStore> {
        ControlPlane::new(
            SqliteStore::in_memory().unwrap(),
            MasterKey::generate().unwrap(),
            "test",
        )
    }

    /// One report with a credential per `(credential, requests)`, each costing its requests.
    fn report_many(plane: &ControlPlane<SqliteStore>, seq: u64, usage: &[(String, u64)], at: u64) {
        let entries: Vec<serde_json::Value> = usage
            .iter()
            .map(|(credential, requests)| {
                serde_json::json!({"subject": "s", "provider": "openai", "model": "gpt-4o",
                    "credential": credential, "requests": requests, "input_tokens": 1,
                    "output_tokens": 1, "cached_input_tokens": 0, "cost_micro_usd": requests})
            })
            .collect();
        let report = serde_json::json!({"node": "n", "boot": "b", "seq": seq, "entries": entries});
        plane
            .record_usage(&serde_json::from_value(report).unwrap(), at)
            .unwrap();
    }

    #[test]
    fn a_top_by_credential_keeps_only_its_largest_values_and_still_answers_exactly() {
        let plane = plane();
        let query = UsageQuery {
            since: HOUR - 24 * 3600,
            ..UsageQuery::default()
        };
        let credentials = KEPT_VALUES + 300;
        let closed: Vec<(String, u64)> = (1..=credentials as u64)
            .map(|i| (format!("tok-{i:04}"), i))
            .collect();
        report_many(&plane, 1, &closed, HOUR - 3600 + 10);
        let now = HOUR + 60;
        let top = |now: u64| -> Vec<(String, u64)> {
            plane
                .usage_top(&query, UsageGroup::Credential, 3, now)
                .unwrap()
                .into_iter()
                .map(|(v, s)| (v.unwrap(), s.requests))
                .collect()
        };
        let expected = |first: &[(&str, u64)]| -> Vec<(String, u64)> {
            first.iter().map(|(v, r)| (v.to_string(), *r)).collect()
        };
        assert_eq!(
            top(now),
            expected(&[("tok-0800", 800), ("tok-0799", 799), ("tok-0798", 798)])
        );
        // A month of tokens is not held: only the largest values of the closed hours.
        assert_eq!(plane.closed_hours.held(), (1, KEPT_VALUES));
        // A token far outside the kept values surges in the current hour: it leads.
        report_many(&plane, 2, &[("tok-0002".into(), 5_000)], HOUR + 100);
        assert_eq!(
            top(now + 60),
            expected(&[("tok-0002", 5_002), ("tok-0800", 800), ("tok-0799", 799)])
        );
        // One that grew but not enough to rank stays out, and a kept one that grew moves up.
        report_many(
            &plane,
            3,
            &[("tok-0003".into(), 10), ("tok-0797".into(), 100)],
            HOUR + 200,
        );
        assert_eq!(
            top(now + 120),
            expected(&[("tok-0002", 5_002), ("tok-0797", 897), ("tok-0800", 800)])
        );
        assert_eq!(plane.closed_hours.held(), (1, KEPT_VALUES));
    }

    #[test]
    fn filtered_queries_are_not_kept_and_still_see_the_current_hour() {
        let plane = plane();
        report(&plane, 1, "alice", 5, HOUR - 3600 + 10);
        report(&plane, 2, "bob", 2, HOUR - 3600 + 20);
        let query = UsageQuery {
            since: HOUR - 24 * 3600,
            subject: Some("alice".into()),
            ..UsageQuery::default()
        };
        let now = HOUR + 60;
        let requests = |now: u64| {
            let top = plane
                .usage_top(&query, UsageGroup::Credential, 10, now)
                .unwrap();
            let series = plane.usage_series(&query, now).unwrap();
            (
                top.into_iter()
                    .map(|(v, s)| (v.unwrap(), s.requests))
                    .collect::<Vec<_>>(),
                series.into_iter().map(|(_, s)| s.requests).sum::<u64>(),
            )
        };
        assert_eq!(requests(now), (vec![("key-alice".to_string(), 5)], 5));
        assert_eq!(plane.closed_hours.held(), (0, 0));
        report(&plane, 3, "alice", 1, HOUR + 100);
        assert_eq!(requests(now + 60), (vec![("key-alice".to_string(), 6)], 6));
        assert_eq!(plane.closed_hours.held(), (0, 0));
    }

    #[test]
    fn the_cache_holds_no_more_rows_than_its_bound_however_many_queries() {
        let cache = ClosedHours::default();
        let values = |n: usize| {
            Closed::Values(ClosedTop::from_read(
                (0..n)
                    .map(|i| (format!("v{i}"), UsageSums::default()))
                    .collect(),
            ))
        };
        for since in 0..30 {
            cache
                .get_or(Some(UsageDimension::Credential), since * 3600, HOUR, |_| {
                    Ok::<_, ()>(values(KEPT_VALUES + 1))
                })
                .unwrap();
            let (entries, rows) = cache.held();
            assert!(
                entries <= KEPT_QUERIES && rows <= KEPT_ROWS,
                "{entries} {rows}"
            );
        }
        assert_eq!(cache.held(), (KEPT_ROWS / KEPT_VALUES, KEPT_ROWS));
        // The newest is served from the cache: `sum` is not called again.
        let kept = cache
            .get_or(Some(UsageDimension::Credential), 29 * 3600, HOUR, |_| {
                Err::<Closed, _>("summed again")
            })
            .unwrap();
        assert_eq!(kept.rows(), KEPT_VALUES);
        // An entry larger than the whole bound is answered, not kept.
        let hours = cache
            .get_or(None, 0, HOUR, |_| {
                Ok::<_, ()>(Closed::Hours(vec![
                    (0, UsageSums::default());
                    KEPT_ROWS + 1
                ]))
            })
            .unwrap();
        assert_eq!(hours.rows(), KEPT_ROWS + 1);
        assert_eq!(cache.held(), (KEPT_ROWS / KEPT_VALUES, KEPT_ROWS));
    }

    #[test]
    fn a_poisoned_lock_does_not_turn_the_cache_off() {
        let cache = Arc::new(ClosedHours::default());
        let poisoner = Arc::clone(&cache);
        let _ = std::thread::spawn(move || {
            let _held = poisoner.entries.lock().unwrap();
            panic!("a panic while the lock is held");
        })
        .join();
        assert!(cache.entries.is_poisoned());
        cache
            .get_or(None, 0, HOUR, |_| {
                Ok::<_, ()>(Closed::Hours(vec![(0, UsageSums::default())]))
            })
            .unwrap();
        let kept = cache
            .get_or(None, 0, HOUR, |_| Err::<Closed, _>("summed again"))
            .unwrap();
        assert_eq!(kept.rows(), 1);
    }
}
