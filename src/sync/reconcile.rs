//! The drift report: a connection's ledger compared with Stripe's own lists, object by object —
//! missing here, missing in Stripe, or fields that differ — each with the last event the ledger
//! heard about the object. With `repair`, Stripe's current objects are fed through the inbox like a
//! backfill, so the ledger catches up by the usual fold. A run is a job: it respects the
//! connection's rate limit, keeps its report resource by resource, and resumes after the last
//! resource it finished.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::listed_event;
use crate::connections::{ConnectionError, Connections};
use crate::domain::ids;
use crate::domain::states::{JobKind, RunStatus};
use crate::domain::time;
use crate::jobs::{Handler, JobRow, NewJob, Outcome};
use crate::storage::connections::{self as connection_store, status};
use crate::storage::reconcile::{self as store, RunRow};
use crate::storage::{events, jobs, Db, StorageError};
use crate::stripe::{StripeClient, StripeError};

/// What the report compares, in this order.
pub const RESOURCES: [&str; 5] = [
    "customers",
    "subscriptions",
    "invoices",
    "payments",
    "disputes",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Stripe has it; the ledger does not.
    MissingHere,
    /// The ledger has it; Stripe does not list it.
    MissingThere,
    /// Both have it; some compared fields differ.
    Differs,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDifference {
    pub field: String,
    pub ledger: Value,
    pub stripe: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub id: String,
    pub kind: DifferenceKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDifference>,
    /// The newest event the ledger recorded for the object: `{id, type, created}`.
    pub last_event: Option<Value>,
}

/// One resource's part of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceDrift {
    /// `compared`, or `permission_denied` when the key may not list it.
    pub outcome: String,
    pub in_stripe: usize,
    pub in_ledger: usize,
    pub differences: Vec<Difference>,
    /// Objects fed through the inbox by `repair`.
    pub repaired: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub resources: BTreeMap<String, ResourceDrift>,
}

impl Report {
    pub fn differences(&self) -> usize {
        self.resources.values().map(|r| r.differences.len()).sum()
    }
}

/// A payment's state in words both sides share: Stripe's PaymentIntent says `requires_…` where
/// the ledger says `pending` or `failed`, and the ledger splits `succeeded` by refunds.
fn payment_class(status: &str) -> &'static str {
    match status {
        "succeeded" | "refunded" | "partially_refunded" => "succeeded",
        "canceled" => "canceled",
        _ => "open",
    }
}

/// The compared fields of one side, made comparable: `past_due` is the ledger's own word for an
/// open invoice whose payment failed.
fn comparable(resource: &str, mut fields: Value) -> Value {
    let status = fields["status"].as_str().map(str::to_owned);
    match (resource, status.as_deref()) {
        ("invoices", Some("past_due")) => fields["status"] = json!("open"),
        ("payments", Some(s)) => fields["status"] = json!(payment_class(s)),
        _ => {}
    }
    fields
}

/// Stripe's object of `resource` as the report compares it; `None` for what the ledger keeps
/// under another resource (a charge of a PaymentIntent is that payment's) or no longer lists.
pub fn from_stripe(resource: &str, object: &Value) -> Option<(String, Value)> {
    let id = object["id"].as_str()?.to_owned();
    let fields = match resource {
        "customers" if object["deleted"] != true => {
            json!({"email": object["email"], "name": object["name"]})
        }
        "subscriptions" => {
            // Since basil the period sits on the items.
            let end = if object["current_period_end"].is_null() {
                object["items"]["data"][0]["current_period_end"].clone()
            } else {
                object["current_period_end"].clone()
            };
            json!({"status": object["status"], "current_period_end": end,
                   "cancel_at_period_end": object["cancel_at_period_end"].as_bool().unwrap_or(false)})
        }
        "invoices" => json!({"status": object["status"], "total": object["total"],
                             "amount_paid": object["amount_paid"],
                             "amount_remaining": object["amount_remaining"]}),
        "payment_intents" => json!({"status": object["status"], "amount": object["amount"]}),
        "charges" if object["payment_intent"].is_null() => {
            json!({"status": object["status"], "amount": object["amount"]})
        }
        "disputes" => json!({"status": object["status"], "amount": object["amount"]}),
        _ => return None,
    };
    let resource = match resource {
        "payment_intents" | "charges" => "payments",
        other => other,
    };
    Some((id, comparable(resource, fields)))
}

/// Compares both sides of one resource, by Stripe id (both sides already comparable).
pub fn compare(ledger: &[(String, Value)], stripe: &[(String, Value)]) -> Vec<Difference> {
    let ours: BTreeMap<&str, &Value> = ledger.iter().map(|(id, f)| (id.as_str(), f)).collect();
    let theirs: BTreeMap<&str, &Value> = stripe.iter().map(|(id, f)| (id.as_str(), f)).collect();
    let mut differences = Vec::new();
    for (id, stripe_fields) in &theirs {
        let difference = match ours.get(id) {
            None => Difference {
                id: (*id).to_owned(),
                kind: DifferenceKind::MissingHere,
                fields: Vec::new(),
                last_event: None,
            },
            Some(ledger_fields) => {
                let fields: Vec<FieldDifference> = stripe_fields
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(field, value)| &ledger_fields[field.as_str()] != *value)
                    .map(|(field, value)| FieldDifference {
                        field: field.clone(),
                        ledger: ledger_fields[field.as_str()].clone(),
                        stripe: value.clone(),
                    })
                    .collect();
                if fields.is_empty() {
                    continue;
                }
                Difference {
                    id: (*id).to_owned(),
                    kind: DifferenceKind::Differs,
                    fields,
                    last_event: None,
                }
            }
        };
        differences.push(difference);
    }
    differences.extend(
        ours.keys()
            .filter(|id| !theirs.contains_key(*id))
            .map(|id| Difference {
                id: (*id).to_owned(),
                kind: DifferenceKind::MissingThere,
                fields: Vec::new(),
                last_event: None,
            }),
    );
    differences
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Starts a drift report of `connection_id` as a job; answers its run.
pub async fn start(db: &Db, connection_id: &str, repair: bool) -> Result<RunRow, ReconcileError> {
    new_run(db, connection_id, repair, true).await
}

/// Records a new run; as a job for a worker to take, or (`as_job` false) for the caller to run
/// with [`run`] (the command line) and settle with [`finish`].
pub async fn new_run(
    db: &Db,
    connection_id: &str,
    repair: bool,
    as_job: bool,
) -> Result<RunRow, ReconcileError> {
    let cid = connection_id.to_owned();
    let started = db
        .run(move |conn| {
            let Some(row) =
                connection_store::find(conn, &cid)?.filter(|row| row.status == status::ACTIVE)
            else {
                return Ok(None);
            };
            let now = time::now();
            let run = RunRow {
                id: ids::new_id("rec"),
                connection_id: row.id,
                status: RunStatus::Running,
                repair,
                report: serde_json::to_string(&Report::default()).unwrap_or_default(),
                error: None,
                created_at: now,
                updated_at: now,
            };
            conn.write_transaction(|conn| {
                store::insert_run(conn, &run)?;
                if !as_job {
                    return Ok(());
                }
                jobs::enqueue(
                    conn,
                    &NewJob {
                        kind: JobKind::Reconcile,
                        subject_id: &run.id,
                        connection_id: &run.connection_id,
                        payload: None,
                        dedupe_key: &run.id,
                    },
                )
            })?;
            Ok(Some(run))
        })
        .await?;
    started.ok_or(ReconcileError::Connection(ConnectionError::NotFound))
}

/// Settles a run the caller ran itself.
pub async fn finish(db: &Db, run_id: &str, report: &Report) -> Result<(), StorageError> {
    let (id, text) = (
        run_id.to_owned(),
        serde_json::to_string(report).unwrap_or_default(),
    );
    db.run(move |conn| store::save_run(conn, &id, RunStatus::Done, &text, None))
        .await
}

/// Runs the report (the resources not done yet), saving it after each resource; `progress` hears
/// each resource as it is finished.
pub async fn run(
    db: &Db,
    connections: &Connections,
    run_id: &str,
    mut progress: impl FnMut(&str, &ResourceDrift),
) -> Result<Report, Outcome> {
    let id = run_id.to_owned();
    let Some(run) = db.run(move |conn| store::find_run(conn, &id)).await? else {
        return Err(Outcome::Cancelled("the run no longer exists".into()));
    };
    let cid = run.connection_id.clone();
    let row = db
        .run(move |conn| connection_store::find(conn, &cid))
        .await?
        .filter(|row| row.status == status::ACTIVE)
        .ok_or_else(|| Outcome::Cancelled("the connection is disconnected".into()))?;
    let client = connections
        .client_for(&row)
        .await
        .map_err(|e| Outcome::Failed(e.to_string()))?;
    let mut report: Report = serde_json::from_str(&run.report).unwrap_or_default();
    for resource in RESOURCES {
        if report.resources.contains_key(resource) {
            continue;
        }
        let drift = resource_drift(
            db,
            &client,
            &row.id,
            row.mode == "live",
            resource,
            run.repair,
        )
        .await?;
        progress(resource, &drift);
        report.resources.insert(resource.to_owned(), drift);
        let (id, text) = (
            run.id.clone(),
            serde_json::to_string(&report).unwrap_or_default(),
        );
        db.run(move |conn| store::save_run(conn, &id, RunStatus::Running, &text, None))
            .await?;
    }
    Ok(report)
}

/// Stripe's objects of one report resource (payments are PaymentIntents and charges without one).
async fn stripe_objects(
    client: &StripeClient,
    resource: &str,
) -> Result<Vec<(&'static str, Value)>, StripeError> {
    // Subscriptions are listed with `status=all` (canceled ones too): see `stripe::lists`.
    let lists: &[&'static str] = match resource {
        "customers" => &["customers"],
        "subscriptions" => &["subscriptions"],
        "invoices" => &["invoices"],
        "payments" => &["payment_intents", "charges"],
        "disputes" => &["disputes"],
        _ => &[],
    };
    let mut objects = Vec::new();
    for list in lists {
        for object in crate::stripe::lists::all(client, list, &Default::default()).await? {
            objects.push((*list, object));
        }
    }
    Ok(objects)
}

/// The ledger kind a report resource is stored under (for its last event).
fn ledger_kind(resource: &str) -> &str {
    match resource {
        "customers" => "customer",
        "subscriptions" => "subscription",
        "invoices" => "invoice",
        "payments" => "payment",
        "disputes" => "dispute",
        other => other,
    }
}

async fn resource_drift(
    db: &Db,
    client: &StripeClient,
    connection_id: &str,
    livemode: bool,
    resource: &'static str,
    repair: bool,
) -> Result<ResourceDrift, Outcome> {
    let objects = match stripe_objects(client, resource).await {
        Ok(objects) => objects,
        Err(e) if e.status() == Some(403) => {
            return Ok(ResourceDrift {
                outcome: "permission_denied".into(),
                in_stripe: 0,
                in_ledger: 0,
                differences: Vec::new(),
                repaired: 0,
                message: Some(format!("The key may not list {resource}: {e}")),
            })
        }
        Err(e) if e.is_unavailable() => return Err(Outcome::Retry(e.to_string())),
        Err(e) => return Err(Outcome::Failed(e.to_string())),
    };
    let stripe: Vec<(String, Value)> = objects
        .iter()
        .filter_map(|(list, object)| from_stripe(list, object))
        .collect();
    let cid = connection_id.to_owned();
    let ledger = db
        .run(move |conn| store::ledger_view(conn, &cid, resource))
        .await?
        .into_iter()
        .map(|(id, fields)| (id, comparable(resource, fields)))
        .collect::<Vec<_>>();
    let mut differences = compare(&ledger, &stripe);
    let cid = connection_id.to_owned();
    let mut found = differences.clone();
    found = db
        .run(move |conn| {
            for difference in &mut found {
                let key = format!("{cid}/{}/{}", ledger_kind(resource), difference.id);
                difference.last_event = store::last_event(conn, &key)?.map(
                    |(id, kind, at)| json!({"id": id, "type": kind, "created": time::rfc3339(at)}),
                );
            }
            Ok(found)
        })
        .await?;
    differences.clone_from(&found);
    let mut repaired = 0;
    if repair {
        let wanted: Vec<&str> = differences
            .iter()
            .filter(|d| d.kind != DifferenceKind::MissingThere)
            .map(|d| d.id.as_str())
            .collect();
        let rows: Vec<_> = objects
            .iter()
            .filter(|(_, object)| object["id"].as_str().is_some_and(|id| wanted.contains(&id)))
            .filter_map(|(list, object)| listed_event(connection_id, list, object, livemode))
            .collect();
        repaired = rows.len();
        db.run(move |conn| conn.write_transaction(|conn| events::insert_new(conn, &rows)))
            .await?;
    }
    Ok(ResourceDrift {
        outcome: "compared".into(),
        in_stripe: stripe.len(),
        in_ledger: ledger.len(),
        differences,
        repaired,
        message: None,
    })
}

/// The `reconcile` jobs' handler.
#[derive(Clone)]
pub struct Reconciler {
    db: Db,
    connections: Connections,
}

impl Reconciler {
    pub fn new(db: Db, connections: Connections) -> Reconciler {
        Reconciler { db, connections }
    }
}

impl Handler for Reconciler {
    const KIND: JobKind = JobKind::Reconcile;

    async fn run(&self, job: JobRow) -> Outcome {
        match run(&self.db, &self.connections, &job.subject_id, |resource, drift| {
            tracing::info!(run.id = %job.subject_id, resource, differences = drift.differences.len(), "drift compared");
        })
        .await
        {
            Ok(_) => Outcome::Done,
            Err(outcome) => outcome,
        }
    }

    /// The run ends with its job: done, or failed with the reason.
    fn record(
        &self,
        conn: &mut crate::storage::DbConnection,
        job: &JobRow,
        settled: &crate::jobs::Settled,
    ) -> Result<(), StorageError> {
        use crate::jobs::Settled;
        let Some(run) = store::find_run(conn, &job.subject_id)? else {
            return Ok(());
        };
        match settled {
            Settled::Done => store::save_run(conn, &run.id, RunStatus::Done, &run.report, None),
            Settled::Failed(e) | Settled::Dead(e) | Settled::Cancelled(e) => {
                store::save_run(conn, &run.id, RunStatus::Failed, &run.report, Some(e))
            }
            Settled::Retrying(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_drift_is_named_and_equal_objects_are_not() {
        let ledger = vec![
            (
                "sub_same".to_owned(),
                json!({"status": "active", "current_period_end": 10}),
            ),
            (
                "sub_stale".to_owned(),
                json!({"status": "active", "current_period_end": 10}),
            ),
            (
                "sub_gone".to_owned(),
                json!({"status": "active", "current_period_end": 10}),
            ),
        ];
        let stripe = vec![
            (
                "sub_same".to_owned(),
                json!({"status": "active", "current_period_end": 10}),
            ),
            (
                "sub_stale".to_owned(),
                json!({"status": "canceled", "current_period_end": 10}),
            ),
            (
                "sub_new".to_owned(),
                json!({"status": "trialing", "current_period_end": 20}),
            ),
        ];
        let found = compare(&ledger, &stripe);
        let named: Vec<(&str, DifferenceKind)> =
            found.iter().map(|d| (d.id.as_str(), d.kind)).collect();
        assert_eq!(
            named,
            [
                ("sub_new", DifferenceKind::MissingHere),
                ("sub_stale", DifferenceKind::Differs),
                ("sub_gone", DifferenceKind::MissingThere),
            ]
        );
        assert_eq!(
            found[1].fields,
            [FieldDifference {
                field: "status".into(),
                ledger: json!("active"),
                stripe: json!("canceled")
            }]
        );
    }

    #[test]
    fn each_side_speaks_the_same_words_before_comparing() {
        let (_, intent) = from_stripe(
            "payment_intents",
            &json!({"id": "pi_1", "status": "requires_payment_method", "amount": 500}),
        )
        .unwrap();
        let ledger = comparable("payments", json!({"status": "failed", "amount": 500}));
        assert_eq!(
            intent, ledger,
            "a failed attempt waiting for a new card is open on both sides"
        );
        let refunded = comparable(
            "payments",
            json!({"status": "partially_refunded", "amount": 500}),
        );
        assert_eq!(refunded["status"], "succeeded");
        let invoice = comparable("invoices", json!({"status": "past_due"}));
        assert_eq!(invoice["status"], "open");
        assert!(
            from_stripe("charges", &json!({"id": "ch_1", "payment_intent": "pi_1"})).is_none(),
            "a PaymentIntent's charge is compared as that payment"
        );
        let basil = json!({"id": "sub_1", "status": "active", "cancel_at_period_end": false,
                           "items": {"data": [{"current_period_end": 99}]}});
        assert_eq!(
            from_stripe("subscriptions", &basil).unwrap().1["current_period_end"],
            99
        );
    }
}
