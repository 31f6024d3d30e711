use super::*;

// 2024-02-29T13:45:30Z, a leap day.
const LEAP_DAY: u64 = 1_709_214_330;

#[test]
fn fixed_windows_align_to_utc() {
    assert_eq!(Window::Minute.start(LEAP_DAY), LEAP_DAY - 30);
    assert_eq!(Window::Minute.end(LEAP_DAY), LEAP_DAY + 30);
    assert_eq!(Window::Hour.start(LEAP_DAY), LEAP_DAY - 45 * 60 - 30);
    assert_eq!(Window::Day.start(LEAP_DAY), 1_709_164_800); // 2024-02-29T00:00:00Z
    assert_eq!(Window::Day.end(LEAP_DAY), 1_709_251_200); // 2024-03-01T00:00:00Z
}

#[test]
fn months_follow_the_calendar() {
    assert_eq!(Window::Month.start(LEAP_DAY), 1_706_745_600); // 2024-02-01
    assert_eq!(Window::Month.end(LEAP_DAY), 1_709_251_200); // 2024-03-01: 29 days
    let feb_2023 = 1_676_000_000; // 2023-02-10
    assert_eq!(
        Window::Month.end(feb_2023) - Window::Month.start(feb_2023),
        28 * DAY
    );
    let december = 1_703_980_800; // 2023-12-31T00:00:00Z
    assert_eq!(Window::Month.start(december), 1_701_388_800); // 2023-12-01
    assert_eq!(Window::Month.end(december), 1_704_067_200); // 2024-01-01
}

#[test]
fn boundaries_belong_to_the_window_they_start() {
    for window in [Window::Minute, Window::Hour, Window::Day, Window::Month] {
        let end = window.end(LEAP_DAY);
        assert_eq!(window.start(end), end, "{window:?}");
        assert_eq!(window.start(end - 1), window.start(LEAP_DAY), "{window:?}");
        assert!(window.end(end) > end);
    }
}

#[test]
fn calendar_round_trips_for_every_day_of_four_centuries() {
    // 1970 to 2370 covers the 100- and 400-year leap rules (2100, 2000 and 2400 aside).
    for days in 0..146_097u64 {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
    }
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(47_540), (2100, 2, 28)); // 2100 is not a leap year:
    assert_eq!(civil_from_days(47_541), (2100, 3, 1)); // no 29 February
}
