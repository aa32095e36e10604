//! `/audit` (ops): who did what to which object, newest first, filtered by actor or action.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::form::encode;
use super::form::query_first;
use super::view::{role_for, Nav, When};
use super::{require, WebError};
use crate::http::AppState;
use crate::people::sessions::Staff;
use crate::storage::tokens::{audit_actions, audit_page, AuditFilter};

const PAGE_SIZE: i64 = 100;

pub struct Entry {
    pub id: String,
    pub at: When,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// Where the subject can be seen, when it has a page.
    pub subject_href: Option<String>,
    pub details: String,
}

/// The page of an entry's subject, by its id's prefix.
fn subject_href(subject: &str) -> Option<String> {
    let page = match subject.split_once('_')?.0 {
        "inv" => "invoices",
        "ev" => "events",
        _ => return None,
    };
    Some(format!("/{page}/{}", encode(subject)))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    actor: String,
    action: String,
    actions: Vec<String>,
    entries: Vec<Entry>,
    next: Option<String>,
    first_page: Option<String>,
    error: Option<String>,
}

pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    staff: Staff,
) -> Result<HttpResponse, WebError> {
    require(&staff, role_for("/audit"))?;
    let (actor, action, after) = (
        query_first(&req, "actor"),
        query_first(&req, "action"),
        query_first(&req, "after"),
    );
    let query: String = [("actor", &actor), ("action", &action)]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}&", encode(v)))
        .collect();
    let mut page = AuditPage {
        nav: Nav::new(&staff, "/audit"),
        actions: state.db.run(audit_actions).await?,
        entries: Vec::new(),
        next: None,
        first_page: (!after.is_empty()).then(|| format!("/audit?{query}")),
        error: None,
        actor: actor.clone(),
        action: action.clone(),
    };
    match crate::http::pagination::cursor((!after.is_empty()).then_some(after), "aud", &[]) {
        Err(_) => {
            page.error = Some(
                "The page link is not one from this list: start again from the first page.".into(),
            )
        }
        Ok(after) => {
            let filter = AuditFilter {
                actor: (!actor.is_empty()).then_some(actor),
                action: (!action.is_empty()).then_some(action),
            };
            let rows = state
                .db
                .run(move |conn| audit_page(conn, &filter, after.as_deref(), PAGE_SIZE + 1))
                .await?;
            let more = rows.len() as i64 > PAGE_SIZE;
            page.entries = rows
                .into_iter()
                .take(PAGE_SIZE as usize)
                .map(|row| Entry {
                    id: row.id,
                    at: When::new(row.at),
                    subject_href: subject_href(&row.subject),
                    actor: row.actor,
                    action: row.action,
                    subject: row.subject,
                    details: row.details,
                })
                .collect();
            if more {
                page.next = page
                    .entries
                    .last()
                    .map(|last| format!("/audit?{query}after={}", last.id));
            }
        }
    }
    let status = super::refused_or_ok(page.error.is_some());
    Ok(super::html(status, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_with_a_page_link_to_it() {
        assert_eq!(
            subject_href("inv_0193a1b2c3d4e5f60718293a4b5c6d7e").as_deref(),
            Some("/invoices/inv_0193a1b2c3d4e5f60718293a4b5c6d7e")
        );
        assert_eq!(subject_href("ev_1").as_deref(), Some("/events/ev_1"));
        assert_eq!(subject_href("usr_1"), None);
        assert_eq!(subject_href("pat@example.com"), None);
    }
}
