use super::fake::FakeStore;
use super::*;

const NOW: u64 = 1_709_214_330;

#[test]
fn admits_up_to_the_limit_exactly() {
    let store = FakeStore::default();
    let outcomes: Vec<_> = (0..5)
        .map(|_| admit(&store, "k", Window::Minute, NOW, 1, 3, true).unwrap())
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
    let store = FakeStore::with_conflicts(5, 1, NOW);
    let outcome = admit(&store, "k", Window::Minute, NOW, 1, 100, true).unwrap();
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
    let store = FakeStore::with_conflicts(3, 1, NOW);
    assert!(matches!(
        admit(&store, "k", Window::Minute, NOW, 1, 3, true).unwrap(),
        Admission::Refused { used: 3, .. }
    ));
    assert_eq!(store.used("k"), 3);
}

#[test]
fn endless_contention_is_an_error_not_an_admission() {
    let store = FakeStore::with_conflicts(MAX_CAS_ATTEMPTS, 0, NOW);
    assert_eq!(
        admit(&store, "k", Window::Minute, NOW, 1, 100, true),
        Err(QuotaError::Contended)
    );
}

#[test]
fn a_new_window_rolls_the_count_over_in_place() {
    let store = FakeStore::default();
    assert!(matches!(
        admit(&store, "k", Window::Minute, NOW, 3, 3, true).unwrap(),
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        admit(&store, "k", Window::Minute, NOW, 1, 3, true).unwrap(),
        Admission::Refused { .. }
    ));
    let next_minute = Window::Minute.end(NOW);
    assert!(matches!(
        admit(&store, "k", Window::Minute, next_minute, 1, 3, true).unwrap(),
        Admission::Admitted { used: 1, .. }
    ));
    assert_eq!(
        store.key_count(),
        1,
        "one key per (subject, limit), never one per window"
    );
}

#[test]
fn settlement_refunds_and_charges_the_difference() {
    let store = FakeStore::default();
    let Admission::Admitted { window_start, .. } =
        admit(&store, "k", Window::Hour, NOW, 1000, 10_000, true).unwrap()
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
        admit(&store, "k", Window::Minute, NOW, 50, 100, true).unwrap()
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
        admit(&store, "k", Window::Day, NOW, 1, 1, true).unwrap(),
        Admission::Admitted { used: 1, .. }
    ));
}

#[test]
fn a_worker_behind_the_clock_does_not_roll_a_newer_window_back() {
    let store = FakeStore::default();
    let next_minute = Window::Minute.end(NOW);
    admit(&store, "k", Window::Minute, next_minute, 2, 10, true).unwrap();
    // A worker still at NOW sees the newer window and counts into it.
    let outcome = admit(&store, "k", Window::Minute, NOW, 1, 10, true).unwrap();
    assert_eq!(
        outcome,
        Admission::Admitted {
            used: 3,
            window_start: next_minute
        }
    );
    assert_eq!(store.used("k"), 3);
}
