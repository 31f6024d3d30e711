//! Quota windows: fixed, aligned to UTC (a minute starts at :00, a day at 00:00 UTC, a month
//! on the 1st at 00:00 UTC). Fixed rather than rolling so that one shared-data key per
//! (subject, limit) can hold the window start and the count, rolled over in place.

use serde::Serialize;

use crate::config::read::{self, Node, Read};

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Minute,
    Hour,
    Day,
    /// Calendar month, UTC.
    Month,
}

const DAY: u64 = 86_400;

impl Window {
    pub fn read(value: &Node) -> Read<Window> {
        read::variant(
            value,
            &[
                ("minute", Window::Minute),
                ("hour", Window::Hour),
                ("day", Window::Day),
                ("month", Window::Month),
            ],
        )
    }
}

read::deserialize_by_reader!(Window);

impl Window {
    /// Start of the window that contains `now` (Unix seconds).
    pub fn start(self, now: u64) -> u64 {
        match self {
            Window::Minute => now - now % 60,
            Window::Hour => now - now % 3600,
            Window::Day => now - now % DAY,
            Window::Month => {
                let (year, month, _) = civil_from_days(now / DAY);
                days_from_civil(year, month, 1) * DAY
            }
        }
    }

    /// Start of the next window: when the current one resets.
    pub fn end(self, now: u64) -> u64 {
        match self {
            Window::Minute => self.start(now) + 60,
            Window::Hour => self.start(now) + 3600,
            Window::Day => self.start(now) + DAY,
            Window::Month => {
                let (year, month, _) = civil_from_days(now / DAY);
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                days_from_civil(year, month, 1) * DAY
            }
        }
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (H. Hinnant's algorithm, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01, for dates on or after the epoch.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
