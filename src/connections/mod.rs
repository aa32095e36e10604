//! Stripe connections: saving one once its keys pass the offline checks, keeping its secrets
//! sealed, its key report current, its webhook endpoint registered and its signing secrets
//! rotatable, and disconnecting it without losing the ledger. Every change is audited with the
//! acting token's name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::json;

use crate::config::EnvConnection;
use crate::config::{OauthSettings, StripeSettings};
use crate::domain::secret::mask;
use crate::domain::states::{
    ConnectionAuth, ConnectionOrigin, ConnectionStatus, KeyVerdict, SecretStatus,
};
use crate::domain::{ids, time, Secret};
use crate::storage::connections::{
    self as store, status, Affected, ConnectionRow, EnvConnectionKeys, EnvKeyChange, SealedKey,
    WebhookHealth, WebhookSecretRow,
};
use crate::storage::{tokens, Db, StorageError};
use crate::stripe::report::{self, ExpectedWebhook, KeyInput, KeyReport};
use crate::stripe::{ClientSettings, Mode, StripeClient, StripeError};
use crate::vault::{Vault, VaultError};
use crate::webhook::{Endpoint, Endpoints, ENV_CONNECTION_ID};

mod activity;
mod drafts;
pub mod oauth;
mod webhooks;

pub use activity::HourActivity;
pub use drafts::{merge as merge_draft, Draft, DRAFT_LIFETIME};

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("no connection has that id")]
    NotFound,
    #[error("the keys are not usable")]
    Unusable(Box<KeyReport>),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// The webhook URL is one Stripe cannot reach (`PUBLIC_URL` unset or loopback).
    #[error("{0}")]
    UnreachableUrl(String),
    #[error("Stripe refused: {0}")]
    Stripe(StripeError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Stripe said the OAuth authorisation is gone: the connection is now `revoked`.
    #[error("Stripe revoked this connection's authorisation; connect it again with Stripe")]
    Revoked,
}

/// A connection as the API shows it: keys masked, secrets never.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub name: String,
    pub mode: String,
    pub origin: ConnectionOrigin,
    /// `key` (pasted keys), or `connect` / `app` for a read-only "Connect with Stripe".
    pub auth: ConnectionAuth,
    pub status: ConnectionStatus,
    pub stripe_account_id: Option<String>,
    pub publishable_key: Option<String>,
    pub secret_key: Option<String>,
    pub can_push: bool,
    /// What Stripe last said about the secret key: `unverified` (never checked, e.g. Stripe was
    /// unreachable), `verified` (`can_push` then says whether it may write) or `rejected`.
    pub key_status: KeyVerdict,
    pub webhook_url: String,
    pub webhook_secrets: Vec<SecretView>,
    pub last_report: Option<serde_json::Value>,
    #[serde(with = "time::serde_rfc3339::option")]
    pub last_report_at: Option<NaiveDateTime>,
    pub webhook_health: WebhookHealth,
    #[serde(with = "time::serde_rfc3339")]
    pub created_at: NaiveDateTime,
    #[serde(with = "time::serde_rfc3339::option")]
    pub disconnected_at: Option<NaiveDateTime>,
    /// When Stripe said the OAuth authorisation was revoked (`status` is then `revoked`).
    #[serde(with = "time::serde_rfc3339::option")]
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecretView {
    pub id: String,
    pub secret: String,
    pub status: SecretStatus,
    #[serde(with = "time::serde_rfc3339")]
    pub created_at: NaiveDateTime,
    #[serde(with = "time::serde_rfc3339::option")]
    pub retired_at: Option<NaiveDateTime>,
    /// When an event signed with this secret last arrived: shows which secret Stripe uses now.
    #[serde(with = "time::serde_rfc3339::option")]
    pub last_signed_event_at: Option<NaiveDateTime>,
}

/// Why a new connection is refused as a duplicate, naming the connection it duplicates.
enum Twin {
    SameKey(String),
    SameAccount(String),
}

pub struct NewConnection {
    pub name: Option<String>,
    pub keys: KeyInput,
}

/// The connections service, shared by the HTTP handlers, the CLI and the background recheck.
#[derive(Clone)]
pub struct Connections {
    db: Db,
    vault: Vault,
    endpoints: Endpoints,
    stripe: StripeSettings,
    public_url: String,
    /// "Connect with Stripe", when configured.
    oauth: Option<OauthSettings>,
    /// Talks to Stripe's OAuth endpoints (not the API: no retries, one answer each).
    http: reqwest::Client,
    /// One client per connection, so the rate limit covers every caller of that connection,
    /// with the token version it was made for (an OAuth refresh makes a new one).
    clients: Arc<Mutex<ClientCache>>,
}

/// Each connection's client, with the token version it was made for.
type ClientCache = HashMap<String, (i32, Arc<StripeClient>)>;

/// A client with these timeouts and retries and the mode's rate limit.
pub fn new_client(
    settings: &StripeSettings,
    key: Secret,
    mode: Option<Mode>,
) -> Result<StripeClient, StripeError> {
    let live = mode == Some(Mode::Live);
    let rate = match settings.rate_limit {
        Some(rate) => f64::from(rate),
        None => ClientSettings::default_rate(live),
    };
    StripeClient::new(
        key,
        ClientSettings {
            api_base: settings.api_base.clone(),
            timeout: settings.timeout,
            max_attempts: settings.max_attempts,
            backoff: settings.backoff,
            requests_per_second: rate,
        },
    )
}

/// What a disconnect means, with what it leaves running in Stripe: the API's answer and the
/// web page say the same.
pub fn disconnect_message(affected: &Affected) -> String {
    format!(
        "Disconnected: billmirror no longer receives this account's events or pushes invoices to \
         it; the ledger keeps its rows. Still running in Stripe: {} active subscription(s) and {} \
         open invoice(s); {} invoice(s) created here were not pushed and will not be.",
        affected.active_subscriptions, affected.open_invoices, affected.unpushed_invoices
    )
}

/// Whether the report for `keys` calls Stripe: only a secret key that passes its offline checks
/// is sent (so a command can say it is waiting for Stripe, and only then).
pub fn will_ask_stripe(keys: &KeyInput) -> bool {
    keys.secret_key.is_some() && report::offline(keys).1.is_some()
}

/// The key report for keys that are not saved (the API's check and `billmirror check-keys`):
/// any endpoint under `{public_url}/webhooks/stripe` counts as billmirror's.
pub async fn check_keys(settings: &StripeSettings, public_url: &str, keys: &KeyInput) -> KeyReport {
    let base = format!("{public_url}/webhooks/stripe");
    run_report(settings, keys, ExpectedWebhook::Under(&base)).await
}

async fn run_report(
    settings: &StripeSettings,
    keys: &KeyInput,
    webhook: ExpectedWebhook<'_>,
) -> KeyReport {
    let (offline, kind) = report::offline(keys);
    let client = match (kind, &keys.secret_key) {
        (Some(_), Some(key)) => new_client(settings, key.clone(), offline.mode).ok(),
        _ => None,
    };
    report::run(keys, client.as_ref(), webhook).await
}

fn secret_context(connection_id: &str, field: &str) -> String {
    format!("{connection_id}/{field}")
}

impl Connections {
    pub fn new(
        db: Db,
        vault: Vault,
        endpoints: Endpoints,
        stripe: StripeSettings,
        public_url: String,
        oauth: Option<OauthSettings>,
    ) -> Connections {
        let http = reqwest::Client::builder()
            .timeout(stripe.timeout)
            .user_agent(concat!("billmirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Connections {
            db,
            vault,
            endpoints,
            stripe,
            public_url,
            oauth,
            http,
            clients: Arc::default(),
        }
    }

    /// The vault these connections' secrets are sealed with, shared with chat channels' secrets.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Where Stripe posts this connection's events; the environment's connection keeps the
    /// URL without an id, as the README tells operators to register it.
    pub fn webhook_url(&self, connection_id: &str) -> String {
        if connection_id == ENV_CONNECTION_ID {
            return format!("{}/webhooks/stripe", self.public_url);
        }
        format!("{}/webhooks/stripe/{connection_id}", self.public_url)
    }

    pub fn new_client(&self, key: Secret, mode: Option<Mode>) -> Result<StripeClient, StripeError> {
        new_client(&self.stripe, key, mode)
    }

    /// The shared client of a saved connection: its key's, or, for an OAuth connection, one
    /// with the platform key and `Stripe-Account` (Connect) or a current access token (App).
    pub async fn client_for(
        &self,
        row: &ConnectionRow,
    ) -> Result<Arc<StripeClient>, ConnectionError> {
        match row.auth {
            ConnectionAuth::Key => self.key_client(row),
            ConnectionAuth::Connect | ConnectionAuth::App => self.oauth_client(row).await,
        }
    }

    /// The cached client of connection `id`, when it was made for `version` of its tokens or a
    /// later one.
    fn cached_client(&self, id: &str, version: i32) -> Option<Arc<StripeClient>> {
        let clients = self.clients.lock().ok()?;
        let (made_for, client) = clients.get(id)?;
        (*made_for >= version).then(|| client.clone())
    }

    fn cache_client(&self, id: &str, version: i32, client: Arc<StripeClient>) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(id.to_owned(), (version, client));
        }
    }

    fn key_client(&self, row: &ConnectionRow) -> Result<Arc<StripeClient>, ConnectionError> {
        if let Some(client) = self.cached_client(&row.id, row.token_version) {
            return Ok(client);
        }
        let sealed = row
            .secret_key_enc
            .as_deref()
            .ok_or_else(|| ConnectionError::Invalid("this connection has no secret key".into()))?;
        let key = self
            .vault
            .open(sealed, &secret_context(&row.id, "secret_key"))?;
        let client = Arc::new(
            self.new_client(key, Mode::parse(&row.mode))
                .map_err(ConnectionError::Stripe)?,
        );
        self.cache_client(&row.id, row.token_version, client.clone());
        Ok(client)
    }

    /// The key report for keys that are not saved.
    pub async fn check(&self, keys: &KeyInput) -> KeyReport {
        check_keys(&self.stripe, &self.public_url, keys).await
    }

    async fn report(&self, keys: &KeyInput, webhook: ExpectedWebhook<'_>) -> KeyReport {
        run_report(&self.stripe, keys, webhook).await
    }

    /// Saves a connection whose keys pass the offline checks and that Stripe did not refuse.
    pub async fn create(
        &self,
        new: NewConnection,
        actor: &str,
    ) -> Result<ConnectionView, ConnectionError> {
        let name = match new.name.as_deref().map(str::trim) {
            Some(name) if name.is_empty() || name.chars().count() > 100 => {
                return Err(ConnectionError::Invalid(
                    "name: a connection name has 1 to 100 characters".into(),
                ))
            }
            other => other.map(str::to_owned),
        };
        let id = ids::new_id("conn");
        let webhook_url = self.webhook_url(&id);
        let report = self
            .report(&new.keys, ExpectedWebhook::Exact(&webhook_url))
            .await;
        if !report.offline_ok() || report.key_rejected() {
            return Err(ConnectionError::Unusable(Box::new(report)));
        }
        let (Some(secret_key), Some(mode)) = (new.keys.secret_key.clone(), report.mode) else {
            return Err(ConnectionError::Unusable(Box::new(report)));
        };
        let now = time::now();
        let account = report.stripe_account_id.clone();
        let fingerprint = self.vault.fingerprint(&secret_key);
        let row = ConnectionRow {
            id: id.clone(),
            name: name.unwrap_or_else(|| {
                format!(
                    "{} ({})",
                    account.as_deref().unwrap_or("Stripe account"),
                    mode.as_str()
                )
            }),
            mode: mode.as_str().to_owned(),
            origin: ConnectionOrigin::Api,
            status: status::ACTIVE,
            stripe_account_id: account.clone(),
            publishable_key: new.keys.publishable_key.clone(),
            secret_key_enc: Some(
                self.vault
                    .seal(&secret_key, &secret_context(&id, "secret_key")),
            ),
            secret_key_hint: Some(secret_key.masked()),
            can_push: report.can_push,
            last_report: Some(serde_json::to_string(&report).unwrap_or_default()),
            last_report_at: Some(now),
            created_at: now,
            updated_at: now,
            disconnected_at: None,
            key_status: report.verdict(),
            secret_key_fingerprint: Some(fingerprint.clone()),
            auth: ConnectionAuth::Key,
            refresh_token_enc: None,
            access_expires_at: None,
            token_version: 0,
            refresh_claimed_until: None,
            revoked_at: None,
        };
        let secrets: Vec<WebhookSecretRow> = new
            .keys
            .webhook_secrets
            .iter()
            .map(|s| self.secret_row(&id, s, now))
            .collect();
        let audit = json!({
            "name": row.name,
            "mode": row.mode,
            "stripe_account_id": account,
            "secret_key": row.secret_key_hint,
            "webhook_secrets": secrets.iter().map(|s| &s.secret_hint).collect::<Vec<_>>(),
        });
        let actor = actor.to_owned();
        let saved = row.clone();
        let outcome = self
            .db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    // By key first: it is known even when Stripe could not say whose key it is.
                    if let Some(twin) = store::active_with_fingerprint(conn, &fingerprint)? {
                        return Ok(Err(Twin::SameKey(twin.id)));
                    }
                    if let Some(account) = &saved.stripe_account_id {
                        let twin = store::active(conn)?.into_iter().find(|c| {
                            c.stripe_account_id.as_ref() == Some(account) && c.mode == saved.mode
                        });
                        if let Some(twin) = twin {
                            return Ok(Err(Twin::SameAccount(twin.id)));
                        }
                    }
                    store::insert(conn, &saved)?;
                    for secret in &secrets {
                        store::insert_secret(conn, secret)?;
                    }
                    tokens::audit(conn, &actor, "connection.create", &saved.id, audit)?;
                    Ok::<_, StorageError>(Ok(()))
                })
            })
            .await;
        let twin = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(twin)) => Some(twin),
            // Two requests with one key at the same moment: the unique index refused the second.
            Err(e) if e.is_unique_violation() => {
                let fingerprint = row.secret_key_fingerprint.clone().unwrap_or_default();
                let twin = self
                    .db
                    .run(move |conn| store::active_with_fingerprint(conn, &fingerprint))
                    .await?
                    .map_or_else(|| "another connection".to_owned(), |t| t.id);
                Some(Twin::SameKey(twin))
            }
            Err(e) => return Err(e.into()),
        };
        match twin {
            None => {}
            Some(Twin::SameKey(twin)) => {
                return Err(ConnectionError::Conflict(format!(
                    "This secret key is already connected as {twin}: use that connection, or \
                     disconnect it first (DELETE /api/connections/{twin})."
                )))
            }
            Some(Twin::SameAccount(twin)) => {
                return Err(ConnectionError::Conflict(format!(
                    "The {} account {} is already connected as {twin}.",
                    row.mode,
                    row.stripe_account_id.as_deref().unwrap_or_default()
                )))
            }
        }
        tracing::info!(connection.id = %id, connection.mode = %row.mode, "connection created");
        self.refresh_endpoint(&id).await?;
        self.view(&id).await
    }

    fn secret_row(
        &self,
        connection_id: &str,
        secret: &Secret,
        now: NaiveDateTime,
    ) -> WebhookSecretRow {
        let id = ids::new_id("whs");
        WebhookSecretRow {
            secret_enc: self.vault.seal(secret, &secret_context(connection_id, &id)),
            id,
            connection_id: connection_id.to_owned(),
            secret_hint: secret.masked(),
            status: SecretStatus::Active,
            created_at: now,
            retired_at: None,
            last_matched_at: None,
        }
    }

    async fn row(&self, id: &str) -> Result<ConnectionRow, ConnectionError> {
        let id = id.to_owned();
        self.db
            .run(move |conn| store::find(conn, &id))
            .await?
            .ok_or(ConnectionError::NotFound)
    }

    /// A saved connection that still syncs, from the API or the environment.
    async fn active_row(&self, id: &str) -> Result<ConnectionRow, ConnectionError> {
        let row = self.row(id).await?;
        if row.status == status::REVOKED {
            return Err(ConnectionError::Revoked);
        }
        if row.status != status::ACTIVE {
            return Err(ConnectionError::Conflict(
                "This connection is disconnected.".into(),
            ));
        }
        Ok(row)
    }

    /// An active connection whose keys and secrets the API may change: the environment's are
    /// refused, since the next start would put back what `STRIPE_*` says.
    async fn api_row(&self, id: &str) -> Result<ConnectionRow, ConnectionError> {
        let row = self.row(id).await?;
        if row.origin == store::ENV_ORIGIN {
            return Err(ConnectionError::Conflict(
                "This connection is configured from the environment (STRIPE_*): change those \
                 variables instead."
                    .into(),
            ));
        }
        if row.status != status::ACTIVE {
            return Err(ConnectionError::Conflict(
                "This connection is disconnected.".into(),
            ));
        }
        Ok(row)
    }

    /// An API connection with pasted keys: the only kind with its own webhook endpoint and
    /// secrets (an OAuth connection's events come through the platform's Connect endpoint).
    async fn keyed_row(&self, id: &str) -> Result<ConnectionRow, ConnectionError> {
        let row = self.api_row(id).await?;
        if row.auth != ConnectionAuth::Key {
            return Err(ConnectionError::Conflict(format!(
                "This connection was made with \"Connect with Stripe\": its events come through \
                 the platform's Connect webhook endpoint ({}), configured with \
                 STRIPE_CONNECT_WEBHOOK_SECRET_LIVE or _TEST, not through an endpoint of its own.",
                Mode::parse(&row.mode).map_or_else(String::new, |m| self.connect_webhook_url(m))
            )));
        }
        Ok(row)
    }

    pub async fn view(&self, id: &str) -> Result<ConnectionView, ConnectionError> {
        let row = self.row(id).await?;
        self.view_of(row).await
    }

    async fn view_of(&self, row: ConnectionRow) -> Result<ConnectionView, ConnectionError> {
        let id = row.id.clone();
        let since = time::now() - chrono::Duration::hours(24);
        let (health, secrets) = self
            .db
            .run(move |conn| {
                let health = store::webhook_health(conn, &id, since)?;
                let mut secrets = Vec::new();
                for secret in store::secrets(conn, &id)? {
                    let last = store::last_signed_with(conn, &id, &secret.secret_hint)?;
                    secrets.push(SecretView {
                        id: secret.id,
                        secret: secret.secret_hint,
                        status: secret.status,
                        created_at: secret.created_at,
                        retired_at: secret.retired_at,
                        last_signed_event_at: last,
                    });
                }
                Ok((health, secrets))
            })
            .await?;
        let webhook_url = match (row.auth, Mode::parse(&row.mode)) {
            // Every OAuth connection of a mode shares the platform's Connect endpoint.
            (ConnectionAuth::Connect | ConnectionAuth::App, Some(mode)) => {
                self.connect_webhook_url(mode)
            }
            _ => self.webhook_url(&row.id),
        };
        Ok(ConnectionView {
            webhook_url,
            id: row.id,
            name: row.name,
            mode: row.mode,
            origin: row.origin,
            auth: row.auth,
            status: row.status,
            stripe_account_id: row.stripe_account_id,
            publishable_key: row.publishable_key.as_deref().map(mask),
            secret_key: row.secret_key_hint,
            can_push: row.can_push,
            key_status: row.key_status,
            webhook_secrets: secrets,
            last_report: row
                .last_report
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok()),
            last_report_at: row.last_report_at,
            webhook_health: health,
            created_at: row.created_at,
            disconnected_at: row.disconnected_at,
            revoked_at: row.revoked_at,
        })
    }

    pub async fn list(
        &self,
        after: Option<String>,
        limit: i64,
    ) -> Result<Vec<ConnectionView>, ConnectionError> {
        let rows = self
            .db
            .run(move |conn| store::list(conn, after.as_deref(), limit))
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.view_of(row).await?);
        }
        Ok(views)
    }

    /// Runs the key report again with the stored keys and keeps it.
    pub async fn validate(&self, id: &str, actor: &str) -> Result<KeyReport, ConnectionError> {
        let row = self.active_row(id).await?;
        let client = self.client_for(&row).await?;
        let report = if row.auth == ConnectionAuth::Key {
            let keys = KeyInput {
                publishable_key: row.publishable_key.clone(),
                secret_key: Some(self.secret_key(&row)?),
                webhook_secrets: self.signing_secrets(&row).await?,
            };
            let url = self.webhook_url(&row.id);
            report::run(&keys, Some(&client), ExpectedWebhook::Exact(&url)).await
        } else {
            self.oauth_report(&row, &client).await
        };
        let text = serde_json::to_string(&report).unwrap_or_default();
        let (id, actor) = (row.id.clone(), actor.to_owned());
        let (account, can_push, ok) =
            (report.stripe_account_id.clone(), report.can_push, report.ok);
        let verdict = report.verdict();
        self.db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    store::store_report(
                        conn,
                        &id,
                        &text,
                        time::now(),
                        account.as_deref(),
                        verdict,
                        can_push,
                    )?;
                    tokens::audit(conn, &actor, "connection.validate", &id, json!({"ok": ok}))
                })
            })
            .await?;
        Ok(report)
    }

    fn secret_key(&self, row: &ConnectionRow) -> Result<Secret, ConnectionError> {
        let sealed = row
            .secret_key_enc
            .as_deref()
            .ok_or_else(|| ConnectionError::Invalid("this connection has no secret key".into()))?;
        Ok(self
            .vault
            .open(sealed, &secret_context(&row.id, "secret_key"))?)
    }

    /// The secrets that verify this connection's webhooks: the environment's come from
    /// `STRIPE_WEBHOOK_SECRET` (held by the endpoint set at start), the others from the database.
    async fn signing_secrets(&self, row: &ConnectionRow) -> Result<Vec<Secret>, ConnectionError> {
        if row.origin == store::ENV_ORIGIN {
            return Ok(self
                .endpoints
                .get(&row.id)
                .map(|e| e.secrets.clone())
                .unwrap_or_default());
        }
        self.active_secrets(&row.id).await
    }

    async fn active_secrets(&self, connection_id: &str) -> Result<Vec<Secret>, ConnectionError> {
        let id = connection_id.to_owned();
        let rows = self.db.run(move |conn| store::secrets(conn, &id)).await?;
        rows.iter()
            .filter(|s| s.status == SecretStatus::Active)
            .map(|s| {
                self.vault
                    .open(&s.secret_enc, &secret_context(connection_id, &s.id))
                    .map_err(ConnectionError::from)
            })
            .collect()
    }

    /// Puts the connection's current secrets into the webhook endpoints (or takes it out).
    async fn refresh_endpoint(&self, connection_id: &str) -> Result<(), ConnectionError> {
        let row = self.row(connection_id).await?;
        let secrets = self.active_secrets(connection_id).await?;
        if row.status != status::ACTIVE || secrets.is_empty() {
            self.endpoints.remove(connection_id);
            return Ok(());
        }
        self.endpoints.set(Endpoint {
            connection_id: row.id,
            mode: Mode::parse(&row.mode).map(Mode::as_str),
            secrets,
        });
        Ok(())
    }

    /// Loads every active API connection's secrets: at start, and periodically so that a change
    /// made on another instance reaches this one. Fails when the master key opens nothing. The
    /// environment's secrets come from `STRIPE_WEBHOOK_SECRET`, set once at start.
    pub async fn load_endpoints(&self) -> Result<usize, ConnectionError> {
        let mut rows = self.db.run(store::active).await?;
        rows.retain(|row| row.origin != store::ENV_ORIGIN);
        for row in &rows {
            self.refresh_endpoint(&row.id).await?;
        }
        // A connection disconnected on another instance stops receiving here too.
        let active: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        self.endpoints
            .retain(|id| id == crate::webhook::ENV_CONNECTION_ID || active.contains(&id));
        Ok(rows.len())
    }

    /// Makes the environment's connection a full one: its secret key sealed into its row (so it
    /// can be pushed through and synced like any other), or removed when `STRIPE_SECRET_KEY` is
    /// not set. Safe when several instances start at once. It never talks to Stripe itself, so
    /// the start never waits on Stripe: the key report runs in the background (`app::Workers`).
    pub async fn register_env(&self, env: &EnvConnection) -> Result<(), ConnectionError> {
        let id = ENV_CONNECTION_ID;
        let secret_key = env.secret_key.as_ref().map(|key| SealedKey {
            sealed: self.vault.seal(key, &secret_context(id, "secret_key")),
            hint: key.masked(),
            fingerprint: self.vault.fingerprint(key),
        });
        let keys = EnvConnectionKeys {
            mode: env.mode().unwrap_or("unknown").to_owned(),
            publishable_key: env.publishable_key.clone(),
            secret_key,
        };
        let change = self
            .db
            .run(move |conn| store::register_env(conn, id, &keys, time::now()))
            .await?;
        match &change {
            EnvKeyChange::Taken => {
                tracing::info!(
                    connection.id = id,
                    "the environment's secret key is stored; checking it with Stripe"
                )
            }
            EnvKeyChange::Removed => {
                tracing::info!(
                    connection.id = id,
                    "STRIPE_SECRET_KEY is not set: the environment's connection has no secret key"
                )
            }
            EnvKeyChange::Duplicate(twin) => tracing::error!(
                connection.id = id,
                duplicate_of = %twin,
                "STRIPE_SECRET_KEY is the secret key of connection {twin}: the environment's \
                 connection keeps no secret key (it cannot push or sync) until STRIPE_SECRET_KEY \
                 is another key or {twin} is disconnected"
            ),
            EnvKeyChange::Unchanged => {}
        }
        // Any cached client may hold a key the row no longer has.
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(id);
        }
        Ok(())
    }

    /// Marks the environment's connection disconnected when `STRIPE_*` is no longer set, so a
    /// key sealed by an earlier start is not pushed through or synced any more.
    pub async fn retire_env(&self) -> Result<(), ConnectionError> {
        let retired = self
            .db
            .run(|conn| store::retire_env(conn, ENV_CONNECTION_ID, time::now()))
            .await?;
        if retired {
            tracing::info!(
                connection.id = ENV_CONNECTION_ID,
                "STRIPE_* is not set: the environment's connection is disconnected"
            );
        }
        Ok(())
    }

    /// Gives keys saved before fingerprints existed their fingerprint. A key connected twice
    /// back then keeps none on the later connection, and the log says which.
    pub async fn fill_fingerprints(&self) -> Result<(), ConnectionError> {
        let rows = self.db.run(store::without_fingerprint).await?;
        for row in rows {
            let fingerprint = match self.secret_key(&row) {
                Ok(key) => self.vault.fingerprint(&key),
                Err(e) => {
                    tracing::warn!(connection.id = %row.id, error = %e, "cannot fingerprint this connection's secret key");
                    continue;
                }
            };
            let id = row.id.clone();
            let stored = self
                .db
                .run(move |conn| store::set_fingerprint(conn, &id, &fingerprint))
                .await;
            match stored {
                Ok(()) => {}
                Err(e) if e.is_unique_violation() => tracing::warn!(
                    connection.id = %row.id,
                    "this connection's secret key is also another active connection's: \
                     disconnect one of them"
                ),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Stops syncing and pushing for the connection; its ledger rows stay.
    pub async fn disconnect(&self, id: &str, actor: &str) -> Result<Affected, ConnectionError> {
        let row = self.api_row(id).await?;
        let (cid, actor) = (row.id.clone(), actor.to_owned());
        let affected = self
            .db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    let affected = store::affected(conn, &cid)?;
                    store::mark_disconnected(conn, &cid, time::now())?;
                    tokens::audit(
                        conn,
                        &actor,
                        "connection.disconnect",
                        &cid,
                        serde_json::to_value(&affected).unwrap_or_default(),
                    )?;
                    Ok(affected)
                })
            })
            .await?;
        self.endpoints.remove(&row.id);
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(&row.id);
        }
        if row.auth == ConnectionAuth::Connect {
            self.deauthorize(&row).await;
        }
        tracing::info!(connection.id = %row.id, "connection disconnected");
        Ok(affected)
    }

    /// What a disconnect would leave running in Stripe, for the step that confirms it; refused
    /// as `disconnect` refuses (the environment's connection, or one already disconnected).
    pub async fn impact(&self, id: &str) -> Result<Affected, ConnectionError> {
        let row = self.api_row(id).await?;
        Ok(self
            .db
            .run(move |conn| store::affected(conn, &row.id))
            .await?)
    }

    /// Runs every active connection's key report again; one failing does not stop the others.
    pub async fn recheck_all(&self) {
        let rows = match self.db.run(store::active_with_keys).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list connections to recheck");
                return;
            }
        };
        for row in rows {
            match self.validate(&row.id, "billmirror").await {
                Ok(report) if !report.ok => {
                    let failing: Vec<_> = report
                        .checks
                        .iter()
                        .filter(|c| c.status == crate::stripe::report::Status::Fail)
                        .map(|c| format!("{:?}", c.name))
                        .collect();
                    tracing::warn!(connection.id = %row.id, failing = ?failing, "key report has failures");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(connection.id = %row.id, error = %e, "key recheck failed"),
            }
        }
    }
}
