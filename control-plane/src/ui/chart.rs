//! Charts drawn on the server as inline SVG: no script, nothing loaded from elsewhere. Every
//! text in them is escaped here (they are inserted as markup).

use std::fmt::Write;

/// A bar per hour from `first_hour` to `last_hour` (hours without a value are zero), with
/// the largest value and the first and last hours labelled.
pub(super) fn hourly_bars(
    points: &[(u64, u64)],
    first_hour: u64,
    last_hour: u64,
    unit: &str,
    label: impl Fn(u64) -> String,
) -> String {
    const WIDTH: f64 = 900.0;
    const HEIGHT: f64 = 220.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 24.0;
    let hours = ((last_hour.saturating_sub(first_hour)) / 3600 + 1).min(24 * 366) as usize;
    let mut values = vec![0u64; hours];
    for &(hour, value) in points {
        if hour >= first_hour {
            if let Some(slot) = values.get_mut(((hour - first_hour) / 3600) as usize) {
                *slot = slot.saturating_add(value);
            }
        }
    }
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let bar = WIDTH / hours.max(1) as f64;
    let plot = HEIGHT - TOP - BOTTOM;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{} per hour" xmlns="http://www.w3.org/2000/svg">"#,
        escape(unit)
    );
    let _ = write!(
        svg,
        r##"<line x1="0" y1="{y}" x2="{WIDTH}" y2="{y}" stroke="#b8c2cc" stroke-width="1"/>"##,
        y = HEIGHT - BOTTOM
    );
    for (i, value) in values.iter().enumerate() {
        if *value == 0 {
            continue;
        }
        let h = (*value as f64 / max as f64 * plot).max(1.0);
        let _ = write!(
            svg,
            r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="#3b6fd8"><title>{}: {}</title></rect>"##,
            i as f64 * bar,
            HEIGHT - BOTTOM - h,
            (bar * 0.85).max(0.5),
            h,
            escape(&crate::ui::when(first_hour + i as u64 * 3600)),
            escape(&label(*value)),
        );
    }
    let _ = write!(
        svg,
        r##"<text x="0" y="11" font-size="11" fill="#44505c">max {} per hour</text>"##,
        escape(&label(max))
    );
    let _ = write!(
        svg,
        r##"<text x="0" y="{}" font-size="11" fill="#44505c">{}</text><text x="{WIDTH}" y="{}" font-size="11" fill="#44505c" text-anchor="end">{}</text>"##,
        HEIGHT - 6.0,
        escape(&crate::ui::when(first_hour)),
        HEIGHT - 6.0,
        escape(&crate::ui::when(last_hour)),
    );
    svg.push_str("</svg>");
    svg
}

/// A bar of `used` against `limit`: the fill is the used share.
pub(super) fn budget_bar(used: u64, limit: u64) -> String {
    let share = if limit == 0 {
        1.0
    } else {
        (used as f64 / limit as f64).min(1.0)
    };
    let color = match share {
        s if s >= 1.0 => "#c0392b",
        s if s >= 0.8 => "#e0a100",
        _ => "#2e9e5b",
    };
    format!(
        r##"<svg class="budget" viewBox="0 0 200 12" xmlns="http://www.w3.org/2000/svg"><rect x="0" y="0" width="200" height="12" fill="#e6eaee"/><rect x="0" y="0" width="{:.1}" height="12" fill="{color}"/></svg>"##,
        share * 200.0
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_bar_per_hour_with_a_value_and_escapes_its_text() {
        let svg = hourly_bars(&[(3600, 5), (7200, 10)], 0, 3 * 3600, "<tokens>", |v| {
            format!("{v} <t>")
        });
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("max 10 &lt;t&gt; per hour"));
        assert!(svg.contains("aria-label=\"&lt;tokens&gt; per hour\""));
        assert!(!svg.contains("<t>"));
    }

    #[test]
    fn a_budget_bar_fills_its_used_share_and_turns_red_at_the_limit() {
        assert!(budget_bar(50, 100).contains(r#"width="100.0""#));
        assert!(budget_bar(150, 100).contains("#c0392b"));
    }
}
