use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::*;

const NOW: u64 = 1_709_214_330;

/// A store that can let another writer win the next `conflicts` writes: each lost race
/// adds `rival_amount` to the key, as a concurrent worker would.
#[derive(Default)]
struct FakeStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    conflicts: Cell<u32>,
    rival_amount: Cell<u64>,
}

impl FakeStore {
    fn with_conflicts(conflicts: u32, rival_amount: u64) -> Self {
        let store = FakeStore::default();
        store.conflicts.set(conflicts);
        store.rival_amount.set(rival_amount);
        store
    }

    fn used(&self, key: &str) -> u64 {
        self.map
            .borrow()
            .get(key)
            .and_then(|(v, _)| Count::decode(v))
            .map_or(0, |c| c.used)
    }

    fn write(&self, key: &str, value: Vec<u8>) {
        self.next_cas.set(self.next_cas.get() + 1);
        self.map
            .borrow_mut()
            .insert(key.to_string(), (value, self.next_cas.get()));
    }
}

impl SharedStore for FakeStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, QuotaError> {
        Ok(self.map.borrow().get(key).cloned())
    }

    fn compare_and_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<bool, QuotaError> {
        if self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            let start = Window::Minute.start(NOW);
            let used = self.used(key) + self.rival_amount.get();
            self.write(
                key,
                Count {
                    window_start: start,
                    used,
                }
                .encode()
                .to_vec(),
            );
            return Ok(false);
        }
        let current = self.map.borrow().get(key).map(|(_, c)| *c);
        if current != cas {
            return Ok(false);
        }
        self.write(key, value.to_vec());
        Ok(true)
    }
}

#[test]
fn admits_up_to_the_limit_exactly() {
    let store = FakeStore::default();
    let outcomes: Vec<_> = (0..5)
        .map(|_| admit(&store, "k", Window::Minute, NOW, 1, 3).unwrap())
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|a| matches!(a, Admission::Admitted { .. }))
            .count(),
        3
    );
    assert_eq!(
        outcomes[4],
        Admission::Refused {
            used: 3,
            resets_at: Window::Minute.end(NOW)
        },
        "a refusal says when the window resets"
    );
    assert_eq!(store.used("k"), 3);
}

#[test]
fn lost_races_are_retried_without_losing_an_increment() {
    let store = FakeStore::with_conflicts(5, 1);
    let outcome = admit(&store, "k", Window::Minute, NOW, 1, 100).unwrap();
    // Five rival increments landed first; ours comes on top of them.
    assert_eq!(
        outcome,
        Admission::Admitted {
            used: 6,
            window_start: Window::Minute.start(NOW)
        }
    );
    assert_eq!(store.used("k"), 6);
}

#[test]
fn rivals_that_fill_the_limit_turn_an_admission_into_a_refusal() {
    let store = FakeStore::with_conflicts(3, 1);
    assert!(matches!(
        admit(&store, "k", Window::Minute, NOW, 1, 3).unwrap(),
        Admission::Refused { used: 3, .. }
    ));
    assert_eq!(store.used("k"), 3);
}

#[test]
fn endless_contention_is_an_error_not_an_admission() {
    let store = FakeStore::with_conflicts(MAX_CAS_ATTEMPTS, 0);
    assert_eq!(
        admit(&store, "k", Window::Minute, NOW, 1, 100),
        Err(QuotaError::Contended)
    );
}

#[test]
fn a_new_window_rolls_the_count_over_in_place() {
    let store = FakeStore::default();
    assert!(matches!(
        admit(&store, "k", Window::Minute, NOW, 3, 3).unwrap(),
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        admit(&store, "k", Window::Minute, NOW, 1, 3).unwrap(),
        Admission::Refused { .. }
    ));
    let next_minute = Window::Minute.end(NOW);
    assert!(matches!(
        admit(&store, "k", Window::Minute, next_minute, 1, 3).unwrap(),
        Admission::Admitted { used: 1, .. }
    ));
    assert_eq!(
        store.map.borrow().len(),
        1,
        "one key per (subject, limit), never one per window"
    );
}

#[test]
fn settlement_refunds_and_charges_the_difference() {
    let store = FakeStore::default();
    let Admission::Admitted { window_start, .. } =
        admit(&store, "k", Window::Hour, NOW, 1000, 10_000).unwrap()
    else {
        panic!("admitted")
    };
    settle(&store, "k", Window::Hour, NOW, window_start, -600).unwrap();
    assert_eq!(store.used("k"), 400);
    settle(&store, "k", Window::Hour, NOW, window_start, 250).unwrap();
    assert_eq!(store.used("k"), 650);
}

#[test]
fn a_refund_for_an_ended_window_is_dropped_and_a_charge_lands_in_the_current_one() {
    let store = FakeStore::default();
    let Admission::Admitted { window_start, .. } =
        admit(&store, "k", Window::Minute, NOW, 50, 100).unwrap()
    else {
        panic!("admitted")
    };
    let later = Window::Minute.end(NOW) + 5;
    settle(&store, "k", Window::Minute, later, window_start, -50).unwrap();
    assert_eq!(
        store.used("k"),
        50,
        "the old window's count stays as it was"
    );
    settle(&store, "k", Window::Minute, later, window_start, 20).unwrap();
    assert_eq!(
        store.used("k"),
        20,
        "a new window started, holding only the extra charge"
    );
}

#[test]
fn unreadable_values_count_as_empty() {
    let store = FakeStore::default();
    store.write("k", b"junk".to_vec());
    assert!(matches!(
        admit(&store, "k", Window::Day, NOW, 1, 1).unwrap(),
        Admission::Admitted { used: 1, .. }
    ));
}

#[test]
fn a_worker_behind_the_clock_does_not_roll_a_newer_window_back() {
    let store = FakeStore::default();
    let next_minute = Window::Minute.end(NOW);
    admit(&store, "k", Window::Minute, next_minute, 2, 10).unwrap();
    // A worker still at NOW sees the newer window and counts into it.
    let outcome = admit(&store, "k", Window::Minute, NOW, 1, 10).unwrap();
    assert_eq!(
        outcome,
        Admission::Admitted {
            used: 3,
            window_start: next_minute
        }
    );
    assert_eq!(store.used("k"), 3);
}
