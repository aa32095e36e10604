//! *Connect Stripe*: the keys, **Validate** (the key report check by check, nothing saved), then
//! **Save**. Between the two, the secrets wait sealed in a server-side draft of this session
//! (`connections::drafts` says why); the page shows them only masked and never puts a secret
//! into its HTML, not even in a hidden field.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::health::ReportView;
use super::{require, role, sentence};
use crate::connections::{merge_draft, ConnectionError, NewConnection, DRAFT_LIFETIME};
use crate::domain::secret::mask;
use crate::domain::Secret;
use crate::http::AppState;
use crate::people::sessions::Staff;
use crate::stripe::report::KeyInput;
use crate::web::form::Posted;
use crate::web::view::Nav;
use crate::web::WebError;

#[derive(Template)]
#[template(path = "connection_new.html")]
struct ConnectPage {
    nav: Nav,
    name: String,
    /// Shown again only when it is a publishable key (`pk_…`): a secret pasted into that field
    /// by mistake is kept in the draft and shown masked like the others.
    publishable_key: String,
    kept_publishable_key: Option<String>,
    kept_secret_key: Option<String>,
    kept_webhook_secret: Option<String>,
    draft: Option<String>,
    report: Option<ReportView>,
    error: Option<String>,
    minutes: i64,
}

impl ConnectPage {
    fn empty(staff: &Staff) -> ConnectPage {
        ConnectPage {
            nav: Nav::new(staff, "/connections"),
            name: String::new(),
            publishable_key: String::new(),
            kept_publishable_key: None,
            kept_secret_key: None,
            kept_webhook_secret: None,
            draft: None,
            report: None,
            error: None,
            minutes: DRAFT_LIFETIME.num_minutes(),
        }
    }

    /// The form again after Validate or a refused Save, with `keys` kept in `draft`.
    fn with_keys(
        staff: &Staff,
        name: Option<String>,
        keys: &KeyInput,
        draft: String,
    ) -> ConnectPage {
        let pk = keys.publishable_key.clone().unwrap_or_default();
        let public = pk.starts_with("pk_");
        ConnectPage {
            name: name.unwrap_or_default(),
            kept_publishable_key: (!public && !pk.is_empty()).then(|| mask(&pk)),
            publishable_key: if public { pk } else { String::new() },
            kept_secret_key: keys.secret_key.as_ref().map(Secret::masked),
            kept_webhook_secret: keys.webhook_secrets.first().map(Secret::masked),
            draft: Some(draft),
            ..ConnectPage::empty(staff)
        }
    }
}

pub async fn form(staff: Staff) -> Result<HttpResponse, WebError> {
    require(&staff, role())?;
    crate::web::ok(&ConnectPage::empty(&staff))
}

pub async fn submit(state: web::Data<AppState>, posted: Posted) -> Result<HttpResponse, WebError> {
    let Posted { staff, form } = posted;
    require(&staff, role())?;
    let typed = KeyInput {
        publishable_key: form.raw("publishable_key").map(str::to_owned),
        secret_key: form.raw("secret_key").map(Secret::new),
        webhook_secrets: form
            .raw("webhook_secret")
            .map(Secret::new)
            .into_iter()
            .collect(),
    };
    let name = form.get("name").map(str::to_owned);
    let draft_id = form.get("draft").map(str::to_owned);
    let kept = match &draft_id {
        Some(id) => state
            .connections
            .draft(id, &staff.session)
            .await
            .map_err(super::internal)?,
        None => None,
    };
    if draft_id.is_some() && kept.is_none() && typed.secret_key.is_none() {
        let mut page = ConnectPage::empty(&staff);
        page.name = name.unwrap_or_default();
        page.error = Some(format!(
            "The keys kept from Validate are gone: they last {} minutes and belong to the \
             sign-in that typed them. Paste them again.",
            DRAFT_LIFETIME.num_minutes()
        ));
        return Ok(crate::web::html(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let keys = merge_draft(typed, kept.as_ref().map(|d| &d.keys));
    let keep = |keys: KeyInput| {
        let state = state.clone();
        let session = staff.session.clone();
        let replaces = draft_id.clone();
        async move {
            let id = state
                .connections
                .keep_draft(&session, &keys, replaces)
                .await
                .map_err(super::internal)?;
            Ok::<_, WebError>((keys, id))
        }
    };

    if form.get("action") != Some("save") {
        let report = state.connections.check(&keys).await;
        let (keys, draft) = keep(keys).await?;
        let mut page = ConnectPage::with_keys(&staff, name, &keys, draft);
        page.report = ReportView::of(&report);
        return crate::web::ok(&page);
    }

    let new = NewConnection {
        name: name.clone(),
        keys: keys.clone(),
    };
    match state.connections.create(new, &staff.email).await {
        Ok(view) => {
            if let Some(id) = &draft_id {
                state
                    .connections
                    .drop_draft(id)
                    .await
                    .map_err(super::internal)?;
            }
            Ok(crate::web::see_other(&format!(
                "/connections/{}?done=saved",
                view.id
            )))
        }
        Err(error) => {
            let report = match &error {
                ConnectionError::Unusable(report) => ReportView::of(report),
                _ => None,
            };
            let (status, problem) = sentence(error)?;
            let (keys, draft) = keep(keys).await?;
            let mut page = ConnectPage::with_keys(&staff, name, &keys, draft);
            page.report = report;
            page.error = Some(problem);
            Ok(crate::web::html(status, &page))
        }
    }
}
