//! Which rules an event's news matches: its family, its connection, live or test, and a minimum
//! amount. Pure, so routing is tested without a database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::domain::states::{Family, Redaction, RuleMode};
use crate::storage::notify::{self as store, RuleRow};
use crate::storage::{DbConnection, StorageError};

use super::facts::Facts;

/// A rule as matching reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub channel_id: String,
    pub families: Vec<Family>,
    /// `None`: every connection.
    pub connections: Option<Vec<String>>,
    pub mode: RuleMode,
    /// Minor units and the currency they are in.
    pub min_amount: Option<(i64, String)>,
    pub redaction: Option<Redaction>,
}

impl Rule {
    /// Reads a stored rule; words it does not know (a family a later version added) are skipped.
    pub fn from_row(row: &RuleRow) -> Rule {
        Rule {
            id: row.id.clone(),
            channel_id: row.channel_id.clone(),
            families: split(&row.families)
                .filter_map(|f| f.parse().ok())
                .collect(),
            connections: row
                .connection_ids
                .as_deref()
                .map(|ids| split(ids).map(str::to_owned).collect()),
            mode: row.mode,
            min_amount: row.min_amount.zip(row.min_currency.clone()),
            redaction: row.redaction,
        }
    }
}

/// Parsed enabled rules by version. The version is a random word the database changes in the
/// transaction of every rule change, so reading it (one row, by key) tells whether what is in
/// memory is current, on every instance, with no delay; versions are unique across databases,
/// so several apps in one process (the tests) never see each other's rules.
static CACHE: OnceLock<Mutex<HashMap<String, Arc<Vec<Rule>>>>> = OnceLock::new();

/// Versions kept: old ones are only read by a transaction that began before a change.
const CACHED_VERSIONS: usize = 8;

/// The enabled rules, as matching reads them: from memory while their version is current.
/// Called for every applied event, on the apply path.
pub fn enabled(conn: &mut DbConnection) -> Result<Arc<Vec<Rule>>, StorageError> {
    let Some(version) = store::rules_version(conn)? else {
        // No rule was ever made (the version is written with the first).
        return Ok(Arc::new(Vec::new()));
    };
    let cache = CACHE.get_or_init(Default::default);
    if let Some(rules) = cache.lock().ok().and_then(|c| c.get(&version).cloned()) {
        return Ok(rules);
    }
    let rules = Arc::new(
        store::enabled_rules(conn)?
            .iter()
            .map(Rule::from_row)
            .collect::<Vec<_>>(),
    );
    if let Ok(mut cached) = cache.lock() {
        if cached.len() >= CACHED_VERSIONS {
            cached.clear();
        }
        cached.insert(version, rules.clone());
    }
    Ok(rules)
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Whether `rule` wants the news in `facts`. A minimum amount applies to news that has an amount:
/// an amount in another currency cannot be compared and does not match; news without an amount
/// (a customer's details changed) is not held back by it.
pub fn matches(rule: &Rule, facts: &Facts) -> bool {
    if !rule.families.contains(&facts.family()) {
        return false;
    }
    if let Some(connections) = &rule.connections {
        if !connections.contains(&facts.connection_id) {
            return false;
        }
    }
    let mode_ok = match rule.mode {
        RuleMode::Any => true,
        RuleMode::Live => facts.livemode,
        RuleMode::Test => !facts.livemode,
    };
    if !mode_ok {
        return false;
    }
    match (&rule.min_amount, facts.amount, &facts.currency) {
        (Some((min, currency)), Some(amount), Some(theirs)) => {
            currency.eq_ignore_ascii_case(theirs) && amount >= *min
        }
        (Some(_), Some(_), None) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Event;
    use crate::notify::facts::extract;
    use serde_json::{json, Value};

    fn failed(amount: i64, currency: &str, livemode: bool, connection: &str) -> Facts {
        let event = Event {
            id: "evt_1".into(),
            event_type: "invoice.payment_failed".into(),
            created: 1_700_000_000,
            object: json!({"id": "in_1", "amount_due": amount, "currency": currency}),
        };
        extract(&event, livemode, connection, &Value::Null).unwrap()
    }

    fn rule() -> Rule {
        Rule {
            id: "nru_1".into(),
            channel_id: "nch_1".into(),
            families: vec![Family::PaymentFailed],
            connections: None,
            mode: RuleMode::Any,
            min_amount: None,
            redaction: None,
        }
    }

    #[test]
    fn a_rule_takes_its_families_connections_and_mode() {
        let news = failed(5000, "usd", true, "conn_a");
        assert!(matches(&rule(), &news));
        let paid_only = Rule {
            families: vec![Family::InvoicePaid],
            ..rule()
        };
        assert!(!matches(&paid_only, &news));
        let other_connection = Rule {
            connections: Some(vec!["conn_b".into()]),
            ..rule()
        };
        assert!(!matches(&other_connection, &news));
        let both = Rule {
            connections: Some(vec!["conn_b".into(), "conn_a".into()]),
            ..rule()
        };
        assert!(matches(&both, &news));
        assert!(!matches(
            &Rule {
                mode: RuleMode::Test,
                ..rule()
            },
            &news
        ));
        assert!(matches(
            &Rule {
                mode: RuleMode::Live,
                ..rule()
            },
            &news
        ));
        assert!(matches(
            &Rule {
                mode: RuleMode::Test,
                ..rule()
            },
            &failed(1, "usd", false, "x")
        ));
    }

    #[test]
    fn a_minimum_amount_compares_within_its_currency_only() {
        let at_least_50 = Rule {
            min_amount: Some((5000, "usd".into())),
            ..rule()
        };
        assert!(matches(&at_least_50, &failed(5000, "usd", false, "c")));
        assert!(matches(&at_least_50, &failed(5000, "USD", false, "c")));
        assert!(!matches(&at_least_50, &failed(4999, "usd", false, "c")));
        assert!(
            !matches(&at_least_50, &failed(900_000, "jpy", false, "c")),
            "not comparable"
        );
        // News without an amount is not held back by a minimum.
        let mut no_amount = failed(1, "usd", false, "c");
        no_amount.amount = None;
        assert!(matches(&at_least_50, &no_amount));
    }

    #[test]
    fn stored_rules_read_back_skipping_unknown_words() {
        let now = crate::domain::time::now();
        let row = RuleRow {
            id: "nru_1".into(),
            name: "n".into(),
            channel_id: "nch_1".into(),
            families: "payment_failed, dispute,someday_family".into(),
            connection_ids: Some("conn_a,conn_b".into()),
            mode: RuleMode::Live,
            min_amount: Some(100),
            min_currency: Some("eur".into()),
            redaction: Some(Redaction::Hidden),
            enabled: true,
            created_at: now,
            updated_at: now,
        };
        let rule = Rule::from_row(&row);
        assert_eq!(rule.families, [Family::PaymentFailed, Family::Dispute]);
        assert_eq!(
            rule.connections,
            Some(vec!["conn_a".into(), "conn_b".into()])
        );
        assert_eq!(rule.min_amount, Some((100, "eur".into())));
    }
}
