//! The "Connect with Stripe" settings (`STRIPE_OAUTH_FLOW` and its family): which OAuth flow,
//! and each mode's key, install link and Connect webhook secrets, validated together.

use super::{http_url, key_mode, Reader, Secret};

/// Which OAuth flow "Connect with Stripe" uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OauthFlow {
    /// Stripe Connect OAuth for Standard accounts.
    Connect,
    /// Stripe App OAuth: install links, short-lived access tokens, rolling refresh tokens.
    App,
}

impl OauthFlow {
    pub fn as_str(self) -> &'static str {
        match self {
            OauthFlow::Connect => "connect",
            OauthFlow::App => "app",
        }
    }

    pub fn parse(value: &str) -> Option<OauthFlow> {
        match value {
            "connect" => Some(OauthFlow::Connect),
            "app" => Some(OauthFlow::App),
            _ => None,
        }
    }
}

/// What one mode (live or test) of "Connect with Stripe" needs.
#[derive(Debug, Clone)]
pub struct OauthMode {
    pub mode: crate::stripe::Mode,
    /// The platform's (Connect) or the app's (App) secret key of this mode.
    pub key: Secret,
    /// App flow: the install link copied from the app's page in the Dashboard.
    pub install_link: Option<String>,
    /// The Connect webhook endpoint's signing secrets for this mode (several during a rotation).
    pub webhook_secrets: Vec<Secret>,
}

#[derive(Debug, Clone)]
pub struct OauthSettings {
    pub flow: OauthFlow,
    /// Connect flow: the platform's `ca_…` client id.
    pub client_id: Option<String>,
    /// `https://connect.stripe.com`: where the Connect flow authorises and exchanges codes.
    pub connect_base: String,
    /// The modes that may be connected, each with its key; at most one per mode, live first.
    pub modes: Vec<OauthMode>,
}

impl OauthSettings {
    pub fn mode(&self, mode: crate::stripe::Mode) -> Option<&OauthMode> {
        self.modes.iter().find(|m| m.mode == mode)
    }
}

/// Reads the `STRIPE_OAUTH_FLOW` family. `Some(None)`: OAuth is off (and nothing of it is set);
/// `None`: a value was refused (the reader holds why).
pub(super) fn oauth_settings(env: &Reader<'_>) -> Option<Option<OauthSettings>> {
    use crate::stripe::Mode;
    let flow = env.optional("STRIPE_OAUTH_FLOW");
    let client_id = env.optional("STRIPE_CONNECT_CLIENT_ID");
    let keys = env.optional("STRIPE_PLATFORM_SECRET_KEY");
    let connect_base = env.with(
        "STRIPE_CONNECT_BASE",
        "https://connect.stripe.com",
        http_url,
    );
    let links = [
        (Mode::Live, "STRIPE_APP_INSTALL_LINK_LIVE"),
        (Mode::Test, "STRIPE_APP_INSTALL_LINK_TEST"),
    ]
    .map(|(mode, name)| (mode, name, env.optional(name)));
    let secrets = [
        (Mode::Live, "STRIPE_CONNECT_WEBHOOK_SECRET_LIVE"),
        (Mode::Test, "STRIPE_CONNECT_WEBHOOK_SECRET_TEST"),
    ]
    .map(|(mode, name)| (mode, name, env.optional(name)));
    let Some(flow) = flow else {
        let stray: Vec<&str> = [
            ("STRIPE_CONNECT_CLIENT_ID", client_id.is_some()),
            ("STRIPE_PLATFORM_SECRET_KEY", keys.is_some()),
        ]
        .into_iter()
        .chain(links.iter().map(|(_, name, v)| (*name, v.is_some())))
        .chain(secrets.iter().map(|(_, name, v)| (*name, v.is_some())))
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect();
        for name in &stray {
            env.fail(
                name,
                "is set but STRIPE_OAUTH_FLOW is not: set STRIPE_OAUTH_FLOW=connect or app to \
                 offer \"Connect with Stripe\", or remove it",
            );
        }
        return stray.is_empty().then_some(None);
    };
    let mut ok = true;
    let Some(flow) = OauthFlow::parse(&flow) else {
        env.fail(
            "STRIPE_OAUTH_FLOW",
            format!("has an invalid value `{flow}`: use `connect` (Stripe Connect OAuth) or `app` (Stripe App OAuth)"),
        );
        return None;
    };
    match (&client_id, flow) {
        (None, OauthFlow::Connect) => {
            ok = false;
            env.fail(
                "STRIPE_CONNECT_CLIENT_ID",
                "is required with STRIPE_OAUTH_FLOW=connect: the platform's client id (ca_…), \
                 from the Dashboard's Connect settings (Onboarding options → OAuth)",
            );
        }
        (Some(id), _) if !id.starts_with("ca_") || id.len() < 6 => {
            ok = false;
            env.fail(
                "STRIPE_CONNECT_CLIENT_ID",
                "does not look like a client id: it starts with ca_",
            );
        }
        _ => {}
    }
    let mut modes: Vec<OauthMode> = Vec::new();
    match &keys {
        None => {
            ok = false;
            env.fail(
                "STRIPE_PLATFORM_SECRET_KEY",
                format!(
                    "is required with STRIPE_OAUTH_FLOW={}: the {} secret key (sk_…), one per mode \
                     to connect, comma-separated",
                    flow.as_str(),
                    if flow == OauthFlow::Connect { "platform's" } else { "app's account's" }
                ),
            );
        }
        Some(list) => {
            for (n, key) in list.split(',').map(str::trim).enumerate() {
                let mode = key_mode(key, &["sk_", "rk_"]).and_then(Mode::parse);
                match mode {
                    None => {
                        ok = false;
                        env.fail(
                            "STRIPE_PLATFORM_SECRET_KEY",
                            format!(
                                "key {} must start with sk_live_, sk_test_, rk_live_ or rk_test_",
                                n + 1
                            ),
                        );
                    }
                    Some(mode) if modes.iter().any(|m| m.mode == mode) => {
                        ok = false;
                        env.fail(
                            "STRIPE_PLATFORM_SECRET_KEY",
                            format!(
                                "lists two {} keys: give at most one key per mode",
                                mode.as_str()
                            ),
                        );
                    }
                    Some(mode) => modes.push(OauthMode {
                        mode,
                        key: Secret::new(key.to_owned()),
                        install_link: None,
                        webhook_secrets: Vec::new(),
                    }),
                }
            }
        }
    }
    for (mode, name, link) in links {
        let Some(link) = link else { continue };
        if flow != OauthFlow::App {
            ok = false;
            env.fail(name, "is only used with STRIPE_OAUTH_FLOW=app: remove it");
            continue;
        }
        match (http_url(&link), modes.iter_mut().find(|m| m.mode == mode)) {
            (Err(problem), _) => {
                ok = false;
                env.fail(name, format!("is not a URL: {problem}"));
            }
            (Ok(_), None) if keys.is_some() => {
                ok = false;
                env.fail(
                    name,
                    format!(
                        "is set but STRIPE_PLATFORM_SECRET_KEY has no {} key to exchange its codes with",
                        mode.as_str()
                    ),
                );
            }
            (Ok(link), Some(m)) => m.install_link = Some(link),
            (Ok(_), None) => {}
        }
    }
    if flow == OauthFlow::App {
        // A mode without an install link cannot be connected: its key is not used.
        modes.retain(|m| m.install_link.is_some());
        if modes.is_empty() && keys.is_some() && ok {
            ok = false;
            env.fail(
                "STRIPE_APP_INSTALL_LINK_LIVE",
                "or STRIPE_APP_INSTALL_LINK_TEST is required with STRIPE_OAUTH_FLOW=app: the \
                 app's install link of that mode, from the app's page in the Dashboard",
            );
        }
    }
    for (mode, name, list) in secrets {
        let Some(list) = list else { continue };
        let mut parsed = Vec::new();
        for (n, secret) in list.split(',').map(str::trim).enumerate() {
            if !secret.starts_with("whsec_") || secret.len() < 12 {
                ok = false;
                env.fail(
                    name,
                    format!(
                        "secret {} does not look like a webhook signing secret (whsec_…)",
                        n + 1
                    ),
                );
            } else {
                parsed.push(Secret::new(secret.to_owned()));
            }
        }
        match modes.iter_mut().find(|m| m.mode == mode) {
            Some(m) => m.webhook_secrets = parsed,
            None if keys.is_some() => {
                ok = false;
                env.fail(
                    name,
                    format!(
                        "is set but no {} mode can be connected (see STRIPE_PLATFORM_SECRET_KEY)",
                        mode.as_str()
                    ),
                );
            }
            None => {}
        }
    }
    modes.sort_by_key(|m| m.mode != Mode::Live);
    if !ok {
        return None;
    }
    Some(Some(OauthSettings {
        flow,
        client_id,
        connect_base: connect_base?,
        modes,
    }))
}
