//! `/users` (admin): the people who sign in, making one (the password is shown once), disabling
//! and enabling. `billmirror user …` does the same from a shell.

use actix_web::{web, HttpResponse};
use askama::Template;

use super::form::Posted;
use super::view::{Nav, When};
use super::{require, WebError};
use crate::auth::{self, TokenError, TokenInfo};
use crate::domain::Role;
use crate::http::AppState;
use crate::people::{self, sessions::Staff, UserError};

pub struct UserView {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub created_at: When,
    pub last_sign_in_at: Option<When>,
    pub disabled: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<UserView>,
    roles: [Role; 4],
    /// Right after making a user: their email and password, shown this once.
    created: Option<(String, String)>,
    error: Option<String>,
    sidebar_keys: Vec<SidebarKeyView>,
    /// Right after making a sidebar key: the sidebar URL with it, shown this once.
    sidebar_url: Option<String>,
    tokens: Vec<TokenView>,
    token: TokenShown,
}

/// An API token as listed: a hint of its value, never the value.
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub hint: String,
    pub created_by: Option<String>,
    pub created_at: When,
    pub last_used_at: Option<When>,
    pub revoked: bool,
}

impl From<TokenInfo> for TokenView {
    fn from(t: TokenInfo) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            role: t.role,
            hint: t.hint,
            created_by: t.created_by,
            created_at: When::new(t.created_at),
            last_used_at: When::opt(t.last_used_at),
            revoked: t.revoked_at.is_some(),
        }
    }
}

/// What the API tokens section shows once after a post: the new token, or why it was refused.
#[derive(Default)]
pub struct TokenShown {
    /// (name, value): the value is never shown again.
    pub created: Option<(String, String)>,
    pub error: Option<String>,
}

pub struct SidebarKeyView {
    pub id: String,
    pub hint: String,
    pub created_by: String,
    pub created_at: When,
    pub revoked: bool,
}

async fn render(
    state: &AppState,
    staff: &Staff,
    created: Option<(String, String)>,
    error: Option<String>,
) -> Result<HttpResponse, WebError> {
    render_with(state, staff, created, error, None, TokenShown::default()).await
}

async fn render_with(
    state: &AppState,
    staff: &Staff,
    created: Option<(String, String)>,
    error: Option<String>,
    sidebar_url: Option<String>,
    token: TokenShown,
) -> Result<HttpResponse, WebError> {
    let users = state.db.run(people::list).await?;
    let tokens = state.db.run(crate::storage::tokens::list).await?;
    let keys = state.db.run(crate::storage::users::sidebar_keys).await?;
    let page = UsersPage {
        nav: Nav::new(staff, "/users"),
        users: users
            .into_iter()
            .map(|u| UserView {
                id: u.id,
                email: u.email,
                role: u.role,
                created_at: When::new(u.created_at),
                last_sign_in_at: When::opt(u.last_sign_in_at),
                disabled: u.disabled_at.is_some(),
            })
            .collect(),
        roles: Role::ALL,
        created,
        error,
        sidebar_keys: keys
            .into_iter()
            .map(|k| SidebarKeyView {
                id: k.id,
                hint: k.key_hint,
                created_by: k.created_by,
                created_at: When::new(k.created_at),
                revoked: k.revoked_at.is_some(),
            })
            .collect(),
        sidebar_url,
        tokens: tokens
            .into_iter()
            .map(|row| TokenView::from(TokenInfo::from(row)))
            .collect(),
        token,
    };
    let status = super::refused_or_ok(page.error.is_some() || page.token.error.is_some());
    Ok(super::html(status, &page))
}

pub async fn page(state: web::Data<AppState>, staff: Staff) -> Result<HttpResponse, WebError> {
    require(&staff, Role::Admin)?;
    render(&state, &staff, None, None).await
}

pub async fn create(state: web::Data<AppState>, posted: Posted) -> Result<HttpResponse, WebError> {
    let Posted { staff, form } = posted;
    require(&staff, Role::Admin)?;
    let email = form.required("email", "The email")?.to_owned();
    let role: Role = form
        .required("role", "The role")?
        .parse()
        .map_err(WebError::BadRequest)?;
    let actor = staff.email.clone();
    let made = state
        .db
        .run(move |conn| Ok(people::create_user(conn, &email, role, None, &actor)))
        .await?;
    match made {
        Ok(created) => {
            let shown = (created.info.email, created.password.expose().to_owned());
            render(&state, &staff, Some(shown), None).await
        }
        Err(UserError::Storage(e)) => Err(e.into()),
        Err(e) => render(&state, &staff, None, Some(e.to_string())).await,
    }
}

async fn set_disabled(
    state: web::Data<AppState>,
    posted: Posted,
    id: String,
    disabled: bool,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, Role::Admin)?;
    if disabled && id == staff.user_id {
        return Err(WebError::BadRequest(
            "You cannot disable yourself; another admin can.".into(),
        ));
    }
    let actor = staff.email.clone();
    let outcome = state
        .db
        .run(move |conn| {
            let Some(user) = crate::storage::users::find(conn, &id)? else {
                return Ok(Err(WebError::NotFound("There is no such user.".into())));
            };
            Ok(people::set_disabled(conn, &user.email, disabled, &actor)
                .map_err(|e| WebError::BadRequest(e.to_string())))
        })
        .await?;
    outcome?;
    Ok(super::see_other("/users"))
}

pub async fn disable(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    set_disabled(state, posted, id.into_inner(), true).await
}

pub async fn enable(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    set_disabled(state, posted, id.into_inner(), false).await
}

pub async fn create_sidebar_key(
    state: web::Data<AppState>,
    posted: Posted,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, Role::Admin)?;
    let actor = staff.email.clone();
    let (_, key) = state
        .db
        .run(move |conn| people::sidebar_keys::create(conn, &actor))
        .await?;
    let url = format!(
        "{}/sidebar?key={}",
        state.config.public_url.trim_end_matches('/'),
        key.expose()
    );
    render_with(&state, &staff, None, None, Some(url), TokenShown::default()).await
}

pub async fn revoke_sidebar_key(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, Role::Admin)?;
    let actor = staff.email.clone();
    let id = id.into_inner();
    state
        .db
        .run(move |conn| people::sidebar_keys::revoke(conn, &id, &actor))
        .await?;
    Ok(super::see_other("/users"))
}

/// Makes an API token as `POST /api/tokens` does (`auth::create_token`); its value is shown once.
pub async fn create_token(
    state: web::Data<AppState>,
    posted: Posted,
) -> Result<HttpResponse, WebError> {
    let Posted { staff, form } = posted;
    require(&staff, Role::Admin)?;
    let name = form.get("token_name").unwrap_or_default().to_owned();
    let role: Role = form
        .required("token_role", "The role")?
        .parse()
        .map_err(WebError::BadRequest)?;
    let actor = staff.email.clone();
    let issued = state
        .db
        .run(move |conn| Ok(auth::create_token(conn, &name, role, &actor, None)))
        .await?;
    let shown = match issued {
        Ok(issued) => {
            tracing::info!(token.id = %issued.info.id, token.role = %role, actor = %staff.email, "token created in the web UI");
            TokenShown {
                created: Some((issued.info.name, issued.token.expose().to_owned())),
                error: None,
            }
        }
        Err(TokenError::Storage(e)) => return Err(e.into()),
        Err(TokenError::Invalid(m)) => TokenShown {
            created: None,
            error: Some(format!("The token's name: {m}.")),
        },
        Err(e @ TokenError::NameTaken(_)) => TokenShown {
            created: None,
            error: Some(format!("{e}; choose another name.")),
        },
    };
    render_with(&state, &staff, None, None, None, shown).await
}

/// Revokes an API token at once (`auth::revoke_token`, as `DELETE /api/tokens/{id}`).
pub async fn revoke_token(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, Role::Admin)?;
    let (id, actor) = (id.into_inner(), staff.email.clone());
    state
        .db
        .run(move |conn| auth::revoke_token(conn, &id, &actor))
        .await?
        .ok_or_else(|| WebError::NotFound("There is no such token".into()))?;
    Ok(super::see_other("/users#api-tokens"))
}
