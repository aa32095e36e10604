//! "Connect with Stripe": read-only OAuth connections, by Stripe Connect OAuth (Standard
//! accounts: reads use the platform key with `Stripe-Account`) or Stripe App OAuth (reads use a
//! short-lived access token, refreshed with a rolling refresh token). Starting and finishing
//! the authorisation, keeping App tokens fresh (one refresher at a time across instances), and
//! learning from Stripe that an authorisation is gone. Tokens are sealed like keys.

mod exchange;
pub mod outcome;
pub mod state;
pub mod token;
pub mod url;

use std::sync::{Arc, Mutex, Weak};

use chrono::{Duration, NaiveDateTime};
use serde_json::json;

use super::{secret_context, ConnectionError, Connections};
use crate::config::{OauthFlow, OauthMode, OauthSettings};
use crate::domain::states::{ConnectionAuth, ConnectionOrigin};
use crate::domain::{ids, time, Secret};
use crate::people::sessions::Staff;
use crate::storage::connections::{self as store, key_status, status, ConnectionRow, OauthTokens};
use crate::storage::oauth_states::{self, OauthStateRow};
use crate::storage::{tokens as audit_log, Db, StorageError};
use crate::stripe::client::RefusedHook;
use crate::stripe::{report, Mode, StripeClient, StripeError};
use exchange::ExchangeError;
pub use outcome::Failure;
use token::{Grant, Refused};

/// A request refreshes an App access token that expires within this.
const REFRESH_MARGIN: Duration = Duration::minutes(5);
/// The background refresh takes every token that expires within this.
pub const REFRESH_AHEAD: Duration = Duration::minutes(15);
/// How long a claimed refresh is its instance's; one whose instance died is free after this.
const CLAIM: Duration = Duration::seconds(30);
/// How long an instance that lost the claim waits for the winner's tokens before giving up.
const WAIT_FOR_WINNER: std::time::Duration = std::time::Duration::from_secs(10);

/// What Stripe's redirect brings back to the callback.
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "\"Connect with Stripe\" is not configured: set STRIPE_OAUTH_FLOW and its variables \
         (see the README)"
    )]
    NotConfigured,
    #[error("{0} mode cannot be connected here: STRIPE_PLATFORM_SECRET_KEY has no key of it")]
    ModeNotOffered(&'static str),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Connections {
    pub fn oauth_settings(&self) -> Option<&OauthSettings> {
        self.oauth.as_ref()
    }

    fn oauth_mode(&self, mode: &str) -> Option<&OauthMode> {
        self.oauth.as_ref()?.mode(Mode::parse(mode)?)
    }

    /// Where Stripe posts the events of every account connected in `mode`.
    pub fn connect_webhook_url(&self, mode: Mode) -> String {
        format!(
            "{}/webhooks/stripe/connect/{}",
            self.public_url,
            mode.as_str()
        )
    }

    /// Begins a "Connect with Stripe" for `staff`: stores a fresh state bound to their session
    /// and returns the Stripe page to send the browser to. `mode` picks the button; without it
    /// the first mode offered (live before test).
    pub async fn oauth_start(
        &self,
        staff: &Staff,
        mode: Option<Mode>,
    ) -> Result<String, StartError> {
        let settings = self.oauth.as_ref().ok_or(StartError::NotConfigured)?;
        let offer = match mode {
            Some(mode) => settings
                .mode(mode)
                .ok_or(StartError::ModeNotOffered(mode.as_str()))?,
            None => settings.modes.first().ok_or(StartError::NotConfigured)?,
        };
        let state = state::new_state();
        let now = time::now();
        let row = OauthStateRow {
            state_hash: state::hash(&state),
            user_id: staff.user_id.clone(),
            session_hash: staff.session.clone(),
            flow: settings.flow.as_str().to_owned(),
            mode: offer.mode.as_str().to_owned(),
            created_at: now,
            expires_at: now + state::LIFETIME,
            used_at: None,
        };
        self.db
            .run(move |conn| oauth_states::insert(conn, &row))
            .await?;
        let redirect = url::redirect_uri(&self.public_url);
        Ok(match (settings.flow, &offer.install_link) {
            (OauthFlow::App, Some(link)) => url::app_install(link, &state, &redirect),
            _ => url::connect_authorize(
                &settings.connect_base,
                settings.client_id.as_deref().unwrap_or_default(),
                &state,
                &redirect,
            ),
        })
    }

    /// Finishes a "Connect with Stripe" for `staff` from Stripe's redirect: the state checked
    /// (refusals audited), the code exchanged, the connection saved (or an earlier OAuth
    /// connection of the same account re-authorised). Nothing is saved on any failure.
    pub async fn oauth_finish(&self, staff: &Staff, callback: Callback) -> Result<String, Failure> {
        let Some(settings) = self.oauth.clone() else {
            return Err(Failure::InvalidClient);
        };
        let started = self.take_state(staff, callback.state.as_deref()).await?;
        let actor = staff.email.clone();
        if let Some(error) = callback.error.as_deref() {
            let failure = if error == "access_denied" {
                Failure::AccessDenied
            } else {
                Failure::InvalidClient
            };
            self.audit_quietly(
                &actor,
                "connection.oauth_failed",
                &staff.user_id,
                json!({"reason": failure.code()}),
            )
            .await;
            return Err(failure);
        }
        let mode = Mode::parse(&started.mode).ok_or(Failure::State)?;
        let offer = settings.mode(mode).ok_or(Failure::InvalidClient)?;
        let code = callback
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or(Failure::InvalidGrant)?;
        let flow = OauthFlow::parse(&started.flow)
            .filter(|f| *f == settings.flow)
            .ok_or(Failure::State)?;
        let exchanged = exchange::tokens(
            &self.http,
            &self.token_url(flow),
            &offer.key,
            &[("grant_type", "authorization_code"), ("code", code)],
        )
        .await;
        let grant = match exchanged {
            Ok(grant) => grant,
            Err(e) => {
                let failure = match e {
                    ExchangeError::Refused(Refused::InvalidGrant) => Failure::InvalidGrant,
                    ExchangeError::Refused(_) => Failure::InvalidClient,
                    ExchangeError::Unreachable(why) => {
                        tracing::warn!(error = %why, "Stripe's OAuth token endpoint could not be reached");
                        Failure::Unreachable
                    }
                };
                self.audit_quietly(
                    &actor,
                    "connection.oauth_failed",
                    &staff.user_id,
                    json!({"reason": failure.code()}),
                )
                .await;
                return Err(failure);
            }
        };
        if !url::mode_matches(mode, grant.livemode) {
            self.audit_quietly(
                &actor,
                "connection.oauth_failed",
                &staff.user_id,
                json!({"reason": "mode_mismatch", "asked": mode.as_str(), "stripe_user_id": grant.stripe_user_id}),
            )
            .await;
            return Err(Failure::ModeMismatch);
        }
        let id = self.save_grant(flow, mode, grant, &actor).await?;
        // The key report, so the page says at once what the authorisation may read.
        if let Err(e) = self.validate(&id, &actor).await {
            tracing::warn!(connection.id = %id, error = %e, "the new OAuth connection's report failed");
        }
        Ok(id)
    }

    fn token_url(&self, flow: OauthFlow) -> String {
        match (flow, &self.oauth) {
            (OauthFlow::Connect, Some(settings)) => {
                format!(
                    "{}/oauth/token",
                    settings.connect_base.trim_end_matches('/')
                )
            }
            _ => format!(
                "{}/v1/oauth/token",
                self.stripe.api_base.trim_end_matches('/')
            ),
        }
    }

    /// Takes the callback's state (it is spent whatever happens next) and judges it.
    async fn take_state(
        &self,
        staff: &Staff,
        given: Option<&str>,
    ) -> Result<OauthStateRow, Failure> {
        let hash = given.filter(|s| !s.is_empty()).map(state::hash);
        let (user, session) = (staff.user_id.clone(), staff.session.clone());
        let judged = match hash {
            None => Err(state::Refusal::Missing),
            Some(hash) => {
                let taken = self
                    .db
                    .run(move |conn| oauth_states::take(conn, &hash, time::now()))
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "cannot read the OAuth state");
                        Failure::Unreachable
                    })?;
                state::judge(taken, &user, &session, time::now())
            }
        };
        match judged {
            Ok(row) => Ok(row),
            Err(refusal) => {
                tracing::warn!(user = %staff.email, reason = refusal.as_str(), "refused an OAuth callback's state");
                self.audit_quietly(
                    &staff.email,
                    "connection.oauth_state_refused",
                    &staff.user_id,
                    json!({"reason": refusal.as_str()}),
                )
                .await;
                Err(Failure::State)
            }
        }
    }

    async fn audit_quietly(
        &self,
        actor: &str,
        action: &'static str,
        subject: &str,
        details: serde_json::Value,
    ) {
        let (actor, subject) = (actor.to_owned(), subject.to_owned());
        if let Err(e) = self
            .db
            .run(move |conn| audit_log::audit(conn, &actor, action, &subject, details))
            .await
        {
            tracing::warn!(error = %e, action, "cannot write to the audit log");
        }
    }

    fn seal_tokens(&self, id: &str, auth: ConnectionAuth, grant: &Grant) -> OauthTokens {
        // Connect reads with the platform key: its access token is not needed, so not kept.
        let access = (auth == ConnectionAuth::App).then_some(&grant.access_token);
        OauthTokens {
            access_token_enc: access
                .map(|t| self.vault.seal(t, &secret_context(id, "access_token"))),
            access_token_hint: access.map(Secret::masked),
            // Connect's refresh token could mint account tokens billmirror never uses: not kept.
            refresh_token_enc: grant
                .refresh_token
                .as_ref()
                .filter(|_| auth == ConnectionAuth::App)
                .map(|t| self.vault.seal(t, &secret_context(id, "refresh_token"))),
            access_expires_at: (auth == ConnectionAuth::App)
                .then(|| time::now() + Duration::seconds(grant.expires_in)),
        }
    }

    async fn save_grant(
        &self,
        flow: OauthFlow,
        mode: Mode,
        grant: Grant,
        actor: &str,
    ) -> Result<String, Failure> {
        let auth = match flow {
            OauthFlow::Connect => ConnectionAuth::Connect,
            OauthFlow::App => ConnectionAuth::App,
        };
        let account = grant.stripe_user_id.clone();
        let new_id = ids::new_id("conn");
        let now = time::now();
        let fresh = self.seal_tokens(&new_id, auth, &grant);
        let row = ConnectionRow {
            id: new_id.clone(),
            name: format!("{account} ({})", mode.as_str()),
            mode: mode.as_str().to_owned(),
            origin: ConnectionOrigin::Api,
            status: status::ACTIVE,
            stripe_account_id: Some(account.clone()),
            publishable_key: grant.publishable_key.clone(),
            secret_key_enc: fresh.access_token_enc.clone(),
            secret_key_hint: fresh.access_token_hint.clone(),
            can_push: false,
            last_report: None,
            last_report_at: None,
            created_at: now,
            updated_at: now,
            disconnected_at: None,
            key_status: key_status::UNVERIFIED,
            secret_key_fingerprint: None,
            auth,
            refresh_token_enc: fresh.refresh_token_enc.clone(),
            access_expires_at: fresh.access_expires_at,
            token_version: 1,
            refresh_claimed_until: None,
            revoked_at: None,
        };
        let details = json!({
            "flow": flow.as_str(), "mode": mode.as_str(), "stripe_user_id": account,
            "scope": grant.scope,
        });
        let actor = actor.to_owned();
        let this = self.clone();
        enum Saved {
            New(String),
            Again(String),
            Taken,
        }
        let saved = self
            .db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    if let Some(twin) = store::active_oauth_for_account(conn, &account, &row.mode)?
                    {
                        // Sealed again for the row they go into: a sealed value opens only there.
                        let tokens = this.seal_tokens(&twin.id, twin.auth, &grant);
                        store::reauthorize(conn, &twin.id, &tokens, now)?;
                        audit_log::audit(
                            conn,
                            &actor,
                            "connection.oauth_reauthorize",
                            &twin.id,
                            details,
                        )?;
                        return Ok(Saved::Again(twin.id));
                    }
                    let pasted = store::active(conn)?.into_iter().any(|c| {
                        c.stripe_account_id.as_deref() == Some(account.as_str())
                            && c.mode == row.mode
                    });
                    if pasted {
                        return Ok(Saved::Taken);
                    }
                    store::insert(conn, &row)?;
                    audit_log::audit(conn, &actor, "connection.oauth_connect", &row.id, details)?;
                    Ok::<_, StorageError>(Saved::New(row.id.clone()))
                })
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot save the OAuth connection");
                Failure::Unreachable
            })?;
        match saved {
            Saved::New(id) => {
                tracing::info!(connection.id = %id, flow = flow.as_str(), "connected with Stripe");
                Ok(id)
            }
            Saved::Again(id) => {
                self.forget_client(&id);
                tracing::info!(connection.id = %id, flow = flow.as_str(), "re-authorised with Stripe");
                Ok(id)
            }
            Saved::Taken => Err(Failure::AlreadyConnected),
        }
    }

    fn forget_client(&self, id: &str) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(id);
        }
    }

    /// The client of an OAuth connection; an App token about to expire is refreshed first.
    pub(super) async fn oauth_client(
        &self,
        row: &ConnectionRow,
    ) -> Result<Arc<StripeClient>, ConnectionError> {
        if row.status == status::REVOKED {
            return Err(ConnectionError::Revoked);
        }
        if row.status != status::ACTIVE {
            return Err(ConnectionError::Conflict(
                "This connection is disconnected.".into(),
            ));
        }
        let offer = self.oauth_mode(&row.mode).ok_or_else(|| {
            ConnectionError::Invalid(format!(
                "this connection was made with \"Connect with Stripe\" in {} mode, which is no \
                 longer configured (STRIPE_OAUTH_FLOW, STRIPE_PLATFORM_SECRET_KEY)",
                row.mode
            ))
        })?;
        let mode = Mode::parse(&row.mode);
        let row = match row.auth {
            ConnectionAuth::App if expires_within(row, REFRESH_MARGIN) => {
                self.refresh_tokens(&row.id, REFRESH_MARGIN).await?
            }
            _ => row.clone(),
        };
        if let Some(client) = self.cached_client(&row.id, row.token_version) {
            return Ok(client);
        }
        let client = match row.auth {
            ConnectionAuth::Connect => {
                let account = row.stripe_account_id.as_deref().ok_or_else(|| {
                    ConnectionError::Invalid("this connection names no Stripe account".into())
                })?;
                self.new_client(offer.key.clone(), mode)
                    .map_err(ConnectionError::Stripe)?
                    .for_account(account)
            }
            _ => {
                let sealed = row
                    .secret_key_enc
                    .as_deref()
                    .ok_or(ConnectionError::Revoked)?;
                let token = self
                    .vault
                    .open(sealed, &secret_context(&row.id, "access_token"))?;
                self.new_client(token, mode)
                    .map_err(ConnectionError::Stripe)?
            }
        };
        let client = Arc::new(client.on_refused(self.refused_hook(&row)));
        self.cache_client(&row.id, row.token_version, client.clone());
        Ok(client)
    }

    /// What a client does when Stripe refuses its credentials: the connection is marked revoked,
    /// unless (App) a newer token exists or this one had simply expired. A Connect connection
    /// reads with the platform's key, so a 401 says that key is wrong or rolled, not that this
    /// account left: only 403 `account_invalid` (no grant for the account) revokes it; a 401
    /// fails the read and shows in the key report, and every account stays connected.
    fn refused_hook(&self, row: &ConnectionRow) -> RefusedHook {
        let db = self.db.clone();
        let clients = Arc::downgrade(&self.clients);
        let (id, version) = (row.id.clone(), row.token_version);
        Arc::new(move |error: &StripeError| {
            let (db, clients, id) = (db.clone(), clients.clone(), id.clone());
            let why = format!("Stripe answered {}", error.status().unwrap_or_default());
            let account_left = error.code() == Some("account_invalid");
            tokio::spawn(async move {
                let lookup = id.clone();
                let Ok(Some(row)) = db.run(move |conn| store::find(conn, &lookup)).await else {
                    return;
                };
                let still_valid = match row.auth {
                    ConnectionAuth::Connect => account_left,
                    _ => row.token_version == version && !expires_within(&row, Duration::zero()),
                };
                if still_valid {
                    revoke(&db, &clients, &id, "billmirror", &why).await;
                }
            });
        })
    }

    /// The report of an OAuth connection.
    pub(super) async fn oauth_report(
        &self,
        row: &ConnectionRow,
        client: &StripeClient,
    ) -> report::KeyReport {
        let mode = Mode::parse(&row.mode);
        let how = match row.auth {
            ConnectionAuth::App => "the Stripe App",
            _ => "Stripe Connect",
        };
        let url = mode.map(|m| self.connect_webhook_url(m));
        let webhooks = self
            .oauth_mode(&row.mode)
            .filter(|m| !m.webhook_secrets.is_empty())
            .and(url.as_deref());
        report::run_oauth(client, mode, how, webhooks).await
    }

    /// Refreshes an App connection's tokens when they expire within `ahead`, one instance at a
    /// time: the instance that claims the refresh spends the rolling refresh token and stores
    /// the new pair in one statement; any other waits and re-reads what the winner stored.
    /// Returns the row with current tokens.
    pub async fn refresh_tokens(
        &self,
        id: &str,
        ahead: Duration,
    ) -> Result<ConnectionRow, ConnectionError> {
        let deadline = std::time::Instant::now() + WAIT_FOR_WINNER;
        loop {
            let row = self.row(id).await?;
            if row.status == status::REVOKED {
                return Err(ConnectionError::Revoked);
            }
            if row.auth != ConnectionAuth::App || !expires_within(&row, ahead) {
                return Ok(row);
            }
            let (cid, version, now) = (row.id.clone(), row.token_version, time::now());
            let claimed = self
                .db
                .run(move |conn| store::claim_refresh(conn, &cid, version, now, now + CLAIM))
                .await?;
            if !claimed {
                if std::time::Instant::now() > deadline {
                    return Err(ConnectionError::Stripe(StripeError::Unreachable(
                        "another instance is refreshing this connection's token".into(),
                    )));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
            return self.refresh_claimed(row).await;
        }
    }

    async fn refresh_claimed(&self, row: ConnectionRow) -> Result<ConnectionRow, ConnectionError> {
        let release = |db: Db, id: String| async move {
            let _ = db.run(move |conn| store::release_refresh(conn, &id)).await;
        };
        let (Some(offer), Some(sealed)) =
            (self.oauth_mode(&row.mode), row.refresh_token_enc.as_deref())
        else {
            release(self.db.clone(), row.id.clone()).await;
            return Err(ConnectionError::Invalid(
                "this connection has no refresh token, or its mode is no longer configured".into(),
            ));
        };
        let refresh_token = self
            .vault
            .open(sealed, &secret_context(&row.id, "refresh_token"))?;
        let answer = exchange::tokens(
            &self.http,
            &self.token_url(OauthFlow::App),
            &offer.key,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose()),
            ],
        )
        .await;
        let grant = match answer {
            Ok(grant) => grant,
            Err(ExchangeError::Refused(Refused::InvalidGrant)) => {
                revoke(
                    &self.db,
                    &Arc::downgrade(&self.clients),
                    &row.id,
                    "billmirror",
                    "Stripe refused the refresh token",
                )
                .await;
                return Err(ConnectionError::Revoked);
            }
            Err(ExchangeError::Refused(_)) => {
                release(self.db.clone(), row.id.clone()).await;
                return Err(ConnectionError::Invalid(
                    "Stripe refused the app's key while refreshing a token: check STRIPE_PLATFORM_SECRET_KEY".into(),
                ));
            }
            Err(ExchangeError::Unreachable(why)) => {
                release(self.db.clone(), row.id.clone()).await;
                return Err(ConnectionError::Stripe(StripeError::Unreachable(why)));
            }
        };
        let mut tokens = self.seal_tokens(&row.id, ConnectionAuth::App, &grant);
        if tokens.refresh_token_enc.is_none() {
            // Not rolled this time: the old refresh token stays good.
            tokens.refresh_token_enc = row.refresh_token_enc.clone();
        }
        let (id, version) = (row.id.clone(), row.token_version);
        let stored = self
            .db
            .run(move |conn| store::store_refreshed(conn, &id, version, &tokens, time::now()))
            .await?;
        if !stored {
            tracing::warn!(connection.id = %row.id, "the tokens changed while refreshing them");
        }
        tracing::debug!(connection.id = %row.id, "access token refreshed");
        self.row(&row.id).await
    }

    /// Refreshes every App token that expires soon: run regularly, so requests rarely wait.
    pub async fn refresh_expiring(&self) {
        let rows = match self.db.run(store::active_with_keys).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list connections to refresh");
                return;
            }
        };
        for row in rows
            .iter()
            .filter(|r| r.auth == ConnectionAuth::App && expires_within(r, REFRESH_AHEAD))
        {
            if let Err(e) = self.refresh_tokens(&row.id, REFRESH_AHEAD).await {
                tracing::warn!(connection.id = %row.id, error = %e, "cannot refresh the access token");
            }
        }
    }

    /// The active OAuth connection of `account` in `mode`: where a Connect event goes.
    pub async fn oauth_connection_of(
        &self,
        account: &str,
        mode: Mode,
    ) -> Result<Option<ConnectionRow>, ConnectionError> {
        let account = account.to_owned();
        Ok(self
            .db
            .run(move |conn| store::active_oauth_for_account(conn, &account, mode.as_str()))
            .await?)
    }

    /// Marks a connection revoked because Stripe said so; returns whether it was active.
    pub async fn revoke(&self, id: &str, why: &str) -> bool {
        revoke(&self.db, &Arc::downgrade(&self.clients), id, "stripe", why).await
    }

    /// Disconnecting a Connect connection lets go of the account at Stripe too.
    pub(super) async fn deauthorize(&self, row: &ConnectionRow) {
        let (Some(settings), Some(offer), Some(account)) = (
            &self.oauth,
            self.oauth_mode(&row.mode),
            &row.stripe_account_id,
        ) else {
            return;
        };
        let client_id = settings.client_id.as_deref().unwrap_or_default();
        match exchange::deauthorize(
            &self.http,
            &settings.connect_base,
            &offer.key,
            client_id,
            account,
        )
        .await
        {
            Ok(()) => tracing::info!(connection.id = %row.id, "deauthorised at Stripe"),
            Err(e) => tracing::warn!(
                connection.id = %row.id,
                error = ?e,
                "the connection is disconnected here, but Stripe could not be told: remove \
                 billmirror from the account's authorised applications in Stripe"
            ),
        }
    }
}

/// Whether an App connection's access token expires within `ahead` (or has no known expiry).
fn expires_within(row: &ConnectionRow, ahead: Duration) -> bool {
    row.access_expires_at
        .is_none_or(|at: NaiveDateTime| at <= time::now() + ahead)
}

type Clients = Weak<Mutex<super::ClientCache>>;

/// Marks the connection revoked (its tokens dropped), audits it and says so loudly.
async fn revoke(db: &Db, clients: &Clients, id: &str, actor: &str, why: &str) -> bool {
    let (cid, actor, details) = (id.to_owned(), actor.to_owned(), json!({"reason": why}));
    let revoked = db
        .run(move |conn| {
            conn.write_transaction(|conn| {
                let revoked = store::mark_revoked(conn, &cid, time::now())?;
                if revoked {
                    audit_log::audit(conn, &actor, "connection.revoked", &cid, details)?;
                }
                Ok::<_, StorageError>(revoked)
            })
        })
        .await;
    if let Some(clients) = clients.upgrade() {
        if let Ok(mut clients) = clients.lock() {
            clients.remove(id);
        }
    }
    match revoked {
        Ok(true) => {
            tracing::error!(connection.id = %id, reason = why, "Stripe revoked this connection's authorisation: it no longer syncs; connect the account with Stripe again");
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::error!(connection.id = %id, error = %e, "cannot mark the connection revoked");
            false
        }
    }
}
