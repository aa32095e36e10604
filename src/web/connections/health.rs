//! What the Connections pages say about a connection at a glance: a health badge with its
//! reason, and a key report read check by check.

use serde_json::Value;

use crate::connections::ConnectionView;
use crate::domain::states::{
    ConnectionAuth, ConnectionOrigin, ConnectionStatus, KeyVerdict, SecretStatus,
};
use crate::web::view::When;

/// A badge: `level` is the stylesheet's class (`good`, `warn`, `bad`, or none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub level: &'static str,
    pub label: &'static str,
    pub reason: String,
}

impl Health {
    fn new(level: &'static str, label: &'static str, reason: impl Into<String>) -> Health {
        Health {
            level,
            label,
            reason: reason.into(),
        }
    }
}

/// The worst thing about a connection, first match wins: a stopped or refused key before a
/// failing check, before webhook trouble, before a key Stripe has not yet confirmed.
pub fn health(view: &ConnectionView) -> Health {
    let hooks = &view.webhook_health;
    let report_ok = view
        .last_report
        .as_ref()
        .and_then(|r| r["ok"].as_bool())
        .unwrap_or(true);
    // The environment's secrets come from STRIPE_WEBHOOK_SECRET, not from this list.
    // An OAuth connection's events come through the platform's Connect endpoint.
    let no_secret = view.origin != ConnectionOrigin::Env
        && view.auth == ConnectionAuth::Key
        && !view
            .webhook_secrets
            .iter()
            .any(|s| s.status == SecretStatus::Active);
    if view.status == ConnectionStatus::Disconnected {
        Health::new(
            "",
            "disconnected",
            "Disconnected: no events are received or invoices pushed.",
        )
    } else if view.status == ConnectionStatus::Revoked {
        Health::new(
            "bad",
            "revoked",
            "Stripe revoked this connection's authorisation: it no longer syncs. Connect the \
             account with Stripe again.",
        )
    } else if view.key_status == KeyVerdict::Rejected {
        Health::new(
            "bad",
            "key rejected",
            "Stripe refused the secret key at the last check.",
        )
    } else if !report_ok {
        Health::new(
            "bad",
            "failing checks",
            "The last key report has a failing check.",
        )
    } else if no_secret {
        Health::new(
            "warn",
            "no signing secret",
            "No webhook signing secret: every delivery is refused until one is added.",
        )
    } else if hooks.signature_failures_last_24h > 0 {
        Health::new(
            "warn",
            "signature failures",
            match hooks.signature_failures_last_24h {
                1 => "1 delivery failed its signature check in the last 24 hours.".to_owned(),
                n => format!("{n} deliveries failed their signature check in the last 24 hours."),
            },
        )
    } else if hooks.dead_events > 0 {
        Health::new(
            "warn",
            "dead events",
            format!("{} event(s) could not be applied.", hooks.dead_events),
        )
    } else if view.key_status == KeyVerdict::Unverified {
        Health::new(
            "warn",
            "unverified",
            "Stripe has not confirmed the secret key yet.",
        )
    } else {
        Health::new(
            "good",
            "healthy",
            "Keys verified; webhooks arrive and verify.",
        )
    }
}

/// One check of a key report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckView {
    /// The check's stable name (`secret_key_format`).
    pub name: String,
    /// The name for people (`Secret key format`).
    pub label: String,
    /// `pass`, `warn`, `fail` or `skipped`.
    pub status: String,
    pub message: String,
}

impl CheckView {
    pub fn level(&self) -> &'static str {
        match self.status.as_str() {
            "pass" => "good",
            "warn" => "warn",
            "fail" => "bad",
            _ => "",
        }
    }
}

#[derive(Debug)]
pub struct ReportView {
    pub ok: bool,
    pub checks: Vec<CheckView>,
    pub at: Option<When>,
}

impl ReportView {
    /// A report as the API serializes it (`KeyReport`, or a connection's `last_report`).
    pub fn from_json(report: &Value, at: Option<When>) -> Option<ReportView> {
        let checks = report["checks"]
            .as_array()?
            .iter()
            .map(|c| {
                let name = c["name"].as_str().unwrap_or_default().to_owned();
                CheckView {
                    label: label(&name),
                    status: c["status"].as_str().unwrap_or_default().to_owned(),
                    message: c["message"].as_str().unwrap_or_default().to_owned(),
                    name,
                }
            })
            .collect();
        Some(ReportView {
            ok: report["ok"].as_bool().unwrap_or(false),
            checks,
            at,
        })
    }

    pub fn of(report: &crate::stripe::report::KeyReport) -> Option<ReportView> {
        ReportView::from_json(&serde_json::to_value(report).ok()?, None)
    }
}

/// `secret_key_format` → `Secret key format`.
fn label(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::connections::WebhookHealth;
    use serde_json::json;

    fn view() -> ConnectionView {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 12, 3)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap();
        ConnectionView {
            id: "conn_1".into(),
            name: "Shop".into(),
            mode: "test".into(),
            origin: ConnectionOrigin::Api,
            auth: ConnectionAuth::Key,
            status: ConnectionStatus::Active,
            stripe_account_id: Some("acct_1".into()),
            publishable_key: None,
            secret_key: Some("sk_test_…0000".into()),
            can_push: true,
            key_status: KeyVerdict::Verified,
            webhook_url: "https://b.example.com/webhooks/stripe/conn_1".into(),
            webhook_secrets: vec![crate::connections::SecretView {
                id: "whs_1".into(),
                secret: "whsec_…1234".into(),
                status: SecretStatus::Active,
                created_at: at,
                retired_at: None,
                last_signed_event_at: None,
            }],
            last_report: Some(json!({"ok": true, "checks": []})),
            last_report_at: Some(at),
            webhook_health: WebhookHealth {
                last_event_at: None,
                events_last_24h: 0,
                signature_failures_last_24h: 0,
                dead_events: 0,
            },
            created_at: at,
            disconnected_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn the_badge_names_the_worst_problem_first() {
        assert_eq!(health(&view()).label, "healthy");
        let mut v = view();
        v.webhook_health.dead_events = 2;
        assert_eq!(health(&v).label, "dead events");
        v.webhook_health.signature_failures_last_24h = 3;
        assert_eq!(health(&v).label, "signature failures");
        assert!(health(&v).reason.starts_with("3 deliveries"));
        v.webhook_secrets[0].status = SecretStatus::Retired;
        assert_eq!(health(&v).label, "no signing secret");
        v.last_report = Some(json!({"ok": false}));
        assert_eq!(
            (health(&v).level, health(&v).label),
            ("bad", "failing checks")
        );
        v.key_status = KeyVerdict::Rejected;
        assert_eq!(health(&v).label, "key rejected");
        v.status = ConnectionStatus::Revoked;
        assert_eq!(health(&v).label, "revoked");
        v.status = ConnectionStatus::Disconnected;
        assert_eq!(health(&v).label, "disconnected");

        let mut oauth = view();
        oauth.auth = ConnectionAuth::Connect;
        oauth.webhook_secrets.clear();
        assert_eq!(
            health(&oauth).label,
            "healthy",
            "its events come through the Connect endpoint"
        );

        let mut env = view();
        env.origin = ConnectionOrigin::Env;
        env.webhook_secrets.clear();
        env.key_status = KeyVerdict::Unverified;
        assert_eq!(
            health(&env).label,
            "unverified",
            "the environment's secret is not listed"
        );
    }

    #[test]
    fn a_report_reads_check_by_check_with_labels() {
        let report = ReportView::from_json(
            &json!({"ok": false, "checks": [
                {"name": "secret_key_format", "status": "fail", "code": "whitespace",
                 "message": "The secret key ends with a space: remove it."},
                {"name": "authentication", "status": "skipped", "message": "Not checked."}]}),
            None,
        )
        .unwrap();
        assert!(!report.ok);
        assert_eq!(report.checks[0].label, "Secret key format");
        assert_eq!(report.checks[0].level(), "bad");
        assert_eq!(report.checks[1].level(), "");
        assert!(ReportView::from_json(&json!({}), None).is_none());
    }
}
