use super::fake::FakeStore;
use super::*;

const NOW: u64 = 1_709_214_330;

fn slot(name: &str, window: Window) -> Slot {
    Slot::new(name, "requests", window, "w")
}

fn ask(name: &str, window: Window, amount: u64, ceiling: u64) -> Ask {
    Ask {
        slot: slot(name, window),
        amount,
        ceiling,
    }
}

fn used(store: &FakeStore, name: &str, window: Window) -> u64 {
    let id = slot(name, window).id;
    store
        .slots("k")
        .into_iter()
        .find(|(i, _)| *i == id)
        .map_or(0, |(_, c)| c.used)
}

fn admitted(outcome: &Admission) -> Vec<u64> {
    match outcome {
        Admission::Admitted(counts) => counts.iter().map(|c| c.used).collect(),
        Admission::Refused { .. } => panic!("refused: {outcome:?}"),
    }
}

#[test]
fn admits_up_to_the_limit_exactly() {
    let store = FakeStore::default();
    let rpm = [ask("rpm", Window::Minute, 1, 3)];
    let outcomes: Vec<_> = (0..5)
        .map(|_| admit(&store, "k", &rpm, NOW, true).unwrap())
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|a| matches!(a, Admission::Admitted(_)))
            .count(),
        3
    );
    assert_eq!(
        outcomes[4],
        Admission::Refused {
            index: 0,
            counts: vec![Count {
                window_start: Window::Minute.start(NOW),
                used: 3
            }],
            resets_at: Window::Minute.end(NOW)
        },
        "a refusal says the count and when the window resets"
    );
    assert_eq!(used(&store, "rpm", Window::Minute), 3);
}

#[test]
fn every_limit_of_a_key_is_admitted_in_one_read_and_one_write_or_none_is() {
    let store = FakeStore::default();
    let asks = [
        ask("rpm", Window::Minute, 1, 10),
        ask("tpd", Window::Day, 40, 100),
        ask("tpm", Window::Minute, 0, 5),
    ];
    assert_eq!(
        admitted(&admit(&store, "k", &asks, NOW, true).unwrap()),
        [1, 40, 0]
    );
    assert_eq!((store.reads(), store.writes()), (1, 1), "one get, one CAS");
    admit(&store, "k", &asks, NOW, true).unwrap();
    // The third would take the day's tokens to 120: refused, and the request count is not
    // taken either.
    let refused = admit(&store, "k", &asks, NOW, true).unwrap();
    assert!(matches!(refused, Admission::Refused { index: 1, .. }), "{refused:?}");
    assert_eq!(used(&store, "rpm", Window::Minute), 2);
    assert_eq!(used(&store, "tpd", Window::Day), 80);
    assert_eq!(store.writes(), 2, "a refusal writes nothing");
}

#[test]
fn asks_of_nothing_only_read() {
    let store = FakeStore::default();
    let asks = [ask("tpd", Window::Day, 0, 100)];
    admit(&store, "k", &asks, NOW, true).unwrap();
    assert_eq!((store.reads(), store.writes(), store.key_count()), (1, 0, 0));
}

#[test]
fn lost_races_are_retried_without_losing_an_increment() {
    let store = FakeStore::with_conflicts(5, 1);
    let asks = [ask("rpm", Window::Minute, 1, 100), ask("rpd", Window::Day, 1, 100)];
    let outcome = admit(&store, "k", &asks, NOW, true).unwrap();
    // Five rival increments landed first in each limit; ours comes on top of them.
    assert_eq!(admitted(&outcome), [6, 6]);
    assert_eq!(used(&store, "rpm", Window::Minute), 6);
    assert_eq!(used(&store, "rpd", Window::Day), 6);
}

#[test]
fn rivals_that_fill_the_limit_turn_an_admission_into_a_refusal() {
    let store = FakeStore::with_conflicts(3, 1);
    assert!(matches!(
        admit(&store, "k", &[ask("rpm", Window::Minute, 1, 3)], NOW, true).unwrap(),
        Admission::Refused { index: 0, .. }
    ));
    assert_eq!(used(&store, "rpm", Window::Minute), 3);
}

#[test]
fn endless_contention_is_an_error_not_an_admission() {
    let store = FakeStore::with_conflicts(MAX_CAS_ATTEMPTS, 0);
    assert_eq!(
        admit(&store, "k", &[ask("rpm", Window::Minute, 1, 100)], NOW, true),
        Err(QuotaError::Contended)
    );
}

#[test]
fn a_new_window_rolls_the_count_over_in_place() {
    let store = FakeStore::default();
    let asks = |amount| [ask("rpm", Window::Minute, amount, 3)];
    admitted(&admit(&store, "k", &asks(3), NOW, true).unwrap());
    assert!(matches!(
        admit(&store, "k", &asks(1), NOW, true).unwrap(),
        Admission::Refused { .. }
    ));
    let next_minute = Window::Minute.end(NOW);
    assert_eq!(
        admitted(&admit(&store, "k", &asks(1), next_minute, true).unwrap()),
        [1]
    );
    assert_eq!(
        store.key_count(),
        1,
        "one key per (plan, scope, subject), never one per window"
    );
}

#[test]
fn shadow_mode_counts_past_the_ceiling() {
    let store = FakeStore::default();
    let asks = [ask("rpm", Window::Minute, 2, 1)];
    assert_eq!(admitted(&admit(&store, "k", &asks, NOW, false).unwrap()), [2]);
}

#[test]
fn settlement_corrects_every_slot_in_one_write_and_keeps_the_others() {
    let store = FakeStore::default();
    let asks = [ask("rpm", Window::Minute, 1, 10), ask("tph", Window::Hour, 1000, 10_000)];
    admit(&store, "k", &asks, NOW, true).unwrap();
    let window_start = Window::Hour.start(NOW);
    let correct = |delta| Correction {
        slot: slot("tph", Window::Hour),
        reserved_in: window_start,
        delta,
    };
    let writes = store.writes();
    settle(&store, "k", &[correct(-600)], NOW).unwrap();
    assert_eq!(used(&store, "tph", Window::Hour), 400);
    settle(&store, "k", &[correct(250)], NOW).unwrap();
    assert_eq!(used(&store, "tph", Window::Hour), 650);
    assert_eq!(used(&store, "rpm", Window::Minute), 1, "not corrected, kept");
    assert_eq!(store.writes() - writes, 2, "one write per settlement");
    settle(&store, "k", &[correct(0)], NOW).unwrap();
    assert_eq!(store.writes() - writes, 2, "nothing to correct, nothing written");
}

#[test]
fn a_refund_for_an_ended_window_is_dropped_and_a_charge_lands_in_the_current_one() {
    let store = FakeStore::default();
    admit(&store, "k", &[ask("rpm", Window::Minute, 50, 100)], NOW, true).unwrap();
    let correct = |delta| Correction {
        slot: slot("rpm", Window::Minute),
        reserved_in: Window::Minute.start(NOW),
        delta,
    };
    let later = Window::Minute.end(NOW) + 5;
    settle(&store, "k", &[correct(-50)], later).unwrap();
    assert_eq!(
        used(&store, "rpm", Window::Minute),
        50,
        "the old window's count stays as it was"
    );
    settle(&store, "k", &[correct(20)], later).unwrap();
    assert_eq!(
        used(&store, "rpm", Window::Minute),
        20,
        "a new window started, holding only the extra charge"
    );
}

#[test]
fn unreadable_values_count_as_empty() {
    let store = FakeStore::default();
    store.write("k", b"junk".to_vec());
    assert_eq!(
        admitted(&admit(&store, "k", &[ask("rpd", Window::Day, 1, 1)], NOW, true).unwrap()),
        [1]
    );
}

#[test]
fn slots_of_limits_no_longer_asked_are_dropped() {
    let store = FakeStore::default();
    admit(&store, "k", &[ask("old", Window::Day, 1, 9)], NOW, true).unwrap();
    admit(&store, "k", &[ask("new", Window::Day, 1, 9)], NOW, true).unwrap();
    assert_eq!(store.slots("k").len(), 1, "the value stays as small as the plan");
    assert_eq!(used(&store, "new", Window::Day), 1);
}

#[test]
fn a_worker_behind_the_clock_does_not_roll_a_newer_window_back() {
    let store = FakeStore::default();
    let next_minute = Window::Minute.end(NOW);
    let asks = |amount| [ask("rpm", Window::Minute, amount, 10)];
    admit(&store, "k", &asks(2), next_minute, true).unwrap();
    // A worker still at NOW sees the newer window and counts into it.
    assert_eq!(
        admit(&store, "k", &asks(1), NOW, true).unwrap(),
        Admission::Admitted(vec![Count {
            window_start: next_minute,
            used: 3
        }])
    );
}
