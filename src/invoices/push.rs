//! The push worker: runs the `push_invoice` jobs of the job queue, making each invoice exist in Stripe
//! exactly once: customer (found by our id in metadata, then by email, else created), invoice
//! (found by our id in metadata, else created), its lines, finalization. Every creating call
//! carries an idempotency key derived from our ids, so a retry after a lost answer gets Stripe's
//! first answer back; and because Stripe forgets keys after 24 hours, each step looks for what
//! an earlier attempt made before creating anything.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use sha2::Digest;
use stripe_billing::invoice::{
    CreateInvoice, CreateInvoicePendingInvoiceItemsBehavior, DeleteInvoice, FinalizeInvoiceInvoice,
    ListInvoice, RetrieveInvoice, VoidInvoiceInvoice,
};
use stripe_billing::invoice_item::{CreateInvoiceItem, DeleteInvoiceItem, ListInvoiceItem};
use stripe_billing::invoice_line_item::ListInvoiceInvoiceLineItem;
use stripe_client_core::StripeRequest;
use stripe_core::customer::{CreateCustomer, ListCustomer, SearchCustomer, UpdateCustomer};
use stripe_shared::{Customer, Invoice, InvoiceCollectionMethod};
use tokio::sync::Mutex;

use super::customer_key;
use crate::connections::{ConnectionError, Connections};
use crate::domain::money::display;
use crate::domain::states::{InvoiceStatus, SyncState};
use crate::domain::time;
use crate::jobs::{Handler, JobKind, JobRow, Outcome, Settled};
use crate::storage::connections::{self as connection_store, status as connection_status};
use crate::storage::invoices::{self as store, InvoiceRow, LineRow, PushProgress};
use crate::storage::{stripe_keys, tokens, Db, DbConnection, StorageError};
use crate::stripe::{typed, StripeClient, StripeError};

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

/// The `push_invoice` jobs' handler.
#[derive(Clone)]
pub struct PushWorker {
    db: Db,
    connections: Connections,
    /// One push at a time per customer, so that two invoices to one new address make one
    /// Stripe customer.
    customer_locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl Handler for PushWorker {
    const KIND: JobKind = JobKind::PushInvoice;

    async fn run(&self, job: JobRow) -> Outcome {
        self.push(&job).await
    }

    /// The invoice's sync state follows its job: pushed, cancelled, failed (with the reason), or
    /// still pending with the transient error shown until a later attempt succeeds.
    fn record(
        &self,
        conn: &mut DbConnection,
        job: &JobRow,
        settled: &Settled,
    ) -> Result<(), StorageError> {
        let now = time::now();
        let (sync_state, error) = match settled {
            Settled::Done => (Some(SyncState::Pushed), None),
            Settled::Cancelled(_) => (Some(SyncState::Cancelled), None),
            Settled::Failed(e) | Settled::Dead(e) => (Some(SyncState::Failed), Some(e.clone())),
            Settled::Retrying(e) => (None, Some(e.clone())),
        };
        let progress = PushProgress {
            sync_state,
            sync_error: Some(error),
            updated_at: Some(now),
            ..PushProgress::default()
        };
        store::record_progress(conn, &job.subject_id, &progress)?;
        let (action, detail) = match settled {
            Settled::Done => (
                "invoice.pushed",
                serde_json::json!({"attempts": job.attempts}),
            ),
            Settled::Failed(e) | Settled::Dead(e) => {
                ("invoice.push_failed", serde_json::json!({"error": e}))
            }
            Settled::Cancelled(why) => ("invoice.push_cancelled", serde_json::json!({"why": why})),
            Settled::Retrying(_) => return Ok(()),
        };
        tokens::audit(conn, "billmirror", action, &job.subject_id, detail)
    }
}

impl PushWorker {
    pub fn new(db: Db, connections: Connections) -> PushWorker {
        PushWorker {
            db,
            connections,
            customer_locks: Arc::default(),
        }
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
            return Outcome::Cancelled("the invoice no longer exists".into());
        };
        if invoice.status == InvoiceStatus::Void {
            return Outcome::Cancelled("voided before it was pushed".into());
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
        let client = match self.connections.client_for(&connection).await {
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
        match self.push_steps(client, job, &invoice).await {
            Err(Outcome::Cancelled(why)) => {
                self.withdraw(client, &invoice.id).await?;
                Ok(Outcome::Cancelled(why))
            }
            other => other,
        }
    }

    async fn push_steps(
        &self,
        client: &StripeClient,
        job: &JobRow,
        invoice: &InvoiceRow,
    ) -> Result<Outcome, Outcome> {
        let customer = self.customer(client, invoice).await?;
        let stripe_invoice = self.stripe_invoice(client, job, invoice, &customer).await?;
        let stripe_id = stripe_invoice
            .id
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .ok_or_else(|| Outcome::Retry("Stripe's invoice has no id".into()))?;
        let lines = self.lines(client, invoice, &customer, &stripe_id).await?;

        // What Stripe will bill, read back: never finalize a draft that differs from ours.
        let draft = typed::send(client, &RetrieveInvoice::new(stripe_id.as_str()), None).await?;
        let billed =
            typed::list_all(client, &ListInvoiceInvoiceLineItem::new(stripe_id.as_str())).await?;
        let ours = Billed {
            lines: lines.len(),
            total: lines.iter().map(|l| l.amount).sum(),
        };
        let theirs = Billed {
            lines: billed.items.len(),
            total: draft.total,
        };
        if let Some(difference) = ours.difference(&theirs, &stripe_id, &invoice.currency) {
            return Ok(Outcome::Failed(difference));
        }

        let finalized = if remote_status(&draft) == Some(InvoiceStatus::Draft) {
            self.post(
                client,
                &invoice.id,
                &FinalizeInvoiceInvoice::new(stripe_id.as_str()).auto_advance(false),
                &format!("bm:{}:finalize", invoice.id),
            )
            .await?
        } else {
            draft
        };
        // Voided between our last look and the finalize: the caller voids it in Stripe too.
        self.ensure_live(&invoice.id).await?;
        let status = remote_status(&finalized).unwrap_or(InvoiceStatus::Open);
        let current = self.invoice(&invoice.id).await?;
        let keep = current
            .map(|c| c.status)
            .filter(|s| s.rank() > status.rank());
        self.progress(
            &invoice.id,
            PushProgress {
                number: finalized.number.clone(),
                hosted_invoice_url: finalized.hosted_invoice_url.clone(),
                status: Some(keep.unwrap_or(status)),
                due_date: finalized.due_date.and_then(time::from_unix),
                finalized_at: finalized
                    .status_transitions
                    .finalized_at
                    .and_then(time::from_unix)
                    .or(Some(time::now())),
                updated_at: Some(time::now()),
                ..PushProgress::default()
            },
        )
        .await?;
        if let Some(url) = finalized.invoice_pdf.clone() {
            let id = invoice.id.clone();
            self.db
                .run(move |conn| store::set_pdf(conn, &id, &url))
                .await?;
        }
        Ok(Outcome::Done)
    }

    /// Stops the attempt when the invoice was voided (or removed) since it began: nothing more
    /// is made in Stripe for it.
    async fn ensure_live(&self, invoice_id: &str) -> Result<(), Outcome> {
        match self.invoice(invoice_id).await? {
            Some(current) if !current.status.is_ended() => Ok(()),
            _ => Err(Outcome::Cancelled(
                "voided while it was being pushed".into(),
            )),
        }
    }

    /// Takes back what a cancelled attempt left in Stripe: a draft is deleted (and forgotten
    /// here), an invoice finalized in the meantime is voided.
    async fn withdraw(&self, client: &StripeClient, invoice_id: &str) -> Result<(), Outcome> {
        let Some(stripe_id) = self.invoice(invoice_id).await?.and_then(|i| i.stripe_id) else {
            return Ok(());
        };
        let remote =
            match typed::send(client, &RetrieveInvoice::new(stripe_id.as_str()), None).await {
                Ok(remote) => Some(remote),
                Err(e) if e.status() == Some(404) => None,
                Err(e) => return Err(e.into()),
            };
        match remote.as_ref().and_then(remote_status) {
            Some(InvoiceStatus::Draft) => {
                discard_draft(&self.db, client, invoice_id, &stripe_id).await?;
                self.unlink(invoice_id).await?;
            }
            Some(InvoiceStatus::Open | InvoiceStatus::Uncollectible) => {
                let void = VoidInvoiceInvoice::new(stripe_id.as_str());
                let base = format!("bm:{invoice_id}:void");
                keyed_send(&self.db, &base, client, &void).await?;
            }
            None => self.unlink(invoice_id).await?,
            Some(_) => {}
        }
        Ok(())
    }

    async fn unlink(&self, invoice_id: &str) -> Result<(), StorageError> {
        let id = invoice_id.to_owned();
        self.db
            .run(move |conn| store::unlink_stripe_invoice(conn, &id))
            .await
    }

    /// A POST that changes Stripe for this invoice: only while the invoice is not voided, under
    /// the step's current key. A 5xx is the answer Stripe stored under that key, so the key is
    /// given up: the next attempt looks the object up first and, if it is not there, sends the
    /// step again under the next key.
    async fn post<R>(
        &self,
        client: &StripeClient,
        invoice_id: &str,
        request: &R,
        base: &str,
    ) -> Result<R::Output, Outcome>
    where
        R: StripeRequest,
        R::Output: miniserde::Deserialize,
    {
        self.ensure_live(invoice_id).await?;
        keyed_send(&self.db, base, client, request)
            .await
            .map_err(|e| match e {
                StepError::Stripe(e) if e.is_server_error() => Outcome::Retry(format!(
                    "{e}; Stripe keeps that answer for the key, so the step is looked up and \
                     sent again under a new key"
                )),
                other => other.into(),
            })
    }

    /// The Stripe customer: the one already linked, else one found for the normalised email,
    /// else a new one.
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

    /// One Stripe customer per person: every customer billmirror makes has the normalised email
    /// (so the exact, strongly consistent email list finds it) and our key in its metadata; a
    /// customer made in Stripe is found by search, whatever the letter case of its email. The
    /// create's key and body derive from the normalised email alone, so `Pat@Example.com` and
    /// `pat@example.com` send the same request.
    async fn find_or_create_customer(
        &self,
        client: &StripeClient,
        invoice: &InvoiceRow,
        key: &str,
    ) -> Result<String, Outcome> {
        let email = invoice
            .customer_email_normalized
            .clone()
            .unwrap_or_default();
        let listed = typed::list_all(client, &ListCustomer::new().email(email.clone()))
            .await?
            .items;
        let found = match pick_customer(listed, key) {
            Some(found) => Some(found),
            None => self.search_customer(client, key, &email).await?,
        };
        let customer = match found {
            Some(customer) => customer,
            None => {
                let create = CreateCustomer::new()
                    .email(email.clone())
                    .metadata(HashMap::from([(
                        "billmirror_customer".to_owned(),
                        key.to_owned(),
                    )]));
                self.post(
                    client,
                    &invoice.id,
                    &create,
                    &format!("bm:{}:customer:{key}", invoice.connection_id),
                )
                .await?
            }
        };
        let id = customer.id.as_str().to_owned();
        let unnamed = customer.name.as_deref().is_none_or(str::is_empty);
        if let (true, Some(name)) = (unnamed, &invoice.customer_name) {
            let name_hash = hex::encode(sha2::Sha256::digest(name.as_bytes()));
            self.post(
                client,
                &invoice.id,
                &UpdateCustomer::new(id.as_str()).name(name.clone()),
                &format!(
                    "bm:{}:customer:{key}:name:{}",
                    invoice.connection_id,
                    &name_hash[..8]
                ),
            )
            .await?;
        }
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

    /// Stripe's search: our key in the metadata, or the email in any letter case. Search lags
    /// writes by up to a minute, which is why the exact list is asked first. Where search is
    /// not offered (a 4xx), the list's answer stands.
    async fn search_customer(
        &self,
        client: &StripeClient,
        key: &str,
        email: &str,
    ) -> Result<Option<Customer>, Outcome> {
        let quoted = email.replace('\\', "\\\\").replace('\'', "\\'");
        let query = format!("metadata['billmirror_customer']:'{key}' OR email:'{quoted}'");
        match typed::search_all(client, &SearchCustomer::new(query)).await {
            Ok(found) => Ok(pick_customer(found, key)),
            Err(e)
                if e.status()
                    .is_some_and(|s| (400..500).contains(&s) && s != 429) =>
            {
                tracing::info!(error = %e, "customer search is not available; the email list decides");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Our invoice in Stripe: by the id stored, else by our metadata among the customer's
    /// invoices, else created.
    async fn stripe_invoice(
        &self,
        client: &StripeClient,
        job: &JobRow,
        invoice: &InvoiceRow,
        customer: &str,
    ) -> Result<Invoice, Outcome> {
        if let Some(id) = &invoice.stripe_id {
            return Ok(typed::send(client, &RetrieveInvoice::new(id.as_str()), None).await?);
        }
        let theirs = typed::list_all(client, &ListInvoice::new().customer(customer))
            .await?
            .items;
        if let Some(found) = theirs
            .into_iter()
            .find(|i| meta(&i.metadata, "billmirror_invoice_id") == Some(invoice.id.as_str()))
        {
            self.link(&invoice.id, &found).await?;
            return Ok(found);
        }
        let mut create = CreateInvoice::new()
            .customer(customer)
            .collection_method(InvoiceCollectionMethod::SendInvoice)
            .currency(currency(&invoice.currency))
            .auto_advance(false)
            .pending_invoice_items_behavior(CreateInvoicePendingInvoiceItemsBehavior::Exclude)
            .metadata(HashMap::from([(
                "billmirror_invoice_id".to_owned(),
                invoice.id.clone(),
            )]));
        create = match invoice.due_date {
            Some(due) => create.due_date(due.and_utc().timestamp()),
            None => {
                let payload: Value = job
                    .payload
                    .as_deref()
                    .and_then(|p| serde_json::from_str(p).ok())
                    .unwrap_or_default();
                let days = payload["days_until_due"]
                    .as_u64()
                    .and_then(|d| u32::try_from(d).ok())
                    .unwrap_or(30);
                create.days_until_due(days)
            }
        };
        if let Some(memo) = &invoice.memo {
            create = create.description(memo.clone());
        }
        let created = self
            .post(
                client,
                &invoice.id,
                &create,
                &format!("bm:{}:invoice", invoice.id),
            )
            .await?;
        self.link(&invoice.id, &created).await?;
        Ok(created)
    }

    async fn link(&self, invoice_id: &str, stripe_invoice: &Invoice) -> Result<(), Outcome> {
        self.progress(
            invoice_id,
            PushProgress {
                stripe_id: stripe_invoice.id.as_ref().map(|id| id.as_str().to_owned()),
                ..PushProgress::default()
            },
        )
        .await?;
        Ok(())
    }

    /// Adds the lines Stripe's invoice does not have yet (each marked with our line id), after
    /// reading every invoice item already on it, page after page. Returns our lines.
    async fn lines(
        &self,
        client: &StripeClient,
        invoice: &InvoiceRow,
        customer: &str,
        stripe_id: &str,
    ) -> Result<Vec<LineRow>, Outcome> {
        let id = invoice.id.clone();
        let lines = self.db.run(move |conn| store::lines(conn, &id)).await?;
        let present: HashSet<String> =
            typed::list_all(client, &ListInvoiceItem::new().invoice(stripe_id))
                .await?
                .items
                .iter()
                .filter_map(|item| meta(&item.metadata, "billmirror_line_id"))
                .map(str::to_owned)
                .collect();
        for line in lines.iter().filter(|l| !present.contains(&l.id)) {
            let quantity = u64::try_from(line.quantity).map_err(|_| {
                Outcome::Failed(format!("line {} has a negative quantity", line.id))
            })?;
            let create = CreateInvoiceItem::new()
                .customer(customer)
                .invoice(stripe_id)
                .currency(currency(&line.currency))
                .description(line.description.clone())
                .quantity(quantity)
                .unit_amount_decimal(line.unit_amount.unwrap_or(line.amount).to_string())
                .metadata(HashMap::from([(
                    "billmirror_line_id".to_owned(),
                    line.id.clone(),
                )]));
            self.post(
                client,
                &invoice.id,
                &create,
                &format!("bm:{}:line:{}", invoice.id, line.id),
            )
            .await?;
        }
        Ok(lines)
    }
}

/// A Stripe call that failed, or the database while making it.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Stripe(StripeError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<StepError> for Outcome {
    fn from(error: StepError) -> Self {
        match error {
            StepError::Stripe(e) => e.into(),
            StepError::Storage(e) => e.into(),
        }
    }
}

/// Sends a keyed call under the current epoch of `base`; a 5xx gives the key up.
pub(super) async fn keyed_call<T, F, Fut>(db: &Db, base: &str, call: F) -> Result<T, StepError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, StripeError>>,
{
    let owned = base.to_owned();
    let epoch = db.run(move |conn| stripe_keys::epoch(conn, &owned)).await?;
    match call(stripe_keys::key_at(base, epoch)).await {
        Ok(answer) => Ok(answer),
        Err(e) => {
            if e.is_server_error() {
                let owned = base.to_owned();
                db.run(move |conn| stripe_keys::spend(conn, &owned, epoch))
                    .await?;
            }
            Err(StepError::Stripe(e))
        }
    }
}

/// A typed request sent as a keyed step: [`keyed_call`] over [`typed::send`].
pub(super) async fn keyed_send<R>(
    db: &Db,
    base: &str,
    client: &StripeClient,
    request: &R,
) -> Result<R::Output, StepError>
where
    R: StripeRequest,
    R::Output: miniserde::Deserialize,
{
    keyed_call(db, base, |key| async move {
        typed::send(client, request, Some(&key)).await
    })
    .await
}

/// Deletes a draft of ours in Stripe, its invoice items first: Stripe does not delete them with
/// the draft but makes them pending, to be billed on the customer's next invoice.
pub async fn discard_draft(
    db: &Db,
    client: &StripeClient,
    invoice_id: &str,
    stripe_id: &str,
) -> Result<(), StepError> {
    let items = typed::list_all(client, &ListInvoiceItem::new().invoice(stripe_id))
        .await
        .map_err(StepError::Stripe)?
        .items;
    for item in items.iter().map(|i| i.id.as_str()) {
        let base = format!("bm:{invoice_id}:discard:{item}");
        match keyed_send(db, &base, client, &DeleteInvoiceItem::new(item)).await {
            Ok(_) => {}
            Err(StepError::Stripe(e)) if e.status() == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    let base = format!("bm:{invoice_id}:delete");
    match keyed_send(db, &base, client, &DeleteInvoice::new(stripe_id)).await {
        Ok(_) => Ok(()),
        Err(StepError::Stripe(e)) if e.status() == Some(404) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Among customers found for one address: ours (our key in the metadata) first, else the
/// first. Lists and searches never hold deleted customers.
fn pick_customer(candidates: Vec<Customer>, key: &str) -> Option<Customer> {
    let ours = candidates
        .iter()
        .position(|c| meta(&c.metadata, "billmirror_customer") == Some(key))
        .unwrap_or(0);
    candidates.into_iter().nth(ours)
}

/// One metadata value of a typed object.
fn meta<'a>(metadata: &'a Option<HashMap<String, String>>, key: &str) -> Option<&'a str> {
    metadata.as_ref()?.get(key).map(String::as_str)
}

/// Our ISO code as async-stripe's currency (a code it does not list is sent as written).
fn currency(code: &str) -> stripe_types::Currency {
    match code.parse() {
        Ok(currency) => currency,
        Err(never) => match never {},
    }
}

/// How many lines an invoice has and what they add up to, ours or Stripe's.
#[derive(Debug, PartialEq)]
struct Billed {
    lines: usize,
    total: i64,
}

impl Billed {
    /// A sentence naming what differs between our invoice and Stripe's draft, if anything does.
    fn difference(&self, stripe: &Billed, stripe_id: &str, currency: &str) -> Option<String> {
        if self == stripe {
            return None;
        }
        let lines = |n: usize| {
            if n == 1 {
                "1 line".to_owned()
            } else {
                format!("{n} lines")
            }
        };
        Some(format!(
            "Stripe's draft {stripe_id} has {} totalling {}, but this invoice has {} totalling {}: \
             it was not finalized. Check the draft in Stripe, then retry the push.",
            lines(stripe.lines),
            display(stripe.total, currency),
            lines(self.lines),
            display(self.total, currency),
        ))
    }
}

/// The status of an invoice as Stripe answered it; a word Stripe may add later (async-stripe's
/// `Unknown`) is none.
pub(super) fn remote_status(invoice: &Invoice) -> Option<InvoiceStatus> {
    invoice.status.as_ref()?.as_str().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_that_differs_is_named_line_count_and_total() {
        let ours = Billed {
            lines: 2,
            total: 6_000,
        };
        assert_eq!(
            ours.difference(
                &Billed {
                    lines: 2,
                    total: 6_000
                },
                "in_1",
                "usd"
            ),
            None
        );
        let empty = ours
            .difference(&Billed { lines: 0, total: 0 }, "in_1", "usd")
            .unwrap_or_default();
        assert!(
            empty.contains("in_1 has 0 lines totalling 0.00 USD"),
            "{empty}"
        );
        assert!(
            empty.contains("this invoice has 2 lines totalling 60.00 USD"),
            "{empty}"
        );
        let one = Billed {
            lines: 1,
            total: 100,
        }
        .difference(
            &Billed {
                lines: 1,
                total: 99,
            },
            "in_2",
            "jpy",
        )
        .unwrap_or_default();
        assert!(one.contains("has 1 line totalling 99 JPY"), "{one}");
    }

    fn customer(id: &str, ours: Option<&str>) -> Customer {
        let metadata = ours.map_or_else(
            || serde_json::json!({}),
            |k| serde_json::json!({ "billmirror_customer": k }),
        );
        typed::parse(
            &serde_json::json!({"id": id, "object": "customer", "created": 1,
                "livemode": false, "metadata": metadata}),
            "GET /v1/customers",
        )
        .unwrap()
    }

    #[test]
    fn our_customer_wins_over_others_with_the_address() {
        let found = || {
            vec![
                customer("cus_theirs", None),
                customer("cus_other", Some("bmc_3")),
                customer("cus_ours", Some("bmc_1")),
            ]
        };
        assert_eq!(
            pick_customer(found(), "bmc_1").unwrap().id.as_str(),
            "cus_ours"
        );
        assert_eq!(
            pick_customer(found(), "bmc_2").unwrap().id.as_str(),
            "cus_theirs"
        );
        assert!(pick_customer(Vec::new(), "bmc_2").is_none());
    }
}
