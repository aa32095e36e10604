//! `/invoices` (support reads; finance makes, voids and retries): the list with its filters, the
//! New invoice form, and an invoice's page. Every action goes through `crate::invoices`, as
//! `/api/invoices` does, so the two can never disagree.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::context::{Attempt, Method};
use super::form::query_first;
use super::form::{encode, Posted};
use super::invoice_form::{FieldError, Intent, InvoiceForm};
use super::view::{role_for, Nav, When};
use super::{require, WebError};
use crate::auth::Principal;
use crate::domain::money::{THREE_DECIMAL, ZERO_DECIMAL};
use crate::domain::states::{InvoiceOrigin, InvoiceStatus, SyncState};
use crate::domain::{ids, Role};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::invoices::view::{self, InvoiceView};
use crate::invoices::{self, InvoiceError};
use crate::jobs::JobKind;
use crate::people::sessions::Staff;
use crate::storage::connections as connection_store;
use crate::storage::invoices::{self as store, InvoiceFilter};

/// Rows on one page of the list.
const PAGE_SIZE: i64 = 50;

/// A connection as a filter or the form offers it.
pub struct ConnectionChoice {
    pub id: String,
    pub label: String,
}

async fn connection_choices(
    state: &AppState,
    only_pushable: bool,
) -> Result<Vec<ConnectionChoice>, WebError> {
    let rows = state
        .db
        .run(move |conn| {
            if only_pushable {
                connection_store::active_with_keys(conn)
            } else {
                connection_store::list(conn, None, 500)
            }
        })
        .await?;
    Ok(rows
        .into_iter()
        .filter(|c| !only_pushable || c.can_push)
        .map(|c| ConnectionChoice {
            label: format!("{} ({}, {})", c.name, c.id, c.mode),
            id: c.id,
        })
        .collect())
}

/// One invoice as the list shows it.
pub struct ListedInvoice {
    pub id: String,
    pub number: Option<String>,
    pub customer: String,
    pub total_display: String,
    pub status: InvoiceStatus,
    pub sync: SyncState,
    pub connection_id: String,
    pub due_date: Option<When>,
    pub created_at: When,
}

/// The list's filters as typed, to fill the form again and to build the next page's link.
#[derive(Default)]
pub struct ListFilters {
    pub status: String,
    pub sync: String,
    pub email: String,
    pub connection_id: String,
}

impl ListFilters {
    fn query(&self) -> String {
        [
            ("status", &self.status),
            ("sync", &self.sync),
            ("email", &self.email),
            ("connection_id", &self.connection_id),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}&", encode(v)))
        .collect()
    }

    /// The storage filter, or a sentence saying which value is not one.
    fn parse(&self) -> Result<InvoiceFilter, String> {
        let status = (!self.status.is_empty())
            .then(|| self.status.parse::<InvoiceStatus>())
            .transpose()
            .map_err(|e| format!("The status filter: {e}."))?;
        let sync = (!self.sync.is_empty())
            .then(|| self.sync.parse::<SyncState>())
            .transpose()
            .map_err(|e| format!("The sync filter: {e}."))?;
        Ok(InvoiceFilter {
            status,
            sync,
            email: (!self.email.is_empty()).then(|| self.email.clone()),
            origin: None,
            connection_id: (!self.connection_id.is_empty()).then(|| self.connection_id.clone()),
        })
    }
}

#[derive(Template)]
#[template(path = "invoices.html")]
struct ListPage {
    nav: Nav,
    filters: ListFilters,
    statuses: &'static [InvoiceStatus],
    syncs: &'static [SyncState],
    connections: Vec<ConnectionChoice>,
    invoices: Vec<ListedInvoice>,
    next: Option<String>,
    first_page: Option<String>,
    error: Option<String>,
    may_create: bool,
}

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    staff: Staff,
) -> Result<HttpResponse, WebError> {
    require(&staff, role_for("/invoices"))?;
    let filters = ListFilters {
        status: query_first(&req, "status"),
        sync: query_first(&req, "sync"),
        email: query_first(&req, "email"),
        connection_id: query_first(&req, "connection_id"),
    };
    let after = query_first(&req, "after");
    let mut page = ListPage {
        nav: Nav::new(&staff, "/invoices"),
        statuses: InvoiceStatus::ALL,
        syncs: SyncState::ALL,
        connections: connection_choices(&state, false).await?,
        invoices: Vec::new(),
        next: None,
        first_page: (!after.is_empty()).then(|| format!("/invoices?{}", filters.query())),
        error: None,
        may_create: staff.may(Role::Finance),
        filters,
    };
    let cursor = crate::http::pagination::cursor((!after.is_empty()).then_some(after), "inv", &[])
        .map_err(|_| {
            "The page link is not one from this list: start again from the first page.".to_owned()
        });
    match (page.filters.parse(), cursor) {
        (Err(problem), _) | (_, Err(problem)) => page.error = Some(problem),
        (Ok(filter), Ok(after)) => {
            let rows = state
                .db
                .run(move |conn| store::list(conn, &filter, after.as_deref(), PAGE_SIZE + 1))
                .await?;
            let more = rows.len() as i64 > PAGE_SIZE;
            let public_url = state.config.public_url.clone();
            page.invoices = rows
                .into_iter()
                .take(PAGE_SIZE as usize)
                .map(|row| {
                    let customer = row
                        .customer_name
                        .clone()
                        .or_else(|| row.customer_email.clone())
                        .or_else(|| row.stripe_customer_id.clone())
                        .unwrap_or_default();
                    let v = view::summary(row, &public_url);
                    ListedInvoice {
                        id: v.id,
                        number: v.number,
                        customer,
                        total_display: v.total_display,
                        status: v.status,
                        sync: v.sync,
                        connection_id: v.connection_id,
                        due_date: When::opt(v.due_date),
                        created_at: When::new(v.created_at),
                    }
                })
                .collect();
            if more {
                page.next = page
                    .invoices
                    .last()
                    .map(|last| format!("/invoices?{}after={}", page.filters.query(), last.id));
            }
        }
    }
    let status = super::refused_or_ok(page.error.is_some());
    Ok(super::html(status, &page))
}

#[derive(Template)]
#[template(path = "invoice_new.html")]
struct NewPage {
    nav: Nav,
    form: InvoiceForm,
    errors: Vec<FieldError>,
    connections: Vec<ConnectionChoice>,
    total: Option<String>,
    zero_decimal: String,
    three_decimal: String,
}

impl NewPage {
    /// The sentence for `field`, if the last post was refused there.
    fn error_for(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    fn line_error(&self, row: &usize, part: &str) -> Option<&str> {
        self.error_for(&format!("line.{row}.{part}"))
    }
}

async fn new_page(
    state: &AppState,
    staff: &Staff,
    form: InvoiceForm,
    errors: Vec<FieldError>,
) -> Result<HttpResponse, WebError> {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = NewPage {
        nav: Nav::new(staff, "/invoices"),
        total: form.total_display(),
        form,
        errors,
        connections: connection_choices(state, true).await?,
        zero_decimal: ZERO_DECIMAL.join(" "),
        three_decimal: THREE_DECIMAL.join(" "),
    };
    Ok(super::html(status, &page))
}

pub async fn new_form(state: web::Data<AppState>, staff: Staff) -> Result<HttpResponse, WebError> {
    require(&staff, Role::Finance)?;
    let key = hex::encode(ids::random_bytes::<16>());
    new_page(&state, &staff, InvoiceForm::blank(key), Vec::new()).await
}

fn intent(posted: Option<&str>) -> Intent {
    match posted {
        Some("add_line") => Intent::AddLine,
        Some(other) => other
            .strip_prefix("remove_line:")
            .and_then(|n| n.parse().ok())
            .map_or(Intent::Create, Intent::RemoveLine),
        None => Intent::Create,
    }
}

pub async fn create(state: web::Data<AppState>, posted: Posted) -> Result<HttpResponse, WebError> {
    let Posted { staff, form } = posted;
    require(&staff, Role::Finance)?;
    let mut typed = InvoiceForm::read(&form);
    let intent = intent(form.get("intent"));
    if intent != Intent::Create {
        typed.apply(intent);
        return new_page(&state, &staff, typed, Vec::new()).await;
    }
    let prepared = match typed.prepare() {
        Ok(prepared) => prepared,
        Err(errors) => return new_page(&state, &staff, typed, errors).await,
    };
    // A person's invoices are keyed apart from every token's: the scope is their user id.
    let principal = Principal {
        token_id: staff.user_id.clone(),
        name: staff.email.clone(),
        role: staff.role,
    };
    let key = (!typed.idempotency_key.is_empty()).then(|| typed.idempotency_key.clone());
    match invoices::create(&state.db, &principal, key, prepared.body.clone()).await {
        Ok((id, created)) => {
            if created {
                state.jobs.wake(JobKind::PushInvoice);
                tracing::info!(invoice.id = %id, actor = %staff.email, "invoice created in the web UI");
            }
            Ok(super::see_other(&format!("/invoices/{id}")))
        }
        Err(InvoiceError::Input(refusal)) => {
            let errors = vec![prepared.place(&refusal)];
            new_page(&state, &staff, typed, errors).await
        }
        Err(InvoiceError::KeyReused) => {
            let errors = vec![FieldError {
                field: "form".into(),
                message: "This form already made an invoice with other details. Open New invoice again to make another one.".into(),
            }];
            new_page(&state, &staff, typed, errors).await
        }
        Err(InvoiceError::Storage(e)) => Err(e.into()),
        Err(other) => {
            let errors = vec![FieldError {
                field: "form".into(),
                message: ApiError::from(other).message,
            }];
            new_page(&state, &staff, typed, errors).await
        }
    }
}

#[derive(Deserialize)]
pub struct Line {
    pub description: String,
    pub quantity: i64,
    pub amount_display: String,
}

#[derive(Deserialize)]
pub struct Payment {
    pub id: String,
    pub status: String,
    pub amount_display: String,
    #[serde(default)]
    pub method: Method,
    #[serde(default, deserialize_with = "when")]
    pub created: Option<When>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

#[derive(Deserialize)]
pub struct Moment {
    #[serde(deserialize_with = "when")]
    pub at: Option<When>,
    pub what: String,
    pub by: String,
}

fn when<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<When>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.and_then(|iso| When::parse(&iso)))
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct DetailPage {
    nav: Nav,
    inv: InvoiceView,
    customer_email: Option<String>,
    customer_name: Option<String>,
    lines: Vec<Line>,
    payments: Vec<Payment>,
    timeline: Vec<Moment>,
    due: Option<When>,
    created: When,
    paid: Option<When>,
    can_void: bool,
    can_retry: bool,
    notice: Option<&'static str>,
    error: Option<String>,
}

impl DetailPage {
    fn title(&self) -> &str {
        self.inv.number.as_deref().unwrap_or(&self.inv.id)
    }

    fn paid_display(&self) -> String {
        super::view::amount(self.inv.amount_paid, &self.inv.currency)
    }

    fn encode(&self, value: &str) -> String {
        encode(value)
    }

    /// While the push runs the page reloads itself (a meta refresh: no script needed).
    fn pushing(&self) -> bool {
        self.inv.sync == SyncState::Pending && !self.inv.status.is_ended()
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: Option<Vec<serde_json::Value>>) -> Vec<T> {
    value
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}

async fn detail(
    state: &AppState,
    staff: &Staff,
    id: String,
    notice: Option<&'static str>,
    error: Option<ApiError>,
) -> Result<HttpResponse, WebError> {
    let public_url = state.config.public_url.clone();
    let inv = state
        .db
        .run(move |conn| match store::find(conn, &id)? {
            Some(row) => view::detail(conn, row, &public_url).map(Some),
            None => Ok(None),
        })
        .await?
        .ok_or_else(|| WebError::NotFound("There is no invoice with that id".into()))?;
    let finance = staff.may(Role::Finance);
    let text = |key: &str| inv.customer[key].as_str().map(str::to_owned);
    let page = DetailPage {
        nav: Nav::new(staff, "/invoices"),
        customer_email: text("email"),
        customer_name: text("name"),
        lines: typed(inv.lines.clone()),
        payments: typed(inv.payments.clone()),
        timeline: typed(inv.timeline.clone()),
        due: When::opt(inv.due_date),
        created: When::new(inv.created_at),
        paid: When::opt(inv.paid_at),
        can_void: finance
            && inv.origin == InvoiceOrigin::Billmirror
            && inv.status != InvoiceStatus::Paid
            && !inv.status.is_ended(),
        can_retry: finance && inv.sync == SyncState::Failed,
        notice,
        error: error.as_ref().map(|e| e.message.clone()),
        inv,
    };
    let status = error.map_or(StatusCode::OK, |e| e.status);
    Ok(super::html(status, &page))
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    staff: Staff,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    require(&staff, role_for("/invoices"))?;
    let notice = match query_first(&req, "done").as_str() {
        "voided" => Some("Voided."),
        "retried" => Some("The push is queued again."),
        _ => None,
    };
    detail(&state, &staff, id.into_inner(), notice, None).await
}

/// An action's refusal shown on the invoice's page, with the API's status and sentence.
async fn refused(
    state: &AppState,
    staff: &Staff,
    id: String,
    error: InvoiceError,
) -> Result<HttpResponse, WebError> {
    match error {
        InvoiceError::NotFound => Err(WebError::NotFound(
            "There is no invoice with that id".into(),
        )),
        InvoiceError::Storage(e) => Err(e.into()),
        other => detail(state, staff, id, None, Some(ApiError::from(other))).await,
    }
}

pub async fn void(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, Role::Finance)?;
    let id = id.into_inner();
    match invoices::void(&state.db, &state.connections, &id, &staff.email).await {
        Ok(()) => Ok(super::see_other(&format!("/invoices/{id}?done=voided"))),
        Err(e) => refused(&state, &staff, id, e).await,
    }
}

pub async fn retry(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, Role::Finance)?;
    let id = id.into_inner();
    match invoices::retry_push(&state.db, &id, &staff.email).await {
        Ok(()) => {
            state.jobs.wake(JobKind::PushInvoice);
            Ok(super::see_other(&format!("/invoices/{id}?done=retried")))
        }
        Err(e) => refused(&state, &staff, id, e).await,
    }
}
