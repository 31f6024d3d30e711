//! Sums of the ledger's hours that are over, kept per query. A report counts in the hour the
//! control plane receives it, so an hour that has ended takes no more usage: a dashboard page
//! over 30 days sums the closed hours once per hour (and query) and only the current hour on
//! every load. Kept a few minutes at most, so a replica whose clock runs behind another's
//! (and still wrote into the hour just ended) is read again soon.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{UsageDimension, UsageFilter, UsageSums};

/// How long closed sums are trusted, whatever the hour.
const KEPT_SECONDS: u64 = 300;
/// The most queries kept (each holds at most one row per value: ~1 MB for 10 000 keys).
const KEPT_QUERIES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
struct QueryKey {
    by: Option<UsageDimension>,
    since_hour: u64,
    filter: UsageFilter,
}

#[derive(Debug, Clone)]
pub(super) enum Closed {
    Hours(Vec<(u64, UsageSums)>),
    Values(Vec<(String, UsageSums)>),
}

struct Entry {
    key: QueryKey,
    /// The current hour when it was summed: the closed hours end there.
    current_hour: u64,
    built_at: u64,
    closed: Closed,
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
    /// The closed sums of a query, from the cache or from `sum` (which then fills it).
    pub(super) fn get_or<E>(
        &self,
        by: Option<UsageDimension>,
        since_hour: u64,
        filter: &UsageFilter,
        now: u64,
        sum: impl FnOnce(u64) -> Result<Closed, E>,
    ) -> Result<Closed, E> {
        let current_hour = now - now % 3600;
        let key = QueryKey {
            by,
            since_hour,
            filter: filter.clone(),
        };
        if let Ok(entries) = self.entries.lock() {
            if let Some(entry) = entries.iter().find(|e| {
                e.key == key
                    && e.current_hour == current_hour
                    && now.saturating_sub(e.built_at) < KEPT_SECONDS
            }) {
                return Ok(entry.closed.clone());
            }
        }
        let closed = sum(current_hour)?;
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|e| e.key != key && e.current_hour == current_hour);
            if entries.len() >= KEPT_QUERIES {
                entries.remove(0);
            }
            entries.push(Entry {
                key,
                current_hour,
                built_at: now,
                closed: closed.clone(),
            });
        }
        Ok(closed)
    }
}

pub(super) fn add(total: &mut UsageSums, more: &UsageSums) {
    total.requests = total.requests.saturating_add(more.requests);
    total.input_tokens = total.input_tokens.saturating_add(more.input_tokens);
    total.output_tokens = total.output_tokens.saturating_add(more.output_tokens);
    total.cached_input_tokens = total
        .cached_input_tokens
        .saturating_add(more.cached_input_tokens);
    total.cost_micro_usd = total.cost_micro_usd.saturating_add(more.cost_micro_usd);
}

/// Closed hours and the current hour's sums per value, as one list: largest cost first (then
/// requests, then the value), at most `limit`.
pub(super) fn merge_values(
    closed: Vec<(String, UsageSums)>,
    current: Vec<(String, UsageSums)>,
    limit: usize,
) -> Vec<(String, UsageSums)> {
    let mut by_value: HashMap<String, UsageSums> = closed.into_iter().collect();
    for (value, sums) in current {
        add(by_value.entry(value).or_default(), &sums);
    }
    let mut merged: Vec<(String, UsageSums)> = by_value.into_iter().collect();
    merged.sort_by(|a, b| {
        (b.1.cost_micro_usd, b.1.requests)
            .cmp(&(a.1.cost_micro_usd, a.1.requests))
            .then_with(|| a.0.cmp(&b.0))
    });
    merged.truncate(limit);
    merged
}

#[cfg(test)]
mod tests {
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
}
