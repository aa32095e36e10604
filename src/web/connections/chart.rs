//! The webhook chart on a connection's page: deliveries and signature failures per hour over the
//! last day, as server-rendered SVG geometry (no script), with the same numbers as a sentence and
//! a table for people who do not see the bars.

use crate::connections::HourActivity;
use crate::web::view::When;

/// The drawing's size in SVG units (it scales to the page's width).
pub const WIDTH: i64 = 720;
pub const HEIGHT: i64 = 220;
/// Where the bars stand: left of the plot are the count labels, below it the hours.
const PLOT_LEFT: i64 = 44;
const PLOT_TOP: i64 = 12;
const PLOT_BOTTOM: i64 = 184;
const BAR: i64 = 12;

/// One hour's two bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bars {
    pub deliveries_x: i64,
    pub failures_x: i64,
    pub deliveries_y: i64,
    pub deliveries_h: i64,
    pub failures_y: i64,
    pub failures_h: i64,
    /// The hour's label under the axis, every third hour (`14:00`).
    pub tick: Option<String>,
    pub tick_x: i64,
    /// What a pointer over the bars shows.
    pub title: String,
}

/// One row of the table beside the chart.
#[derive(Debug)]
pub struct HourRow {
    pub at: When,
    pub deliveries: i64,
    pub signature_failures: i64,
}

#[derive(Debug)]
pub struct Chart {
    pub width: i64,
    pub height: i64,
    pub plot_left: i64,
    pub plot_right: i64,
    pub plot_top: i64,
    pub plot_bottom: i64,
    /// The largest count, the top of the scale (at least 1).
    pub max: i64,
    pub bars: Vec<Bars>,
    pub rows: Vec<HourRow>,
    /// The chart in one sentence (its SVG `<desc>` and the line under it).
    pub summary: String,
}

/// The height of `value` on a scale whose top is `max`; a count above zero is never invisible.
fn height(value: i64, max: i64) -> i64 {
    let plot = PLOT_BOTTOM - PLOT_TOP;
    if value <= 0 || max <= 0 {
        return 0;
    }
    ((value * plot + max / 2) / max).clamp(1, plot)
}

pub fn chart(hours: &[HourActivity]) -> Chart {
    let max = hours
        .iter()
        .map(|h| h.deliveries.max(h.signature_failures))
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = (WIDTH - PLOT_LEFT - 8) / (hours.len().max(1) as i64);
    let bars = hours
        .iter()
        .enumerate()
        .map(|(n, h)| {
            let x = PLOT_LEFT + n as i64 * slot;
            let (dh, fh) = (height(h.deliveries, max), height(h.signature_failures, max));
            let hour = h.start.format("%H:00").to_string();
            Bars {
                deliveries_x: x + 2,
                failures_x: x + 2 + BAR,
                deliveries_y: PLOT_BOTTOM - dh,
                deliveries_h: dh,
                failures_y: PLOT_BOTTOM - fh,
                failures_h: fh,
                tick: (n % 3 == 0).then(|| hour.clone()),
                tick_x: x + slot / 2,
                title: format!(
                    "{hour} UTC: {} deliveries, {} signature failures",
                    h.deliveries, h.signature_failures
                ),
            }
        })
        .collect();
    let deliveries: i64 = hours.iter().map(|h| h.deliveries).sum();
    let signature_failures: i64 = hours.iter().map(|h| h.signature_failures).sum();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        plot_left: PLOT_LEFT,
        plot_right: WIDTH - 8,
        plot_top: PLOT_TOP,
        plot_bottom: PLOT_BOTTOM,
        max,
        bars,
        rows: hours
            .iter()
            .map(|h| HourRow {
                at: When::new(h.start),
                deliveries: h.deliveries,
                signature_failures: h.signature_failures,
            })
            .collect(),
        summary: summary(hours, deliveries, signature_failures),
    }
}

fn summary(hours: &[HourActivity], deliveries: i64, failures: i64) -> String {
    let plural = |n: i64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let mut text = format!(
        "{} and {} in the last 24 hours",
        plural(deliveries, "delivery", "deliveries"),
        plural(failures, "signature failure", "signature failures")
    );
    if let Some(busiest) = hours
        .iter()
        .filter(|h| h.deliveries > 0)
        .max_by_key(|h| (h.deliveries, std::cmp::Reverse(h.start)))
    {
        text.push_str(&format!(
            "; the busiest hour began at {} UTC with {}",
            busiest.start.format("%H:00"),
            plural(busiest.deliveries, "delivery", "deliveries")
        ));
    }
    text.push('.');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(counts: &[(i64, i64)]) -> Vec<HourActivity> {
        let start = chrono::NaiveDate::from_ymd_opt(2026, 12, 3)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        counts
            .iter()
            .enumerate()
            .map(|(n, (d, f))| HourActivity {
                start: start + chrono::Duration::hours(n as i64),
                deliveries: *d,
                signature_failures: *f,
            })
            .collect()
    }

    #[test]
    fn the_tallest_bar_fills_the_plot_and_a_single_one_still_shows() {
        let mut counts = vec![(0, 0); 24];
        counts[5] = (200, 1);
        counts[9] = (100, 0);
        let chart = chart(&hours(&counts));
        assert_eq!(chart.max, 200);
        assert_eq!(chart.bars.len(), 24);
        let full = PLOT_BOTTOM - PLOT_TOP;
        assert_eq!(chart.bars[5].deliveries_h, full);
        assert_eq!(chart.bars[5].deliveries_y, PLOT_TOP);
        assert_eq!(chart.bars[9].deliveries_h, full / 2);
        assert_eq!(chart.bars[5].failures_h, 1, "one failure stays visible");
        assert_eq!(chart.bars[0].deliveries_h, 0);
        assert!(chart.bars.iter().all(|b| b.failures_x + BAR <= WIDTH));
        assert_eq!(chart.bars[3].tick.as_deref(), Some("03:00"));
        assert_eq!(chart.bars[4].tick, None);
        assert_eq!(
            chart.summary,
            "300 deliveries and 1 signature failure in the last 24 hours; the busiest hour \
             began at 05:00 UTC with 200 deliveries."
        );
    }

    #[test]
    fn a_quiet_day_draws_no_bars_and_says_so() {
        let chart = chart(&hours(&[(0, 0); 24]));
        assert_eq!(chart.max, 1);
        assert!(chart
            .bars
            .iter()
            .all(|b| b.deliveries_h == 0 && b.failures_h == 0));
        assert_eq!(
            chart.summary,
            "0 deliveries and 0 signature failures in the last 24 hours."
        );
    }
}
