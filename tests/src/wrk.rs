//! Reading `wrk`'s report, for `make bench`: throughput, the 99th percentile latency, and
//! whether any answer was refused (a refused request is not load).

use std::time::Duration;

/// Requests per second and, when wrk ran with `--latency`, the p99; an error when any answer
/// was not a 2xx or the report lacks a figure.
pub fn report(text: &str) -> anyhow::Result<(f64, Option<Duration>)> {
    anyhow::ensure!(
        !text.contains("Non-2xx or 3xx responses"),
        "wrk saw refused requests:\n{text}"
    );
    let throughput = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk's output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| duration(v.trim()));
    Ok((throughput, p99))
}

/// wrk's `1.23ms`, `850.00us`, `2.01s`.
fn duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_gives_throughput_and_p99_and_a_refusal_is_an_error() {
        let text = "  Latency Distribution\n     50%    1.28ms\n     99%  850.00us\nRequests/sec:  22961.71\n";
        let (rps, p99) = report(text).unwrap();
        assert_eq!(rps, 22961.71);
        assert_eq!(p99, Some(Duration::from_micros(850)));
        assert!(report("Non-2xx or 3xx responses: 3\nRequests/sec: 10\n").is_err());
        assert!(report("nothing").is_err());
    }
}
