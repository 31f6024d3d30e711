//! Values in the units people write: durations (`90`, `90s`, `15m`, `1h`, `7d`), times (Unix
//! seconds, `2027-01-01`, RFC 3339 `2027-01-01T12:00:00Z` or with an offset), and prices in
//! USD per million tokens (`2.50`), which the configuration keeps in micro-USD.

/// Seconds, from a number with an optional unit: s, m, h, d.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let usage = || format!("{text:?}: give a duration such as 90, 90s, 15m, 1h or 7d");
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| usage())?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(usage()),
    };
    number.checked_mul(scale).ok_or_else(usage)
}

/// Unix seconds, from Unix seconds, a date (midnight UTC) or an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let usage = || {
        format!("{text:?}: give a time as 2027-01-01, 2027-01-01T12:00:00Z, an RFC 3339 time with an offset, or Unix seconds")
    };
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| usage());
    }
    let (date, rest) = text.split_at(text.len().min(10));
    let date = parse_date(date).ok_or_else(usage)?;
    let seconds = if rest.is_empty() {
        0
    } else {
        let rest = rest
            .strip_prefix('T')
            .or_else(|| rest.strip_prefix('t'))
            .or_else(|| rest.strip_prefix(' '))
            .ok_or_else(usage)?;
        parse_clock(rest).ok_or_else(usage)?
    };
    let at = date.midnight().assume_utc().unix_timestamp() + seconds;
    u64::try_from(at).map_err(|_| format!("{text:?} is before 1970"))
}

fn parse_date(text: &str) -> Option<time::Date> {
    let mut parts = text.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(month.parse::<u8>().ok()?).ok()?;
    time::Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()
}

/// `HH:MM[:SS[.fraction]]` then `Z` or `±HH:MM`: seconds from midnight UTC (may be negative
/// or past a day with the offset).
fn parse_clock(text: &str) -> Option<i64> {
    let zone_at = text.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = text.split_at(zone_at);
    let mut parts = clock.split(':');
    let hours: i64 = two_digits(parts.next()?)?;
    let minutes: i64 = two_digits(parts.next()?)?;
    let seconds: i64 = match parts.next() {
        Some(s) => two_digits(s.split('.').next()?)?,
        None => 0,
    };
    if parts.next().is_some() || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone.get(1..)?.split_once(':')?;
            sign * (two_digits(h)? * 3600 + two_digits(m)? * 60)
        }
    };
    Some(hours * 3600 + minutes * 60 + seconds - offset)
}

fn two_digits(text: &str) -> Option<i64> {
    (text.len() == 2 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// The dearest price a model is known to have is some hundreds of USD per million tokens; far
/// above it is a price given in the old unit (micro-USD), refused rather than taken.
const MAX_USD_PER_MILLION: u64 = 100_000;

/// Micro-USD per million tokens, from USD per million tokens with up to six decimals.
pub fn parse_price(text: &str) -> Result<u64, String> {
    let usage =
        || format!("{text:?}: give USD per million tokens, such as 2.50 (at most six decimals)");
    let text = text.trim().trim_start_matches('$');
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 6
    {
        return Err(usage());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| usage())?
    };
    if whole > MAX_USD_PER_MILLION {
        return Err(format!(
            "{text:?} USD per million tokens is more than any model costs; prices are in USD per million tokens now (2.50, not 2500000)"
        ));
    }
    let fraction: u64 = format!("{fraction:0<6}").parse().map_err(|_| usage())?;
    Ok(whole * 1_000_000 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        for bad in ["", "h", "1.5h", "1w", "-1", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_dates_rfc_3339_or_unix_seconds() {
        assert_eq!(parse_time("1798761600"), Ok(1_798_761_600));
        assert_eq!(parse_time("2027-01-01"), Ok(1_798_761_600));
        assert_eq!(parse_time("2027-01-01T00:00:00Z"), Ok(1_798_761_600));
        assert_eq!(
            parse_time("2027-01-01T12:30:00Z"),
            Ok(1_798_761_600 + 45_000)
        );
        assert_eq!(parse_time("2027-01-01T01:00:00+01:00"), Ok(1_798_761_600));
        assert_eq!(parse_time("2026-12-31T23:00:00.5-01:00"), Ok(1_798_761_600));
        for bad in [
            "2027-13-01",
            "2027-02-30",
            "2027-1-1",
            "2027-01-01T25:00:00Z",
            "2027-01-01T12:00:00",
            "soon",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prices_are_usd_per_million_tokens() {
        assert_eq!(parse_price("2.50"), Ok(2_500_000));
        assert_eq!(parse_price("$10"), Ok(10_000_000));
        assert_eq!(parse_price("0.075"), Ok(75_000));
        assert_eq!(parse_price(".5"), Ok(500_000));
        assert_eq!(parse_price("0.000001"), Ok(1));
        for bad in ["", ".", "1.0000001", "1,5", "-1", "abc"] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
        let old_unit = parse_price("2500000").unwrap_err();
        assert!(
            old_unit.contains("USD per million tokens now"),
            "{old_unit}"
        );
    }
}
