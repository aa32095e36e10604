//! The fake's OAuth server, as strict as Stripe's documentation: Connect's authorise page,
//! `POST /oauth/token` and `/oauth/deauthorize` (authenticated with the platform's secret key),
//! a Stripe App's install page and `POST /v1/oauth/token` with rolling refresh tokens (each
//! refresh spends the refresh token it used), and the grants that let a platform key read a
//! connected account with `Stripe-Account`.
//!
//! The authorise page is real HTML with an Authorize and a Deny button, each a form that sends
//! the browser back to the `redirect_uri` with a `code` or `error=access_denied`, and the state.

use std::time::Instant;

use base64::Engine;

use super::*;

/// How long an authorisation code may be exchanged (Stripe: a few minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Connect,
    App,
}

/// A platform (Connect) or an app registered with the fake.
#[derive(Debug, Clone)]
struct Client {
    flow: Flow,
    /// The platform's (or app's) own account: its keys exchange codes.
    account: String,
    redirect_uris: Vec<String>,
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    connected: String,
    scope: String,
    /// An App install link has a mode; a Connect code takes the mode of the key that exchanges it.
    livemode: Option<bool>,
    issued: Instant,
    used: bool,
}

#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    platform: String,
    connected: String,
    scope: String,
    livemode: bool,
    active: bool,
    access_tokens: Vec<String>,
}

#[derive(Default)]
pub(super) struct OauthState {
    clients: HashMap<String, Client>,
    codes: HashMap<String, Code>,
    /// Refresh token → index in `grants`; a spent (rolled) token is removed.
    refresh_tokens: HashMap<String, usize>,
    grants: Vec<Grant>,

    /// Test knob: Stripe answers with this livemode whatever was asked.
    livemode_override: Option<bool>,
}

impl OauthState {
    /// What a platform key may do on `connected` through `Stripe-Account`.
    pub(super) fn access_for(&self, platform: &str, connected: &str) -> Option<Access> {
        self.grants
            .iter()
            .rev()
            .find(|g| g.platform == platform && g.connected == connected && g.active)
            .map(|g| access_of_scope(&g.scope))
    }
}

fn access_of_scope(scope: &str) -> Access {
    if scope == "read_write" {
        Access::Full
    } else {
        Access::read_only()
    }
}

/// The account that logs in and authorises on the fake's page.
pub const CONNECTED_ACCOUNT: &str = "acct_fake_connected";

impl FakeStripe {
    /// Registers a Connect platform (`ca_…`), owned by `account`, allowing `redirect_uris`.
    pub fn register_oauth_client(
        &self,
        flow: Flow,
        client_id: &str,
        account: &str,
        redirect_uris: &[&str],
    ) {
        self.with(|s| {
            s.oauth.clients.insert(
                client_id.to_owned(),
                Client {
                    flow,
                    account: account.to_owned(),
                    redirect_uris: redirect_uris.iter().map(|u| u.to_string()).collect(),
                },
            )
        });
    }

    /// Stripe answers every exchange with this livemode (a test authorisation on a live button).
    pub fn override_livemode(&self, livemode: Option<bool>) {
        self.with(|s| s.oauth.livemode_override = livemode);
    }

    /// Every code issued so far has expired.
    pub fn expire_codes(&self) {
        self.with(|s| {
            for code in s.oauth.codes.values_mut() {
                code.issued -= CODE_LIFETIME;
            }
        });
    }

    /// The connected account's owner removes the platform or app in their Dashboard: every
    /// token stops working. Returns the `account.application.deauthorized` event Stripe sends
    /// to the platform's Connect endpoint, for the test to deliver.
    pub fn deauthorize_in_dashboard(&self, connected: &str) -> Value {
        self.with(|s| {
            let client_id = revoke_grants(s, connected);
            let id = s.new_id("evt");
            json!({
                "id": id, "object": "event", "api_version": "2024-06-20",
                "created": chrono::Utc::now().timestamp(), "livemode": false,
                "type": "account.application.deauthorized", "account": connected,
                "data": {"object": {"id": client_id.unwrap_or_default(), "object": "application", "name": "billmirror"}},
            })
        })
    }

    /// Whether `connected` still has an active grant.
    pub fn is_authorized(&self, connected: &str) -> bool {
        self.with(|s| {
            s.oauth
                .grants
                .iter()
                .any(|g| g.connected == connected && g.active)
        })
    }
}

/// Ends every grant of `connected`: tokens revoked, refresh tokens spent. Returns a client id.
fn revoke_grants(s: &mut State, connected: &str) -> Option<String> {
    let mut client_id = None;
    let mut revoked_tokens = Vec::new();
    for (n, grant) in s.oauth.grants.iter_mut().enumerate() {
        if grant.connected == connected && grant.active {
            grant.active = false;
            client_id = Some(grant.client_id.clone());
            revoked_tokens.extend(grant.access_tokens.clone());
            s.oauth.refresh_tokens.retain(|_, g| *g != n);
        }
    }
    for token in revoked_tokens {
        if let Some(key) = s.keys.get_mut(&token) {
            key.revoked = Some("token_revoked");
        }
    }
    client_id
}

fn oauth_error(status: u16, code: &str, description: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap())
        .json(json!({"error": code, "error_description": description}))
}

fn page(status: u16, body: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap())
        .content_type("text/html; charset=utf-8")
        .body(format!("<!doctype html><html><head><title>Stripe (fake)</title></head><body>{body}</body></html>"))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{url}{}{query}", if url.contains('?') { '&' } else { '?' })
}

/// The key in `Authorization: Basic base64(key:)` (or `Bearer key`).
fn basic_key(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get("authorization")?.to_str().ok()?;
    if let Some(bearer) = header.strip_prefix("Bearer ") {
        return Some(bearer.to_owned());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(header.strip_prefix("Basic ")?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split(':').next()?.to_owned())
}

fn key_livemode(key: &str) -> bool {
    key.starts_with("sk_live_") || key.starts_with("rk_live_")
}

/// The OAuth paths, or `None` for any other path.
pub(super) fn handle(
    state: &Arc<Mutex<State>>,
    req: &HttpRequest,
    body: &Bytes,
) -> Option<HttpResponse> {
    let path = req.path();
    let method = req.method().as_str();
    let down = state.lock().unwrap().down;
    let answer = match (method, path) {
        _ if down.is_some() && path.starts_with("/oauth/token")
            || down.is_some() && path == "/v1/oauth/token" =>
        {
            oauth_error(down.unwrap_or(503), "api_error", "Stripe is down (fake).")
        }
        ("GET", "/oauth/authorize") => authorize_page(state, req, None),
        ("GET", p) if p.starts_with("/oauth/v2/") && p.ends_with("/authorize") => {
            let livemode = !p.contains("/test/");
            authorize_page(state, req, Some(livemode))
        }
        ("POST", "/oauth/authorize/decide") => decide(state, body),
        ("POST", "/oauth/token") => token(state, req, body, Flow::Connect),
        ("POST", "/v1/oauth/token") => token(state, req, body, Flow::App),
        ("POST", "/oauth/deauthorize") => deauthorize(state, req, body),
        _ => return None,
    };
    let mut s = state.lock().unwrap();
    let params = parse_form(&if method == "GET" {
        req.query_string().to_owned()
    } else {
        String::from_utf8_lossy(body).into_owned()
    });
    s.calls.push(Call {
        method: method.to_owned(),
        path: path.to_owned(),
        idempotency_key: None,
        params,
        status: answer.status().as_u16(),
        stripe_version: req
            .headers()
            .get("Stripe-Version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    Some(answer)
}

fn query_pairs(req: &HttpRequest) -> HashMap<String, String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

fn authorize_page(
    state: &Arc<Mutex<State>>,
    req: &HttpRequest,
    livemode: Option<bool>,
) -> HttpResponse {
    let q = query_pairs(req);
    let s = state.lock().unwrap();
    let Some(client_id) = q.get("client_id") else {
        return page(
            400,
            "<p id=\"error\">invalid_request: No client_id provided.</p>",
        );
    };
    let Some(client) = s.oauth.clients.get(client_id) else {
        return page(
            400,
            "<p id=\"error\">invalid_client: No such application.</p>",
        );
    };
    if livemode.is_none() && q.get("response_type").map(String::as_str) != Some("code") {
        return page(
            400,
            "<p id=\"error\">invalid_request: response_type must be code.</p>",
        );
    }
    let scope = q
        .get("scope")
        .cloned()
        .unwrap_or_else(|| "read_only".into());
    if livemode.is_none() && !["read_only", "read_write"].contains(&scope.as_str()) {
        return page(400, "<p id=\"error\">invalid_scope</p>");
    }
    let redirect = q
        .get("redirect_uri")
        .cloned()
        .or_else(|| client.redirect_uris.first().cloned());
    let Some(redirect) = redirect.filter(|r| client.redirect_uris.contains(r)) else {
        return page(400, "<p id=\"error\">invalid_redirect_uri: The redirect_uri is not one of this application's.</p>");
    };
    let state_param = q.get("state").cloned().unwrap_or_default();
    let account = CONNECTED_ACCOUNT.to_owned();
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    };
    let fields = [
        hidden("client_id", client_id),
        hidden("redirect_uri", &redirect),
        hidden("state", &state_param),
        hidden("scope", &scope),
        hidden("account", &account),
        hidden(
            "livemode",
            &livemode.map(|l| l.to_string()).unwrap_or_default(),
        ),
    ]
    .join("");
    page(
        200,
        &format!(
            "<h1>Authorize access to your Stripe account</h1><p>{} would like {} access to {account}.</p>\
             <form method=\"post\" action=\"/oauth/authorize/decide\">{fields}<input type=\"hidden\" name=\"decision\" value=\"allow\"><button id=\"authorize\" type=\"submit\">Authorize</button></form>\
             <form method=\"post\" action=\"/oauth/authorize/decide\">{fields}<input type=\"hidden\" name=\"decision\" value=\"deny\"><button id=\"deny\" type=\"submit\">Deny</button></form>",
            if client.flow == Flow::App { "The app" } else { "The platform" },
            escape(&scope)
        ),
    )
}

fn decide(state: &Arc<Mutex<State>>, body: &Bytes) -> HttpResponse {
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    let Some(client) = s.oauth.clients.get(&get("client_id")).cloned() else {
        return page(400, "<p id=\"error\">invalid_client</p>");
    };
    let redirect = get("redirect_uri");
    if !client.redirect_uris.contains(&redirect) {
        return page(400, "<p id=\"error\">invalid_redirect_uri</p>");
    }
    let target = if get("decision") == "allow" {
        let code = format!(
            "ac_{}",
            hex::encode(billmirror::domain::ids::random_bytes::<12>())
        );
        s.oauth.codes.insert(
            code.clone(),
            Code {
                client_id: get("client_id"),
                connected: get("account"),
                scope: get("scope"),
                livemode: get("livemode").parse().ok(),
                issued: Instant::now(),
                used: false,
            },
        );
        with_query(
            &redirect,
            &[
                ("code", &code),
                ("scope", &get("scope")),
                ("state", &get("state")),
            ],
        )
    } else {
        with_query(
            &redirect,
            &[
                ("error", "access_denied"),
                ("error_description", "The user denied your request"),
                ("state", &get("state")),
            ],
        )
    };
    HttpResponse::Found()
        .insert_header(("location", target))
        .finish()
}

/// Who the key belongs to, when it is a usable key of a platform or app with a client.
fn client_of_key(s: &State, key: &str, flow: Flow) -> Option<(String, Client)> {
    let info = s.keys.get(key)?;
    if info.revoked.is_some() || !matches!(info.access, Access::Full) {
        return None;
    }
    s.oauth
        .clients
        .iter()
        .find(|(_, c)| c.account == info.account && c.flow == flow)
        .map(|(id, c)| (id.clone(), c.clone()))
}

fn token(state: &Arc<Mutex<State>>, req: &HttpRequest, body: &Bytes, flow: Flow) -> HttpResponse {
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let mut s = state.lock().unwrap();
    let key = basic_key(req)
        .or_else(|| form.get("client_secret").cloned())
        .unwrap_or_default();
    let Some((client_id, client)) = client_of_key(&s, &key, flow) else {
        return oauth_error(
            401,
            "invalid_client",
            "No such API key, or it belongs to no OAuth application.",
        );
    };
    let key_live = key_livemode(&key);
    let grant_index = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(code_text) = form.get("code") else {
                return oauth_error(400, "invalid_request", "No code provided.");
            };
            let Some(code) = s.oauth.codes.get_mut(code_text) else {
                return oauth_error(
                    400,
                    "invalid_grant",
                    &format!("Authorization code does not exist: {code_text}"),
                );
            };
            if code.used {
                return oauth_error(
                    400,
                    "invalid_grant",
                    &format!("Authorization code already used: {code_text}"),
                );
            }
            if code.issued.elapsed() > CODE_LIFETIME {
                return oauth_error(
                    400,
                    "invalid_grant",
                    &format!("Authorization code expired: {code_text}"),
                );
            }
            if code.client_id != client_id {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "Authorization code provided does not belong to you.",
                );
            }
            if code.livemode.is_some_and(|l| l != key_live) {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "This authorization code was issued in the other mode.",
                );
            }
            code.used = true;
            let code = code.clone();
            let livemode = s
                .oauth
                .livemode_override
                .unwrap_or(code.livemode.unwrap_or(key_live));
            s.oauth.grants.push(Grant {
                client_id: client_id.clone(),
                platform: client.account.clone(),
                connected: code.connected.clone(),
                scope: code.scope.clone(),
                livemode,
                active: true,
                access_tokens: Vec::new(),
            });
            s.oauth.grants.len() - 1
        }
        Some("refresh_token") => {
            let Some(refresh) = form.get("refresh_token") else {
                return oauth_error(400, "invalid_request", "No refresh_token provided.");
            };
            let found = s.oauth.refresh_tokens.get(refresh).copied();
            let Some(index) = found.filter(|i| s.oauth.grants[*i].client_id == client_id) else {
                return oauth_error(400, "invalid_grant", "Invalid refresh token.");
            };
            if flow == Flow::App {
                // Rolling: the refresh token used is spent.
                s.oauth.refresh_tokens.remove(refresh);
            }
            index
        }
        _ => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token.",
            )
        }
    };
    let grant = s.oauth.grants[grant_index].clone();
    s.add_connected_account(&grant.connected);
    let mode = if grant.livemode { "live" } else { "test" };
    let access = format!(
        "sk_{mode}_oauth{}",
        hex::encode(billmirror::domain::ids::random_bytes::<16>())
    );
    let refresh = format!(
        "rt_{}",
        hex::encode(billmirror::domain::ids::random_bytes::<16>())
    );
    let expires = match flow {
        Flow::App => Some(Instant::now() + Duration::from_secs(3600)),
        Flow::Connect => None,
    };
    s.keys.insert(
        access.clone(),
        KeyInfo {
            account: grant.connected.clone(),
            access: access_of_scope(&grant.scope),
            revoked: None,
            expires,
        },
    );
    s.oauth.grants[grant_index]
        .access_tokens
        .push(access.clone());
    let give_refresh = flow == Flow::App
        || form.get("grant_type").map(String::as_str) == Some("authorization_code");
    if give_refresh {
        s.oauth.refresh_tokens.insert(refresh.clone(), grant_index);
    }
    let mut answer = json!({
        "access_token": access, "token_type": "bearer", "scope": grant.scope,
        "livemode": grant.livemode, "stripe_user_id": grant.connected,
        "stripe_publishable_key": format!("pk_{mode}_fake{}", &grant.connected),
    });
    if give_refresh {
        answer["refresh_token"] = json!(refresh);
    }
    HttpResponse::Ok().json(answer)
}

fn deauthorize(state: &Arc<Mutex<State>>, req: &HttpRequest, body: &Bytes) -> HttpResponse {
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let mut s = state.lock().unwrap();
    let key = basic_key(req).unwrap_or_default();
    let Some((client_id, _)) = client_of_key(&s, &key, Flow::Connect) else {
        return oauth_error(
            401,
            "invalid_client",
            "No such API key, or it belongs to no platform.",
        );
    };
    if form.get("client_id") != Some(&client_id) {
        return oauth_error(
            401,
            "invalid_client",
            "No such application, or it is not yours.",
        );
    }
    let Some(account) = form.get("stripe_user_id").cloned() else {
        return oauth_error(400, "invalid_request", "No stripe_user_id provided.");
    };
    if !s
        .oauth
        .grants
        .iter()
        .any(|g| g.connected == account && g.client_id == client_id && g.active)
    {
        return oauth_error(
            401,
            "invalid_client",
            &format!("Stripe user {account} is not connected to client {client_id}."),
        );
    }
    revoke_grants(&mut s, &account);
    HttpResponse::Ok().json(json!({"stripe_user_id": account}))
}

impl State {
    fn add_connected_account(&mut self, id: &str) {
        if !self.accounts.contains_key(id) {
            let account = json!({
                "id": id, "object": "account", "business_profile": {"name": "Connected Shop"},
                "charges_enabled": true, "payouts_enabled": true, "details_submitted": true,
                "requirements": {"currently_due": [], "disabled_reason": null},
            });
            self.accounts.insert(id.to_owned(), account);
        }
    }
}
