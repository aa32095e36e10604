//! "Connect with Stripe" in the browser: `/connections/oauth/start` sends an ops person to
//! Stripe's authorise page (or the app's install link), `/connections/oauth/callback` takes them
//! back, finishes the connection and lands on the Connections page with a fixed outcome code.
//! [`panel`] renders the Connections page's part of it: the button(s), or how to configure them,
//! and the outcome of the last attempt as a sentence.

use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{require, see_other, WebError};
use crate::config::{OauthFlow, OauthSettings};
use crate::connections::oauth::outcome::{connected_location, failed_location, Failure};
use crate::connections::oauth::{Callback, StartError};
use crate::domain::Role;
use crate::http::AppState;
use crate::people::sessions::Staff;
use crate::stripe::Mode;

#[derive(Debug, Default, Deserialize)]
pub struct StartQuery {
    pub mode: Option<String>,
}

/// `GET /connections/oauth/start[?mode=live|test]` (ops).
pub async fn start(
    state: web::Data<AppState>,
    staff: Staff,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse, WebError> {
    require(&staff, Role::Ops)?;
    let mode = match query.mode.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            Mode::parse(text)
                .ok_or_else(|| WebError::BadRequest("The mode is live or test.".into()))?,
        ),
    };
    match state.connections.oauth_start(&staff, mode).await {
        Ok(url) => Ok(see_other(&url)),
        Err(StartError::Storage(e)) => Err(e.into()),
        Err(e) => Err(WebError::BadRequest(format!(
            "{}.",
            capitalised(&e.to_string())
        ))),
    }
}

/// `GET /connections/oauth/callback?code=…&state=…` or `?error=access_denied&state=…` (ops).
pub async fn callback(
    state: web::Data<AppState>,
    staff: Staff,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, WebError> {
    require(&staff, Role::Ops)?;
    let to = match state
        .connections
        .oauth_finish(&staff, read_callback(req.query_string()))
        .await
    {
        Ok(id) => connected_location(&id),
        Err(failure) => failed_location(failure),
    };
    Ok(see_other(&to))
}

/// The callback's parameters, each its first value: whatever the query holds, the person lands
/// on the Connections page with an outcome code, never on an error page about the URL.
fn read_callback(query: &str) -> Callback {
    let first = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    Callback {
        code: first("code"),
        state: first("state"),
        error: first("error"),
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The Connections page's query parameters this panel reads.
#[derive(Debug, Default, Deserialize)]
pub struct PanelQuery {
    pub oauth: Option<String>,
    pub connection: Option<String>,
    pub oauth_error: Option<String>,
}

impl PanelQuery {
    /// From the Connections page's query string; anything else in it is left alone.
    pub fn read(query: &str) -> PanelQuery {
        let first = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        PanelQuery {
            oauth: first("oauth"),
            connection: first("connection"),
            oauth_error: first("oauth_error"),
        }
    }
}

struct Button {
    mode: &'static str,
    href: String,
    label: String,
}

struct Banner {
    ok: bool,
    sentence: String,
}

#[derive(Template)]
#[template(path = "connections_oauth.html")]
struct Panel {
    banner: Option<Banner>,
    may_connect: bool,
    buttons: Vec<Button>,
    how_to_configure: &'static str,
}

const HOW_TO_CONFIGURE: &str = "\"Connect with Stripe\" is not configured. To offer it, register \
    billmirror with Stripe (as a Connect platform or as a Stripe App), then set STRIPE_OAUTH_FLOW \
    (connect or app), STRIPE_PLATFORM_SECRET_KEY and STRIPE_CONNECT_CLIENT_ID (connect) or \
    STRIPE_APP_INSTALL_LINK_LIVE / _TEST (app), and restart; the README says how.";

/// The "Connect with Stripe" part of the Connections page, as HTML: the outcome of the last
/// attempt (from `query`), and for ops the button per mode that may be connected, or how to
/// configure them.
pub fn panel(settings: Option<&OauthSettings>, staff: &Staff, query: &PanelQuery) -> String {
    let banner =
        match (
            &query.oauth_error,
            query.oauth.as_deref(),
            &query.connection,
        ) {
            (Some(code), _, _) => Some(Banner {
                ok: false,
                sentence: Failure::parse(code)
                    .map(Failure::sentence)
                    .unwrap_or("Stripe was not connected.")
                    .to_owned(),
            }),
            (None, Some("connected"), Some(id)) => Some(Banner {
                ok: true,
                sentence: format!(
                "Connected with Stripe, read-only, as connection {}. It mirrors the account from \
                 now on; its key report below says what it may read.",
                id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>()
            ),
            }),
            _ => None,
        };
    let buttons = settings
        .map(|settings| {
            let several = settings.modes.len() > 1;
            settings
                .modes
                .iter()
                .map(|m| Button {
                    mode: m.mode.as_str(),
                    href: format!("/connections/oauth/start?mode={}", m.mode.as_str()),
                    label: match (settings.flow, several) {
                        (OauthFlow::App, _) => {
                            format!("Install the app ({} mode)", m.mode.as_str())
                        }
                        (OauthFlow::Connect, true) => {
                            format!("Connect with Stripe ({} mode)", m.mode.as_str())
                        }
                        (OauthFlow::Connect, false) => "Connect with Stripe".to_owned(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let page = Panel {
        banner,
        may_connect: staff.may(Role::Ops),
        buttons,
        how_to_configure: HOW_TO_CONFIGURE,
    };
    page.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "the Connect with Stripe panel failed to render");
        String::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OauthMode;
    use crate::domain::Secret;

    fn staff(role: Role) -> Staff {
        Staff {
            user_id: "usr_1".into(),
            email: "ops@example.com".into(),
            role,
            csrf_token: "t".into(),
            session: "s".into(),
        }
    }

    fn settings(flow: OauthFlow, modes: &[Mode]) -> OauthSettings {
        OauthSettings {
            flow,
            client_id: Some("ca_1".into()),
            connect_base: "https://connect.stripe.com".into(),
            modes: modes
                .iter()
                .map(|mode| OauthMode {
                    mode: *mode,
                    key: Secret::new(format!("sk_{}_secretvalue1234", mode.as_str())),
                    install_link: Some("https://marketplace.stripe.com/x".into()),
                    webhook_secrets: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_callback_reads_the_first_of_each_parameter_whatever_else_comes() {
        let read = read_callback("state=s1&state=s2&code=ac_1&scope=read_only&error=%ZZ");
        assert_eq!(read.state.as_deref(), Some("s1"));
        assert_eq!(read.code.as_deref(), Some("ac_1"));
        assert!(read.error.is_some());
        let empty = read_callback("");
        assert!(empty.state.is_none() && empty.code.is_none() && empty.error.is_none());
    }

    #[test]
    fn ops_see_one_button_per_mode_and_never_a_key() {
        let html = panel(
            Some(&settings(OauthFlow::App, &[Mode::Live, Mode::Test])),
            &staff(Role::Ops),
            &PanelQuery::default(),
        );
        assert!(
            html.contains("href=\"/connections/oauth/start?mode=live\""),
            "{html}"
        );
        assert!(
            html.contains("href=\"/connections/oauth/start?mode=test\""),
            "{html}"
        );
        assert!(html.contains("Install the app (test mode)"));
        assert!(!html.contains("secretvalue"));
        let one = panel(
            Some(&settings(OauthFlow::Connect, &[Mode::Test])),
            &staff(Role::Admin),
            &PanelQuery::default(),
        );
        assert!(one.contains(">Connect with Stripe</a>"), "{one}");
    }

    #[test]
    fn without_configuration_ops_read_how_and_support_sees_no_button() {
        let html = panel(None, &staff(Role::Ops), &PanelQuery::default());
        assert!(html.contains("STRIPE_OAUTH_FLOW"));
        assert!(!html.contains("/connections/oauth/start"));
        let support = panel(
            Some(&settings(OauthFlow::Connect, &[Mode::Test])),
            &staff(Role::Support),
            &PanelQuery::default(),
        );
        assert!(!support.contains("/connections/oauth/start"));
    }

    #[test]
    fn the_outcome_is_a_sentence_per_code_and_never_echoes_the_url() {
        for failure in Failure::ALL {
            let query = PanelQuery {
                oauth_error: Some(failure.code().into()),
                ..PanelQuery::default()
            };
            let html = panel(None, &staff(Role::Ops), &query);
            assert!(html.contains(&askama_escape(failure.sentence())), "{html}");
        }
        let forged = PanelQuery {
            oauth_error: Some("<script>alert(1)</script>".into()),
            ..PanelQuery::default()
        };
        let html = panel(None, &staff(Role::Ops), &forged);
        assert!(!html.contains("script") && html.contains("Stripe was not connected."));
        let connected = PanelQuery {
            oauth: Some("connected".into()),
            connection: Some("conn_1<b>".into()),
            oauth_error: None,
        };
        let html = panel(None, &staff(Role::Ops), &connected);
        assert!(html.contains("as connection conn_1b."), "{html}");
    }

    fn askama_escape(text: &str) -> String {
        text.replace('"', "&#34;").replace('\'', "&#39;")
    }
}
