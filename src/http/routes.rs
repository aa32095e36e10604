//! The whole HTTP surface in one table. Every `/api` route is registered from [`api_routes`] with
//! the role it needs, so no `/api` route can exist without a token check (a test walks the table);
//! the few others come from [`other_routes`]. `/openapi.json` describes exactly these two lists
//! (a test compares them): a new route's handler gets a `#[utoipa::path]` and a line in
//! `openapi.rs`.

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, Route};

use super::{
    billing, connections, events, health, invoices, jobs, notifications, openapi, pay, reconcile,
    slack, tokens, webhooks,
};
use crate::domain::Role;

pub struct ApiRoute {
    pub method: Method,
    pub path: &'static str,
    pub role: Role,
    handler: fn() -> Route,
}

const fn api(method: Method, path: &'static str, role: Role, handler: fn() -> Route) -> ApiRoute {
    ApiRoute {
        method,
        path,
        role,
        handler,
    }
}

pub fn api_routes() -> Vec<ApiRoute> {
    use Role::*;
    vec![
        api(Method::GET, "/api/tokens", Admin, || {
            web::get().to(tokens::list)
        }),
        api(Method::POST, "/api/tokens", Admin, || {
            web::post().to(tokens::create)
        }),
        api(Method::DELETE, "/api/tokens/{id}", Admin, || {
            web::delete().to(tokens::revoke)
        }),
        api(Method::POST, "/api/connections/check", Ops, || {
            web::post().to(connections::check)
        }),
        api(Method::POST, "/api/connections", Ops, || {
            web::post().to(connections::create)
        }),
        api(Method::GET, "/api/connections", Ops, || {
            web::get().to(connections::list)
        }),
        api(Method::GET, "/api/connections/{id}", Ops, || {
            web::get().to(connections::get)
        }),
        api(Method::DELETE, "/api/connections/{id}", Ops, || {
            web::delete().to(connections::disconnect)
        }),
        api(Method::POST, "/api/connections/{id}/validate", Ops, || {
            web::post().to(connections::validate)
        }),
        api(
            Method::POST,
            "/api/connections/{id}/webhook-endpoint",
            Ops,
            || web::post().to(connections::register_webhook_endpoint),
        ),
        api(
            Method::POST,
            "/api/connections/{id}/webhook-secrets",
            Ops,
            || web::post().to(connections::add_webhook_secret),
        ),
        api(
            Method::DELETE,
            "/api/connections/{id}/webhook-secrets/{secret_id}",
            Ops,
            || web::delete().to(connections::retire_webhook_secret),
        ),
        api(Method::POST, "/api/connections/{id}/reconcile", Ops, || {
            web::post().to(reconcile::start)
        }),
        api(Method::GET, "/api/reconcile-runs/{id}", Ops, || {
            web::get().to(reconcile::get)
        }),
        api(Method::POST, "/api/invoices", Finance, || {
            web::post().to(invoices::create)
        }),
        api(Method::GET, "/api/invoices", Support, || {
            web::get().to(invoices::list)
        }),
        api(Method::GET, "/api/invoices/{id}", Support, || {
            web::get().to(invoices::get)
        }),
        api(Method::POST, "/api/invoices/{id}/void", Finance, || {
            web::post().to(invoices::void)
        }),
        api(Method::POST, "/api/invoices/{id}/retry", Finance, || {
            web::post().to(invoices::retry)
        }),
        api(Method::GET, "/api/billing-context", Support, || {
            web::get().to(billing::context)
        }),
        api(Method::GET, "/api/customers", Support, || {
            web::get().to(billing::customers)
        }),
        api(Method::GET, "/api/subscriptions", Support, || {
            web::get().to(billing::subscriptions)
        }),
        api(Method::GET, "/api/events", Ops, || {
            web::get().to(events::list)
        }),
        api(Method::GET, "/api/events/{id}", Ops, || {
            web::get().to(events::get)
        }),
        api(Method::POST, "/api/events/{id}/replay", Ops, || {
            web::post().to(events::replay)
        }),
        api(Method::GET, "/api/jobs", Ops, || web::get().to(jobs::list)),
        api(Method::GET, "/api/jobs/{id}", Ops, || {
            web::get().to(jobs::get)
        }),
        api(Method::POST, "/api/jobs/{id}/retry", Ops, || {
            web::post().to(jobs::retry)
        }),
        api(Method::POST, "/api/notifications/channels", Ops, || {
            web::post().to(notifications::create_channel)
        }),
        api(Method::GET, "/api/notifications/channels", Ops, || {
            web::get().to(notifications::list_channels)
        }),
        api(Method::GET, "/api/notifications/channels/{id}", Ops, || {
            web::get().to(notifications::get_channel)
        }),
        api(
            Method::PATCH,
            "/api/notifications/channels/{id}",
            Ops,
            || web::patch().to(notifications::update_channel),
        ),
        api(
            Method::DELETE,
            "/api/notifications/channels/{id}",
            Ops,
            || web::delete().to(notifications::delete_channel),
        ),
        api(
            Method::POST,
            "/api/notifications/channels/{id}/test",
            Ops,
            || web::post().to(notifications::test_channel),
        ),
        api(
            Method::GET,
            "/api/notifications/channels/{id}/deliveries",
            Ops,
            || web::get().to(notifications::deliveries),
        ),
        api(
            Method::GET,
            "/api/notifications/channels/{id}/interactivity",
            Ops,
            || web::get().to(notifications::get_interactivity),
        ),
        api(
            Method::PUT,
            "/api/notifications/channels/{id}/interactivity",
            Ops,
            || web::put().to(notifications::set_interactivity),
        ),
        api(
            Method::DELETE,
            "/api/notifications/channels/{id}/interactivity",
            Ops,
            || web::delete().to(notifications::delete_interactivity),
        ),
        api(Method::GET, "/api/notifications/slack-users", Ops, || {
            web::get().to(notifications::list_slack_users)
        }),
        api(
            Method::PUT,
            "/api/notifications/slack-users/{id}",
            Ops,
            || web::put().to(notifications::set_slack_user),
        ),
        api(
            Method::DELETE,
            "/api/notifications/slack-users/{id}",
            Ops,
            || web::delete().to(notifications::delete_slack_user),
        ),
        api(Method::POST, "/api/notifications/rules", Ops, || {
            web::post().to(notifications::create_rule)
        }),
        api(Method::GET, "/api/notifications/rules", Ops, || {
            web::get().to(notifications::list_rules)
        }),
        api(Method::GET, "/api/notifications/rules/{id}", Ops, || {
            web::get().to(notifications::get_rule)
        }),
        api(Method::PATCH, "/api/notifications/rules/{id}", Ops, || {
            web::patch().to(notifications::update_rule)
        }),
        api(Method::DELETE, "/api/notifications/rules/{id}", Ops, || {
            web::delete().to(notifications::delete_rule)
        }),
    ]
}

/// A route outside `/api`: no bearer token; each has its own check (none, Stripe's signature,
/// the token in the path).
pub struct OtherRoute {
    pub method: Method,
    pub path: &'static str,
    handler: fn() -> Route,
}

const fn other(method: Method, path: &'static str, handler: fn() -> Route) -> OtherRoute {
    OtherRoute {
        method,
        path,
        handler,
    }
}

pub fn other_routes() -> Vec<OtherRoute> {
    vec![
        other(Method::GET, "/healthz", || web::get().to(health::healthz)),
        other(Method::GET, "/readyz", || web::get().to(health::readyz)),
        other(Method::GET, "/metrics", || web::get().to(health::metrics)),
        other(Method::GET, "/openapi.json", || {
            web::get().to(openapi::document)
        }),
        // Public: the token in the path is the only key.
        other(Method::GET, "/pay/{token}", || web::get().to(pay::pay)),
        // Authenticated by the Slack app's signature, not by a token.
        other(Method::POST, "/slack/interactions", || {
            web::post().to(slack::interactions)
        }),
        // Authenticated by Stripe's signature, not by a token.
        other(Method::POST, "/webhooks/stripe", || {
            web::post().to(webhooks::receive_env)
        }),
        other(Method::POST, "/webhooks/stripe/{connection_id}", || {
            web::post().to(webhooks::receive_for)
        }),
        other(Method::POST, "/webhooks/stripe/connect/{mode}", || {
            web::post().to(webhooks::receive_connect)
        }),
    ]
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // One resource per path, holding each method's route (with its role check under `/api`);
    // another method on a known path is a 405.
    let others = other_routes();
    let routes = api_routes();
    // Registration order is kept, so a literal path (`/api/x/check`) precedes `/api/x/{id}`.
    let mut paths: Vec<&'static str> = Vec::new();
    for path in others
        .iter()
        .map(|r| r.path)
        .chain(routes.iter().map(|r| r.path))
    {
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path).default_service(web::to(method_not_allowed));
        for route in others.iter().filter(|r| r.path == path) {
            resource = resource.route((route.handler)());
        }
        for route in routes.iter().filter(|r| r.path == path) {
            let role = route.role;
            resource = resource.route((route.handler)().wrap(from_fn(move |req, next| {
                super::auth::require_role(role, req, next)
            })));
        }
        cfg.service(resource);
    }
}

/// A known path asked with a method it does not take. Bare here: `error_body` gives every bare
/// error answer its JSON body, with the code `method_not_allowed`.
async fn method_not_allowed() -> actix_web::HttpResponse {
    actix_web::HttpResponse::MethodNotAllowed().finish()
}
