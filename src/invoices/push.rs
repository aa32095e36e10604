//! The push worker: takes invoice jobs from the outbox and makes each invoice exist in Stripe
//! exactly once: customer (found by our id in metadata, then by email, else created), invoice
//! (found by our id in metadata, else created), its lines, finalization. Every creating call
//! carries an idempotency key derived from our ids, so a retry after a lost answer gets Stripe's
//! first answer back; and because Stripe forgets keys after 24 hours, each step looks for what
//! an earlier attempt made before creating anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;
use tokio::sync::{watch, Mutex, Notify};
use tokio::task::JoinSet;

use super::customer_key;
use crate::connections::{ConnectionError, Connections};
use crate::domain::time;
use crate::ledger::invoices::status_rank;
use crate::storage::connections::{self as connection_store, status as connection_status};
use crate::storage::invoices::{self as store, InvoiceRow, JobRow, PushProgress};
use crate::storage::{tokens, Db, StorageError};
use crate::stripe::{StripeClient, StripeError};

/// How one attempt at a job ended.
enum Outcome {
    Done,
    Cancelled(&'static str),
    /// Stripe or the database is unavailable: try again later.
    Retry(String),
    /// Stripe refused (a 4xx it says not to retry): a person must fix the cause.
    Failed(String),
}

impl From<StorageError> for Outcome {
    fn from(error: StorageError) -> Self {
        Outcome::Retry(format!("the database: {error}"))
    }
}

impl From<StripeError> for Outcome {
    fn from(error: StripeError) -> Self {
        // Another attempt holds the key right now (a second instance after a lease expired):
        // its answer will be there for the key when this job runs again.
        let in_use = error.code() == Some("idempotency_key_in_use");
        if error.is_unavailable() || in_use {
            Outcome::Retry(error.to_string())
        } else {
            Outcome::Failed(error.to_string())
        }
    }
}

impl From<ConnectionError> for Outcome {
    fn from(error: ConnectionError) -> Self {
        match error {
            ConnectionError::Stripe(e) => e.into(),
            ConnectionError::Storage(e) => e.into(),
            other => Outcome::Failed(other.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct PushWorker {
    db: Db,
    connections: Connections,
    /// Woken when an invoice is created or a push retried.
    pub wake: Arc<Notify>,
    /// One push at a time per customer, so that two invoices to one new address make one
    /// Stripe customer.
    customer_locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
    base_backoff: Duration,
}

/// Jobs pushed at once by one worker.
const CONCURRENCY: usize = 8;
/// How long a claimed job stays ours; a worker that died releases it by letting it expire.
const LEASE: chrono::Duration = chrono::Duration::minutes(5);

impl PushWorker {
    pub fn new(db: Db, connections: Connections, base_backoff: Duration) -> PushWorker {
        PushWorker {
            db,
            connections,
            wake: Arc::new(Notify::new()),
            customer_locks: Arc::default(),
            base_backoff,
        }
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut running = JoinSet::new();
        loop {
            while running.len() < CONCURRENCY {
                let now = time::now();
                match self
                    .db
                    .run(move |conn| store::claim_job(conn, now, now + LEASE))
                    .await
                {
                    Ok(Some(job)) => {
                        let worker = self.clone();
                        running.spawn(async move { worker.attempt(job).await });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim push jobs");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = self.wake.notified() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        // Let attempts in flight finish: each ends by recording its outcome.
        while running.join_next().await.is_some() {}
    }

    async fn attempt(&self, job: JobRow) {
        let outcome = self.push(&job).await;
        if let Err(e) = self.record(&job, outcome).await {
            // The lease expires and another attempt picks the job up.
            tracing::error!(job.id = %job.id, error = %e, "cannot record a push outcome");
        }
    }

    async fn record(&self, job: &JobRow, outcome: Outcome) -> Result<(), StorageError> {
        let now = time::now();
        let (job_status, invoice_sync, error, run_after) = match &outcome {
            Outcome::Done => ("done", Some("pushed"), None, now),
            Outcome::Cancelled(_) => ("cancelled", Some("cancelled"), None, now),
            Outcome::Failed(e) => ("failed", Some("failed"), Some(e.clone()), now),
            Outcome::Retry(e) => {
                let exponent = job.attempts.clamp(0, 12) as u32;
                let delay = (self.base_backoff * 2u32.pow(exponent)).min(Duration::from_secs(600));
                (
                    "pending",
                    None,
                    Some(e.clone()),
                    now + chrono::Duration::from_std(delay).unwrap_or(LEASE),
                )
            }
        };
        match &outcome {
            Outcome::Failed(e) => {
                tracing::warn!(invoice.id = %job.subject_id, error = %e, "push failed; retry after fixing the cause")
            }
            Outcome::Retry(e) => {
                tracing::info!(invoice.id = %job.subject_id, attempt = job.attempts, error = %e, "push will be retried")
            }
            _ => {}
        }
        let job = job.clone();
        self.db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    store::finish_job(conn, &job.id, job_status, error.as_deref(), run_after)?;
                    let progress = PushProgress {
                        sync_state: invoice_sync.map(str::to_owned),
                        // A transient error is shown while the push waits, and cleared by success.
                        sync_error: Some(error.clone()),
                        updated_at: Some(now),
                        ..PushProgress::default()
                    };
                    store::record_progress(conn, &job.subject_id, &progress)?;
                    match &outcome {
                        Outcome::Done => tokens::audit(
                            conn,
                            "billmirror",
                            "invoice.pushed",
                            &job.subject_id,
                            serde_json::json!({"attempts": job.attempts}),
                        )?,
                        Outcome::Failed(e) => tokens::audit(
                            conn,
                            "billmirror",
                            "invoice.push_failed",
                            &job.subject_id,
                            serde_json::json!({"error": e}),
                        )?,
                        Outcome::Cancelled(why) => tokens::audit(
                            conn,
                            "billmirror",
                            "invoice.push_cancelled",
                            &job.subject_id,
                            serde_json::json!({"why": why}),
                        )?,
                        Outcome::Retry(_) => {}
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn invoice(&self, id: &str) -> Result<Option<InvoiceRow>, StorageError> {
        let id = id.to_owned();
        self.db.run(move |conn| store::find(conn, &id)).await
    }

    async fn progress(&self, id: &str, progress: PushProgress) -> Result<(), StorageError> {
        let id = id.to_owned();
        self.db
            .run(move |conn| store::record_progress(conn, &id, &progress))
            .await
    }

    async fn push(&self, job: &JobRow) -> Outcome {
        let Some(invoice) = (match self.invoice(&job.subject_id).await {
            Ok(found) => found,
            Err(e) => return e.into(),
        }) else {
            return Outcome::Cancelled("the invoice no longer exists");
        };
        if invoice.status == "void" {
            return Outcome::Cancelled("voided before it was pushed");
        }
        let cid = job.connection_id.clone();
        let connection = match self
            .db
            .run(move |conn| connection_store::find(conn, &cid))
            .await
        {
            Ok(Some(row)) => row,
            Ok(None) => return Outcome::Failed("the connection no longer exists".into()),
            Err(e) => return e.into(),
        };
        if connection.status == connection_status::DISCONNECTED {
            return Outcome::Failed("the connection was disconnected; nothing was pushed".into());
        }
        let client = match self.connections.client_for(&connection) {
            Ok(client) => client,
            Err(e) => return e.into(),
        };
        match self.push_with(&client, job, invoice).await {
            Ok(outcome) => outcome,
            Err(outcome) => outcome,
        }
    }

    async fn push_with(
        &self,
        client: &StripeClient,
        job: &JobRow,
        invoice: InvoiceRow,
    ) -> Result<Outcome, Outcome> {
        let customer = self.customer(client, &invoice).await?;
        let stripe_invoice = self
            .stripe_invoice(client, job, &invoice, &customer)
            .await?;
        let stripe_id = text(&stripe_invoice, "id")
            .ok_or_else(|| Outcome::Retry("Stripe's invoice has no id".into()))?;
        self.lines(client, &invoice, &customer, &stripe_id).await?;

        // Voided while we were pushing: take the draft back out of Stripe.
        let current = self.invoice(&invoice.id).await?;
        if current.as_ref().is_none_or(|i| i.status == "void") {
            if stripe_invoice["status"] == "draft" {
                client
                    .delete(
                        &format!("invoices/{stripe_id}"),
                        &format!("bm:{}:delete", invoice.id),
                    )
                    .await?;
            }
            return Ok(Outcome::Cancelled("voided while it was being pushed"));
        }
        let finalized = if stripe_invoice["status"] == "draft" {
            client
                .post(
                    &format!("invoices/{stripe_id}/finalize"),
                    &[("auto_advance".into(), "false".into())],
                    &format!("bm:{}:finalize", invoice.id),
                )
                .await?
        } else {
            stripe_invoice
        };
        let status = text(&finalized, "status").unwrap_or_else(|| "open".into());
        let keep = current
            .map(|c| c.status)
            .filter(|s| status_rank(s) > status_rank(&status));
        self.progress(
            &invoice.id,
            PushProgress {
                number: text(&finalized, "number"),
                hosted_invoice_url: text(&finalized, "hosted_invoice_url"),
                status: Some(keep.unwrap_or(status)),
                due_date: finalized["due_date"].as_i64().and_then(time::from_unix),
                finalized_at: finalized["status_transitions"]["finalized_at"]
                    .as_i64()
                    .and_then(time::from_unix)
                    .or(Some(time::now())),
                updated_at: Some(time::now()),
                ..PushProgress::default()
            },
        )
        .await?;
        Ok(Outcome::Done)
    }

    /// The Stripe customer: the one already linked, else one with our id in its metadata, else
    /// one with the email, else a new one.
    async fn customer(
        &self,
        client: &StripeClient,
        invoice: &InvoiceRow,
    ) -> Result<String, Outcome> {
        if let Some(id) = &invoice.stripe_customer_id {
            return Ok(id.clone());
        }
        let key = customer_key(
            &invoice.connection_id,
            invoice
                .customer_email_normalized
                .as_deref()
                .unwrap_or_default(),
        );
        let lock = {
            let mut locks = self.customer_locks.lock().await;
            locks.entry(key.clone()).or_default().clone()
        };
        let found = {
            let _one_at_a_time = lock.lock().await;
            self.find_or_create_customer(client, invoice, &key).await
        };
        // Forget the lock once nobody waits on it, so the map does not grow with every address.
        let mut locks = self.customer_locks.lock().await;
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&key);
        }
        found
    }

    async fn find_or_create_customer(
        &self,
        client: &StripeClient,
        invoice: &InvoiceRow,
        key: &str,
    ) -> Result<String, Outcome> {
        let email = invoice.customer_email.clone().unwrap_or_default();

        let found = client
            .get(
                "customers",
                &[("email", email.clone()), ("limit", "100".into())],
            )
            .await?;
        let candidates: Vec<&Value> = found["data"]
            .as_array()
            .map(|d| d.iter().collect())
            .unwrap_or_default();
        let existing = candidates
            .iter()
            .find(|c| c["metadata"]["billmirror_customer"] == key)
            .or_else(|| candidates.iter().find(|c| c["deleted"] != true));
        let id = match existing.and_then(|c| text(c, "id")) {
            Some(id) => id,
            None => {
                let mut form = vec![
                    ("email".to_owned(), email),
                    ("metadata[billmirror_customer]".to_owned(), key.to_owned()),
                ];
                if let Some(name) = &invoice.customer_name {
                    form.push(("name".into(), name.clone()));
                }
                let name_hash = hex::encode(sha2::Sha256::digest(
                    invoice.customer_name.clone().unwrap_or_default().as_bytes(),
                ));
                let created = client
                    .post(
                        "customers",
                        &form,
                        &format!(
                            "bm:{}:customer:{key}:{}",
                            invoice.connection_id,
                            &name_hash[..8]
                        ),
                    )
                    .await?;
                text(&created, "id")
                    .ok_or_else(|| Outcome::Retry("Stripe's customer has no id".into()))?
            }
        };
        self.progress(
            &invoice.id,
            PushProgress {
                stripe_customer_id: Some(id.clone()),
                ..PushProgress::default()
            },
        )
        .await?;
        Ok(id)
    }

    /// Our invoice in Stripe: by the id stored, else by our metadata among the customer's
    /// invoices, else created.
    async fn stripe_invoice(
        &self,
        client: &StripeClient,
        job: &JobRow,
        invoice: &InvoiceRow,
        customer: &str,
    ) -> Result<Value, Outcome> {
        if let Some(id) = &invoice.stripe_id {
            return Ok(client.get(&format!("invoices/{id}"), &[]).await?);
        }
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![
                ("customer", customer.to_owned()),
                ("limit", "100".to_owned()),
            ];
            if let Some(after) = &after {
                query.push(("starting_after", after.clone()));
            }
            let page = client.get("invoices", &query).await?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            if let Some(found) = data
                .iter()
                .find(|i| i["metadata"]["billmirror_invoice_id"] == invoice.id.as_str())
            {
                self.link(&invoice.id, found).await?;
                return Ok(found.clone());
            }
            match (
                page["has_more"].as_bool(),
                data.last().and_then(|l| text(l, "id")),
            ) {
                (Some(true), Some(last)) => after = Some(last),
                _ => break,
            }
        }
        let mut form = vec![
            ("customer".to_owned(), customer.to_owned()),
            ("collection_method".to_owned(), "send_invoice".to_owned()),
            ("currency".to_owned(), invoice.currency.clone()),
            ("auto_advance".to_owned(), "false".to_owned()),
            (
                "pending_invoice_items_behavior".to_owned(),
                "exclude".to_owned(),
            ),
            (
                "metadata[billmirror_invoice_id]".to_owned(),
                invoice.id.clone(),
            ),
        ];
        match invoice.due_date {
            Some(due) => form.push(("due_date".into(), due.and_utc().timestamp().to_string())),
            None => {
                let payload: Value = job
                    .payload
                    .as_deref()
                    .and_then(|p| serde_json::from_str(p).ok())
                    .unwrap_or_default();
                let days = payload["days_until_due"].as_u64().unwrap_or(30);
                form.push(("days_until_due".into(), days.to_string()));
            }
        }
        if let Some(memo) = &invoice.memo {
            form.push(("description".into(), memo.clone()));
        }
        let created = client
            .post("invoices", &form, &format!("bm:{}:invoice", invoice.id))
            .await?;
        self.link(&invoice.id, &created).await?;
        Ok(created)
    }

    async fn link(&self, invoice_id: &str, stripe_invoice: &Value) -> Result<(), Outcome> {
        self.progress(
            invoice_id,
            PushProgress {
                stripe_id: text(stripe_invoice, "id"),
                ..PushProgress::default()
            },
        )
        .await?;
        Ok(())
    }

    /// Adds the lines Stripe's invoice does not have yet (each marked with our line id).
    async fn lines(
        &self,
        client: &StripeClient,
        invoice: &InvoiceRow,
        customer: &str,
        stripe_id: &str,
    ) -> Result<(), Outcome> {
        let id = invoice.id.clone();
        let lines = self.db.run(move |conn| store::lines(conn, &id)).await?;
        let present = client
            .get(
                "invoiceitems",
                &[("invoice", stripe_id.to_owned()), ("limit", "100".into())],
            )
            .await?;
        let present: Vec<String> = present["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| text(&item["metadata"], "billmirror_line_id"))
            .collect();
        for line in lines.iter().filter(|l| !present.contains(&l.id)) {
            let form = vec![
                ("customer".to_owned(), customer.to_owned()),
                ("invoice".to_owned(), stripe_id.to_owned()),
                ("currency".to_owned(), line.currency.clone()),
                ("description".to_owned(), line.description.clone()),
                ("quantity".to_owned(), line.quantity.to_string()),
                (
                    "unit_amount_decimal".to_owned(),
                    line.unit_amount.unwrap_or(line.amount).to_string(),
                ),
                ("metadata[billmirror_line_id]".to_owned(), line.id.clone()),
            ];
            client
                .post(
                    "invoiceitems",
                    &form,
                    &format!("bm:{}:line:{}", invoice.id, line.id),
                )
                .await?;
        }
        Ok(())
    }
}

fn text(value: &Value, field: &str) -> Option<String> {
    value[field].as_str().map(str::to_owned)
}
