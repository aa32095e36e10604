//! Ops alerts: a checker that looks at every active connection every `NOTIFY_ALERTS_INTERVAL`
//! and sends an `ops` message once each time an alert changes state: a connection's key report
//! starts failing or its OAuth authorisation is revoked (or it passes again), webhook signature failures rise (or stop), events die (or
//! none is left dead), a push waits too long (or none does any more).
//!
//! The state of each alert is a row (`notify_ops_alerts`); a change is one conditional statement
//! in the transaction that queues its messages, so of several instances checking one database at
//! once exactly one announces it. A count between "fire" and "clear" holds the state (the alert
//! clears only when nothing is left), so an alert does not flap around its threshold.
//!
//! [`read`] is pure: signals in, what each alert should be out.

use std::collections::HashSet;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::Value;
use tokio::sync::watch;

use super::facts::Facts;
use super::queue::{about, queue};
use super::rules::matches;
use super::Notifier;
use crate::domain::states::JobKind;
use crate::domain::time;
use crate::storage::notify::DeliveryRow;
use crate::storage::ops_alerts::{self as store, ConnectionSignals};
use crate::storage::{DbConnection, StorageError};

/// When each alert fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Signature failures within `signature_window` that fire the alert (it clears when the
    /// window holds none).
    pub signature_failures: i64,
    pub signature_window: Duration,
    /// Dead events of one connection that fire the alert (it clears when none is left).
    pub dead_events: i64,
    /// A push still pending this long after it was queued is stuck.
    pub push_stuck_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            signature_failures: 10,
            signature_window: Duration::from_secs(15 * 60),
            dead_events: 1,
            push_stuck_after: Duration::from_secs(15 * 60),
        }
    }
}

/// The conditions watched for each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    KeyReport,
    SignatureFailures,
    DeadEvents,
    PushStuck,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::KeyReport => "key_report",
            AlertKind::SignatureFailures => "signature_failures",
            AlertKind::DeadEvents => "dead_events",
            AlertKind::PushStuck => "push_stuck",
        }
    }
}

/// What an alert should be now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Firing, with what is wrong in a sentence.
    Firing(String),
    /// Clear, with a sentence saying so.
    Clear(String),
    /// Between the two thresholds, or nothing known yet: the alert stays as it is.
    Hold,
}

/// One alert's reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// `{kind}:{connection id}`: the alert's row.
    pub key: String,
    pub kind: AlertKind,
    pub connection_id: String,
    pub connection_name: String,
    pub livemode: bool,
    pub state: State,
}

impl Reading {
    /// The message's title for the change to `firing`.
    pub fn title(&self, firing: bool) -> String {
        let name = &self.connection_name;
        match (self.kind, firing) {
            (AlertKind::KeyReport, true) => format!("Stripe key report failing: {name}"),
            (AlertKind::KeyReport, false) => format!("Stripe key report passes again: {name}"),
            (AlertKind::SignatureFailures, true) => {
                format!("Webhook signature failures: {name}")
            }
            (AlertKind::SignatureFailures, false) => {
                format!("Webhook signatures verify again: {name}")
            }
            (AlertKind::DeadEvents, true) => format!("Events could not be applied: {name}"),
            (AlertKind::DeadEvents, false) => format!("No dead events left: {name}"),
            (AlertKind::PushStuck, true) => format!("Invoice push stuck: {name}"),
            (AlertKind::PushStuck, false) => format!("Invoice pushes moving again: {name}"),
        }
    }
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn span(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The four alerts of one connection, from its signals.
pub fn read(signals: &ConnectionSignals, t: &Thresholds) -> Vec<Reading> {
    let name = format!("{} ({})", signals.name, signals.connection_id);
    let reading = |kind: AlertKind, state: State| Reading {
        key: format!("{}:{}", kind.as_str(), signals.connection_id),
        kind,
        connection_id: signals.connection_id.clone(),
        connection_name: signals.name.clone(),
        livemode: signals.mode == "live",
        state,
    };
    let report = signals
        .last_report
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok());
    let key_report = match report.as_ref().and_then(|r| r["ok"].as_bool()) {
        // Whatever its last report said: nothing is read from it any more.
        _ if signals.revoked => State::Firing(format!(
            "Connection {name} was revoked in Stripe: its read-only authorisation was withdrawn \
             (the account deauthorized billmirror, or Stripe refused its token), so nothing is \
             read from it any more. Connect it with Stripe again from the Connections page."
        )),
        None => State::Hold,
        Some(true) => State::Clear(format!("The key report of connection {name} passes again.")),
        Some(false) => {
            let failing: Vec<String> = report
                .as_ref()
                .and_then(|r| r["checks"].as_array())
                .into_iter()
                .flatten()
                .filter(|c| c["status"] == "fail")
                .filter_map(|c| c["message"].as_str().map(str::to_owned))
                .collect();
            State::Firing(format!(
                "The key report of connection {name} fails: {} See GET /api/connections/{}.",
                if failing.is_empty() {
                    "a check failed.".to_owned()
                } else {
                    failing.join(" ")
                },
                signals.connection_id
            ))
        }
    };
    let window = span(t.signature_window);
    let failures = signals.signature_failures;
    let signatures = if failures >= t.signature_failures.max(1) {
        State::Firing(format!(
            "{} to connection {name} refused for their signature in the last {window}: check \
             its webhook signing secret (rotated in Stripe and not here?), or who is posting.",
            plural(failures, "webhook", "webhooks")
        ))
    } else if failures == 0 {
        State::Clear(format!(
            "No webhook to connection {name} was refused for its signature in the last {window}."
        ))
    } else {
        State::Hold
    };
    let dead = signals.dead_events;
    let dead_events = if dead >= t.dead_events.max(1) {
        State::Firing(format!(
            "{} of connection {name} could not be applied after every attempt: see GET \
             /api/events?status=dead, fix the cause, then replay them.",
            plural(dead, "event", "events")
        ))
    } else if dead == 0 {
        State::Clear(format!("No event of connection {name} is dead any more."))
    } else {
        State::Hold
    };
    let pushes = if signals.stuck_pushes > 0 {
        State::Firing(format!(
            "{} of connection {name} queued more than {} ago still not done (the oldest: \
             invoice {}): see GET /api/jobs?kind=push_invoice.",
            plural(signals.stuck_pushes, "invoice push", "invoice pushes"),
            span(t.push_stuck_after),
            signals.oldest_stuck.as_deref().unwrap_or("unknown")
        ))
    } else {
        State::Clear(format!(
            "Every invoice push of connection {name} is done or moving."
        ))
    };
    vec![
        reading(AlertKind::KeyReport, key_report),
        reading(AlertKind::SignatureFailures, signatures),
        reading(AlertKind::DeadEvents, dead_events),
        reading(AlertKind::PushStuck, pushes),
    ]
}

impl Notifier {
    /// Reads every connection's signals once and announces each alert that changed state;
    /// returns how many messages were queued.
    pub async fn check_ops(&self) -> Result<usize, StorageError> {
        let t = self.settings.alerts;
        let queued = self
            .db
            .run(move |conn| {
                let now = time::now();
                let window = TimeDelta::from_std(t.signature_window).unwrap_or(TimeDelta::MAX);
                let stuck = TimeDelta::from_std(t.push_stuck_after).unwrap_or(TimeDelta::MAX);
                let signals = store::signals(
                    conn,
                    now.checked_sub_signed(window).unwrap_or(now),
                    now.checked_sub_signed(stuck).unwrap_or(now),
                )?;
                let readings: Vec<Reading> = signals.iter().flat_map(|s| read(s, &t)).collect();
                let known = store::states(conn)?;
                let mut queued = 0;
                for reading in &readings {
                    let (firing, detail) = match &reading.state {
                        State::Hold => continue,
                        State::Firing(detail) => (true, detail),
                        State::Clear(detail) => (false, detail),
                    };
                    // Most checks change nothing: no write unless the row says otherwise (an
                    // alert first seen clear is no news, and needs no row).
                    let changes = match known.get(&reading.key) {
                        Some(was) => *was != firing,
                        None => firing,
                    };
                    if !changes {
                        continue;
                    }
                    queued +=
                        conn.write_transaction(|conn| announce(conn, reading, firing, detail))?;
                }
                // A connection disconnected while an alert was firing: nothing more to watch,
                // so the alert is put to rest without a message.
                let watched: HashSet<&str> = readings.iter().map(|r| r.key.as_str()).collect();
                for (key, firing) in &known {
                    if *firing && !watched.contains(key.as_str()) {
                        store::set_alert(conn, key, false, Some("no longer watched"))?;
                    }
                }
                Ok::<_, StorageError>(queued)
            })
            .await?;
        if queued > 0 {
            tracing::info!(messages = queued, "ops alerts changed");
            self.wakers.wake(JobKind::Notify);
        }
        Ok(queued)
    }
}

/// Flips the alert and, when this call flipped it, queues one message per matching rule.
fn announce(
    conn: &mut DbConnection,
    reading: &Reading,
    firing: bool,
    detail: &str,
) -> Result<usize, StorageError> {
    let Some(change) = store::set_alert(conn, &reading.key, firing, Some(detail))? else {
        return Ok(0);
    };
    // A recovery answers the message that said it started: one thread per episode.
    let episode = if firing {
        change.at
    } else {
        change.since.unwrap_or(change.at)
    };
    let at = change.at.and_utc();
    let facts = Facts::ops_alert(
        &reading.key,
        &reading.connection_id,
        reading.livemode,
        at.timestamp(),
        firing,
        reading.title(firing),
        detail.to_owned(),
    );
    let rules = super::rules::enabled(conn)?;
    let mut queued = 0;
    for rule in rules.iter().filter(|r| matches(r, &facts)) {
        let key = format!("ops:{}:{}:{}", reading.key, at.timestamp_micros(), rule.id);
        let row = DeliveryRow {
            rule_id: Some(rule.id.clone()),
            subject: Some(format!(
                "ops:{}@{}",
                reading.key,
                episode.and_utc().timestamp_micros()
            )),
            ..about(&facts, &rule.channel_id, key, rule.redaction, change.at)
        };
        if queue(conn, &row)? {
            queued += 1;
        }
    }
    tracing::info!(alert = %reading.key, firing, messages = queued, "an ops alert changed");
    Ok(queued)
}

/// Checks the ops alerts every `every` until shutdown. Every instance runs one; the rows decide
/// which of them announces a change.
pub async fn watch_regularly(
    notifier: Notifier,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = notifier.check_ops().await {
            tracing::warn!(error = %e, "cannot check the ops alerts");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals() -> ConnectionSignals {
        ConnectionSignals {
            connection_id: "conn_1".into(),
            name: "Acme EU".into(),
            revoked: false,
            mode: "live".into(),
            last_report: None,
            signature_failures: 0,
            dead_events: 0,
            stuck_pushes: 0,
            oldest_stuck: None,
        }
    }

    fn state_of(readings: &[Reading], kind: AlertKind) -> &State {
        &readings.iter().find(|r| r.kind == kind).unwrap().state
    }

    #[test]
    fn a_quiet_connection_reads_clear_and_knows_nothing_of_its_key_yet() {
        let readings = read(&signals(), &Thresholds::default());
        assert_eq!(readings.len(), 4);
        assert_eq!(readings[0].key, "key_report:conn_1");
        assert!(readings[0].livemode);
        assert_eq!(state_of(&readings, AlertKind::KeyReport), &State::Hold);
        for kind in [
            AlertKind::SignatureFailures,
            AlertKind::DeadEvents,
            AlertKind::PushStuck,
        ] {
            assert!(
                matches!(state_of(&readings, kind), State::Clear(_)),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_revoked_connection_fires_the_key_alert_whatever_its_last_report_said() {
        let passing = r#"{"ok": true, "checks": []}"#;
        for last_report in [None, Some(passing.to_owned())] {
            let revoked = ConnectionSignals {
                revoked: true,
                last_report,
                ..signals()
            };
            let readings = read(&revoked, &Thresholds::default());
            match state_of(&readings, AlertKind::KeyReport) {
                State::Firing(detail) => assert!(
                    detail.contains("was revoked in Stripe") && detail.contains("Acme EU (conn_1)"),
                    "{detail}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_failing_key_report_fires_with_its_failing_checks() {
        let mut s = signals();
        s.last_report = Some(
            serde_json::json!({"ok": false, "checks": [
                {"name": "authentication", "status": "fail", "code": "key_rejected", "message": "Stripe refused the key."},
                {"name": "permissions", "status": "skipped", "message": "Not checked."}]})
            .to_string(),
        );
        let readings = read(&s, &Thresholds::default());
        match state_of(&readings, AlertKind::KeyReport) {
            State::Firing(detail) => {
                assert!(
                    detail.contains("Stripe refused the key.") && !detail.contains("Not checked"),
                    "{detail}"
                )
            }
            other => panic!("{other:?}"),
        }
        s.last_report = Some(r#"{"ok": true, "checks": []}"#.into());
        assert!(matches!(
            state_of(&read(&s, &Thresholds::default()), AlertKind::KeyReport),
            State::Clear(_)
        ));
    }

    #[test]
    fn counts_fire_at_their_threshold_hold_between_and_clear_at_zero() {
        let t = Thresholds {
            signature_failures: 3,
            dead_events: 2,
            ..Thresholds::default()
        };
        let mut s = signals();
        s.signature_failures = 3;
        s.dead_events = 2;
        s.stuck_pushes = 1;
        s.oldest_stuck = Some("inv_1".into());
        let readings = read(&s, &t);
        for kind in [
            AlertKind::SignatureFailures,
            AlertKind::DeadEvents,
            AlertKind::PushStuck,
        ] {
            assert!(
                matches!(state_of(&readings, kind), State::Firing(_)),
                "{kind:?}"
            );
        }
        match state_of(&readings, AlertKind::PushStuck) {
            State::Firing(detail) => assert!(detail.contains("invoice inv_1"), "{detail}"),
            other => panic!("{other:?}"),
        }
        s.signature_failures = 2;
        s.dead_events = 1;
        let between = read(&s, &t);
        assert_eq!(
            state_of(&between, AlertKind::SignatureFailures),
            &State::Hold
        );
        assert_eq!(state_of(&between, AlertKind::DeadEvents), &State::Hold);
        s.signature_failures = 0;
        s.dead_events = 0;
        let cleared = read(&s, &t);
        assert!(matches!(
            state_of(&cleared, AlertKind::SignatureFailures),
            State::Clear(_)
        ));
        assert!(matches!(
            state_of(&cleared, AlertKind::DeadEvents),
            State::Clear(_)
        ));
        assert!(
            Reading::title(&cleared[1], true).starts_with("Webhook signature failures: Acme EU")
        );
    }
}
