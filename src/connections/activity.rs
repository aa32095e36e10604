//! A connection's webhook traffic hour by hour over the last day: deliveries received and
//! signature failures, for the chart on its page.

use chrono::{Duration, DurationRound, NaiveDateTime};

use super::{ConnectionError, Connections};
use crate::domain::time;
use crate::storage::connections as store;

/// How many hours the chart covers, the current (partial) hour last.
pub const HOURS: i64 = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourActivity {
    /// The hour's start (UTC).
    pub start: NaiveDateTime,
    pub deliveries: i64,
    pub signature_failures: i64,
}

/// The `HOURS + 1` bounds of the hours ending with the one `now` is in.
pub fn hour_bounds(now: NaiveDateTime) -> Vec<NaiveDateTime> {
    let this_hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    (0..=HOURS)
        .map(|n| this_hour - Duration::hours(HOURS - 1 - n))
        .collect()
}

impl Connections {
    /// Deliveries and signature failures in each of the last [`HOURS`] hours.
    pub async fn activity(&self, id: &str) -> Result<Vec<HourActivity>, ConnectionError> {
        let bounds = hour_bounds(time::now());
        let (cid, spans) = (id.to_owned(), bounds.clone());
        let counts = self
            .db
            .run(move |conn| store::webhook_activity(conn, &cid, &spans))
            .await?;
        Ok(bounds
            .iter()
            .zip(counts)
            .map(|(start, (deliveries, signature_failures))| HourActivity {
                start: *start,
                deliveries,
                signature_failures,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hours_end_with_the_current_one_and_start_on_the_hour() {
        let now = chrono::NaiveDate::from_ymd_opt(2026, 12, 3)
            .unwrap()
            .and_hms_opt(14, 37, 12)
            .unwrap();
        let bounds = hour_bounds(now);
        assert_eq!(bounds.len(), 25);
        assert_eq!(bounds[23].to_string(), "2026-12-03 14:00:00");
        assert_eq!(bounds[24].to_string(), "2026-12-03 15:00:00");
        assert_eq!(bounds[0].to_string(), "2026-12-02 15:00:00");
        assert!(bounds[23] <= now && now < bounds[24]);
    }
}
