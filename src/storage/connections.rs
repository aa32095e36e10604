//! Queries on connections and their webhook signing secrets, and the numbers behind a
//! connection's webhook health. Secrets arrive here already sealed by the vault.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{
    connections, invoices, subscriptions, webhook_events, webhook_rejections, webhook_secrets,
};
use super::{DbConnection, StorageError};
use crate::domain::states::{
    ConnectionAuth, ConnectionOrigin, ConnectionStatus, EventStatus, InvoiceStatus, KeyVerdict,
    SecretStatus, SyncState,
};

/// A connection's statuses, by their short names.
pub mod status {
    use crate::domain::states::ConnectionStatus;

    pub const ACTIVE: ConnectionStatus = ConnectionStatus::Active;
    pub const DISCONNECTED: ConnectionStatus = ConnectionStatus::Disconnected;
    pub const REVOKED: ConnectionStatus = ConnectionStatus::Revoked;
}

/// What Stripe last said about a connection's secret key.
pub mod key_status {
    use crate::domain::states::KeyVerdict;

    pub const UNVERIFIED: KeyVerdict = KeyVerdict::Unverified;
    pub const VERIFIED: KeyVerdict = KeyVerdict::Verified;
    pub const REJECTED: KeyVerdict = KeyVerdict::Rejected;
}

/// The origin of the environment's connection (`webhook::ENV_CONNECTION_ID`).
pub const ENV_ORIGIN: ConnectionOrigin = ConnectionOrigin::Env;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = connections)]
pub struct ConnectionRow {
    pub id: String,
    pub name: String,
    pub mode: String,
    pub origin: ConnectionOrigin,
    pub status: ConnectionStatus,
    pub stripe_account_id: Option<String>,
    pub publishable_key: Option<String>,
    pub secret_key_enc: Option<String>,
    pub secret_key_hint: Option<String>,
    pub can_push: bool,
    /// The last key report, as JSON.
    pub last_report: Option<String>,
    pub last_report_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub disconnected_at: Option<NaiveDateTime>,
    pub key_status: KeyVerdict,
    /// The vault's keyed fingerprint of the secret key; unique among active connections.
    pub secret_key_fingerprint: Option<String>,
    pub auth: ConnectionAuth,
    /// OAuth connections: the sealed refresh token.
    pub refresh_token_enc: Option<String>,
    /// App OAuth: when the access token (sealed in `secret_key_enc`) stops working.
    pub access_expires_at: Option<NaiveDateTime>,
    /// Bumped with every change of the stored tokens (see [`store_refreshed`]).
    pub token_version: i32,
    pub refresh_claimed_until: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_secrets)]
pub struct WebhookSecretRow {
    pub id: String,
    pub connection_id: String,
    pub secret_enc: String,
    pub secret_hint: String,
    pub status: SecretStatus,
    pub created_at: NaiveDateTime,
    pub retired_at: Option<NaiveDateTime>,
    pub last_matched_at: Option<NaiveDateTime>,
}

pub fn insert(conn: &mut DbConnection, row: &ConnectionRow) -> Result<(), StorageError> {
    diesel::insert_into(connections::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<ConnectionRow>, StorageError> {
    Ok(connections::table
        .find(id)
        .select(ConnectionRow::as_select())
        .first(conn)
        .optional()?)
}

/// Connections in the order they were made; `after` is the previous page's last id.
pub fn list(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ConnectionRow>, StorageError> {
    let mut query = connections::table
        .select(ConnectionRow::as_select())
        .order(connections::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(connections::id.gt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

/// Every connection that still syncs, made through the API or configured from the environment.
pub fn active(conn: &mut DbConnection) -> Result<Vec<ConnectionRow>, StorageError> {
    Ok(connections::table
        .filter(connections::status.eq(status::ACTIVE))
        .select(ConnectionRow::as_select())
        .order(connections::id.asc())
        .load(conn)?)
}

/// The active connections that can read from Stripe: those holding a secret key and those
/// connected with OAuth: the ones that can be synced and re-checked. (The environment's
/// connection has no key when only its webhook secret is set.)
pub fn active_with_keys(conn: &mut DbConnection) -> Result<Vec<ConnectionRow>, StorageError> {
    Ok(connections::table
        .filter(connections::status.eq(status::ACTIVE))
        .filter(
            connections::secret_key_enc
                .is_not_null()
                .or(connections::auth.ne(ConnectionAuth::Key)),
        )
        .select(ConnectionRow::as_select())
        .order(connections::id.asc())
        .load(conn)?)
}

/// The active connection holding the secret key with this fingerprint, if any.
pub fn active_with_fingerprint(
    conn: &mut DbConnection,
    fingerprint: &str,
) -> Result<Option<ConnectionRow>, StorageError> {
    Ok(connections::table
        .filter(connections::status.eq(status::ACTIVE))
        .filter(connections::secret_key_fingerprint.eq(fingerprint))
        .select(ConnectionRow::as_select())
        .first(conn)
        .optional()?)
}

/// Rows whose key predates fingerprints (made before they existed): filled in at start.
pub fn without_fingerprint(conn: &mut DbConnection) -> Result<Vec<ConnectionRow>, StorageError> {
    Ok(connections::table
        .filter(connections::secret_key_enc.is_not_null())
        .filter(connections::secret_key_fingerprint.is_null())
        .select(ConnectionRow::as_select())
        .order(connections::id.asc())
        .load(conn)?)
}

pub fn set_fingerprint(
    conn: &mut DbConnection,
    id: &str,
    fingerprint: &str,
) -> Result<(), StorageError> {
    diesel::update(connections::table.find(id))
        .set(connections::secret_key_fingerprint.eq(fingerprint))
        .execute(conn)?;
    Ok(())
}

/// Stores a key report. `verdict` is what it learned about the key (see [`key_status`]); when it
/// learned nothing (Stripe unreachable) the last verdict and `can_push` stand: an outage during a
/// re-check says nothing new about the key, and must not stop invoices from being taken.
pub fn store_report(
    conn: &mut DbConnection,
    id: &str,
    report: &str,
    at: NaiveDateTime,
    stripe_account_id: Option<&str>,
    verdict: KeyVerdict,
    can_push: bool,
) -> Result<(), StorageError> {
    let target = connections::table.find(id);
    diesel::update(target)
        .set((
            connections::last_report.eq(report),
            connections::last_report_at.eq(at),
            connections::updated_at.eq(at),
        ))
        .execute(conn)?;
    if verdict != key_status::UNVERIFIED {
        diesel::update(target)
            .set((
                connections::key_status.eq(verdict),
                connections::can_push.eq(can_push),
            ))
            .execute(conn)?;
    }
    if let Some(account) = stripe_account_id {
        diesel::update(target)
            .set(connections::stripe_account_id.eq(account))
            .execute(conn)?;
    }
    Ok(())
}

/// What the environment (`STRIPE_*`) says about its connection at start.
pub struct EnvConnectionKeys {
    pub mode: String,
    pub publishable_key: Option<String>,
    /// The sealed secret key, its masked hint and its fingerprint; `None` without a secret key.
    pub secret_key: Option<SealedKey>,
}

pub struct SealedKey {
    pub sealed: String,
    pub hint: String,
    pub fingerprint: String,
}

/// What [`register_env`] did with the environment's secret key.
#[derive(Debug, PartialEq, Eq)]
pub enum EnvKeyChange {
    /// The row already held this key (or still holds none).
    Unchanged,
    /// The row took a key it did not hold (first start, or STRIPE_SECRET_KEY changed).
    Taken,
    /// The row's key was removed (STRIPE_SECRET_KEY unset, or a duplicate).
    Removed,
    /// Another active connection holds this key: the row was left without one.
    Duplicate(String),
}

/// Creates or refreshes the environment's connection row. Every statement is idempotent and
/// safe when two instances start together on one database: the row is inserted with
/// `ON CONFLICT DO NOTHING`, and the key is replaced only where the stored fingerprint differs,
/// together with everything learned about the old key (the new one is checked again).
pub fn register_env(
    conn: &mut DbConnection,
    id: &str,
    keys: &EnvConnectionKeys,
    now: NaiveDateTime,
) -> Result<EnvKeyChange, StorageError> {
    conn.write_transaction(|conn| {
        let insert = diesel::insert_into(connections::table).values((
            connections::id.eq(id),
            connections::name.eq("environment"),
            connections::mode.eq(&keys.mode),
            connections::origin.eq(ENV_ORIGIN),
            connections::status.eq(status::ACTIVE),
            connections::can_push.eq(false),
            connections::key_status.eq(key_status::UNVERIFIED),
            connections::created_at.eq(now),
            connections::updated_at.eq(now),
        ));
        match conn {
            DbConnection::Postgres(c) => insert.on_conflict_do_nothing().execute(c)?,
            DbConnection::Sqlite(c) => insert.on_conflict_do_nothing().execute(c)?,
        };
        diesel::update(connections::table.find(id))
            .set((
                connections::mode.eq(&keys.mode),
                connections::publishable_key.eq(&keys.publishable_key),
                connections::status.eq(status::ACTIVE),
                connections::disconnected_at.eq(None::<NaiveDateTime>),
                connections::updated_at.eq(now),
            ))
            .execute(conn)?;
        // What was learned about a key no longer held.
        let forget = || {
            (
                connections::can_push.eq(false),
                connections::key_status.eq(key_status::UNVERIFIED),
                connections::stripe_account_id.eq(None::<String>),
                connections::last_report.eq(None::<String>),
                connections::last_report_at.eq(None::<NaiveDateTime>),
            )
        };
        let remove_key = |conn: &mut DbConnection| -> Result<bool, StorageError> {
            let removed = diesel::update(
                connections::table
                    .find(id)
                    .filter(connections::secret_key_enc.is_not_null()),
            )
            .set((
                connections::secret_key_enc.eq(None::<String>),
                connections::secret_key_hint.eq(None::<String>),
                connections::secret_key_fingerprint.eq(None::<String>),
                forget(),
            ))
            .execute(conn)?;
            Ok(removed > 0)
        };
        let Some(key) = &keys.secret_key else {
            return Ok(if remove_key(conn)? {
                EnvKeyChange::Removed
            } else {
                EnvKeyChange::Unchanged
            });
        };
        if let Some(twin) =
            active_with_fingerprint(conn, &key.fingerprint)?.filter(|twin| twin.id != id)
        {
            remove_key(conn)?;
            return Ok(EnvKeyChange::Duplicate(twin.id));
        }
        let taken = diesel::update(
            connections::table.find(id).filter(
                connections::secret_key_fingerprint
                    .is_null()
                    .or(connections::secret_key_fingerprint.ne(&key.fingerprint)),
            ),
        )
        .set((
            connections::secret_key_enc.eq(&key.sealed),
            connections::secret_key_hint.eq(&key.hint),
            connections::secret_key_fingerprint.eq(&key.fingerprint),
            forget(),
        ))
        .execute(conn)?;
        Ok(if taken > 0 {
            EnvKeyChange::Taken
        } else {
            EnvKeyChange::Unchanged
        })
    })
}

/// Disconnects the environment's connection once `STRIPE_*` is gone; returns whether it was
/// active. Re-registering it (`register_env`) makes it active again.
pub fn retire_env(
    conn: &mut DbConnection,
    id: &str,
    at: NaiveDateTime,
) -> Result<bool, StorageError> {
    let retired = diesel::update(
        connections::table
            .find(id)
            .filter(connections::origin.eq(ENV_ORIGIN))
            .filter(connections::status.eq(status::ACTIVE)),
    )
    .set((
        connections::status.eq(status::DISCONNECTED),
        connections::disconnected_at.eq(at),
        connections::updated_at.eq(at),
    ))
    .execute(conn)?;
    Ok(retired > 0)
}

/// Marks a connection disconnected. An OAuth connection's tokens are dropped with it: nothing
/// is read through it any more, and a kept App refresh token would still mint access tokens.
pub fn mark_disconnected(
    conn: &mut DbConnection,
    id: &str,
    at: NaiveDateTime,
) -> Result<(), StorageError> {
    diesel::update(connections::table.find(id))
        .set((
            connections::status.eq(status::DISCONNECTED),
            connections::disconnected_at.eq(at),
            connections::refresh_token_enc.eq(None::<String>),
            connections::refresh_claimed_until.eq(None::<NaiveDateTime>),
            connections::updated_at.eq(at),
        ))
        .execute(conn)?;
    diesel::update(
        connections::table
            .find(id)
            .filter(connections::auth.ne(ConnectionAuth::Key)),
    )
    .set((
        connections::secret_key_enc.eq(None::<String>),
        connections::secret_key_hint.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(())
}

/// The active OAuth connection of this Stripe account in this mode, if any.
pub fn active_oauth_for_account(
    conn: &mut DbConnection,
    account: &str,
    mode: &str,
) -> Result<Option<ConnectionRow>, StorageError> {
    Ok(connections::table
        .filter(connections::status.eq(status::ACTIVE))
        .filter(connections::auth.ne(ConnectionAuth::Key))
        .filter(connections::stripe_account_id.eq(account))
        .filter(connections::mode.eq(mode))
        .select(ConnectionRow::as_select())
        .first(conn)
        .optional()?)
}

/// The OAuth tokens an authorisation (or a refresh) gave, sealed.
pub struct OauthTokens {
    pub access_token_enc: Option<String>,
    pub access_token_hint: Option<String>,
    pub refresh_token_enc: Option<String>,
    pub access_expires_at: Option<NaiveDateTime>,
}

/// Stores a new authorisation's tokens over an existing OAuth connection (connecting the same
/// account again), making it active again.
pub fn reauthorize(
    conn: &mut DbConnection,
    id: &str,
    tokens: &OauthTokens,
    at: NaiveDateTime,
) -> Result<(), StorageError> {
    diesel::update(connections::table.find(id))
        .set((
            connections::secret_key_enc.eq(&tokens.access_token_enc),
            connections::secret_key_hint.eq(&tokens.access_token_hint),
            connections::refresh_token_enc.eq(&tokens.refresh_token_enc),
            connections::access_expires_at.eq(tokens.access_expires_at),
            connections::token_version.eq(connections::token_version + 1),
            connections::refresh_claimed_until.eq(None::<NaiveDateTime>),
            connections::status.eq(status::ACTIVE),
            connections::revoked_at.eq(None::<NaiveDateTime>),
            connections::updated_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Claims the refresh of a connection's tokens until `until`, if nobody holds the claim and the
/// tokens are still those of `version`. Returns whether this caller may refresh.
pub fn claim_refresh(
    conn: &mut DbConnection,
    id: &str,
    version: i32,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> Result<bool, StorageError> {
    let claimed = diesel::update(
        connections::table
            .find(id)
            .filter(connections::status.eq(status::ACTIVE))
            .filter(connections::token_version.eq(version))
            .filter(
                connections::refresh_claimed_until
                    .is_null()
                    .or(connections::refresh_claimed_until.lt(now)),
            ),
    )
    .set(connections::refresh_claimed_until.eq(until))
    .execute(conn)?;
    Ok(claimed == 1)
}

/// Stores refreshed tokens in place of those of `version` and releases the claim; false when
/// the tokens changed meanwhile (they are then not stored).
pub fn store_refreshed(
    conn: &mut DbConnection,
    id: &str,
    version: i32,
    tokens: &OauthTokens,
    at: NaiveDateTime,
) -> Result<bool, StorageError> {
    // Only into an active row: a refresh that was under way when the connection was revoked or
    // disconnected must not put tokens back.
    let stored = diesel::update(
        connections::table
            .find(id)
            .filter(connections::token_version.eq(version))
            .filter(connections::status.eq(status::ACTIVE)),
    )
    .set((
        connections::secret_key_enc.eq(&tokens.access_token_enc),
        connections::secret_key_hint.eq(&tokens.access_token_hint),
        connections::refresh_token_enc.eq(&tokens.refresh_token_enc),
        connections::access_expires_at.eq(tokens.access_expires_at),
        connections::token_version.eq(version + 1),
        connections::refresh_claimed_until.eq(None::<NaiveDateTime>),
        connections::updated_at.eq(at),
    ))
    .execute(conn)?;
    Ok(stored == 1)
}

/// Gives up a refresh claim without storing anything (the refresh failed).
pub fn release_refresh(conn: &mut DbConnection, id: &str) -> Result<(), StorageError> {
    diesel::update(connections::table.find(id))
        .set(connections::refresh_claimed_until.eq(None::<NaiveDateTime>))
        .execute(conn)?;
    Ok(())
}

/// Marks an active OAuth connection revoked by Stripe; returns whether it was active. Its tokens
/// are dropped: they no longer work, and a revoked row keeps no secret.
pub fn mark_revoked(
    conn: &mut DbConnection,
    id: &str,
    at: NaiveDateTime,
) -> Result<bool, StorageError> {
    let revoked = diesel::update(
        connections::table
            .find(id)
            .filter(connections::status.eq(status::ACTIVE))
            .filter(connections::auth.ne(ConnectionAuth::Key)),
    )
    .set((
        connections::status.eq(status::REVOKED),
        connections::revoked_at.eq(at),
        connections::secret_key_enc.eq(None::<String>),
        connections::secret_key_hint.eq(None::<String>),
        connections::refresh_token_enc.eq(None::<String>),
        connections::can_push.eq(false),
        connections::updated_at.eq(at),
    ))
    .execute(conn)?;
    Ok(revoked == 1)
}

pub fn insert_secret(conn: &mut DbConnection, row: &WebhookSecretRow) -> Result<(), StorageError> {
    diesel::insert_into(webhook_secrets::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// A connection's secrets, newest first (the newest is tried first when verifying).
pub fn secrets(
    conn: &mut DbConnection,
    connection_id: &str,
) -> Result<Vec<WebhookSecretRow>, StorageError> {
    Ok(webhook_secrets::table
        .filter(webhook_secrets::connection_id.eq(connection_id))
        .select(WebhookSecretRow::as_select())
        .order((
            webhook_secrets::created_at.desc(),
            webhook_secrets::id.desc(),
        ))
        .load(conn)?)
}

/// Retires one active secret; returns whether it existed and was active.
pub fn retire_secret(
    conn: &mut DbConnection,
    connection_id: &str,
    secret_id: &str,
    at: NaiveDateTime,
) -> Result<bool, StorageError> {
    let updated = diesel::update(
        webhook_secrets::table
            .filter(webhook_secrets::id.eq(secret_id))
            .filter(webhook_secrets::connection_id.eq(connection_id))
            .filter(webhook_secrets::status.eq(SecretStatus::Active)),
    )
    .set((
        webhook_secrets::status.eq(SecretStatus::Retired),
        webhook_secrets::retired_at.eq(at),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// The rejections that say a webhook's signature did not verify (not a bad body or a size).
pub const SIGNATURE_FAILURES: [&str; 4] = [
    "missing_signature",
    "malformed_signature",
    "timestamp_outside_tolerance",
    "signature_mismatch",
];

/// The numbers behind a connection's webhook health.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookHealth {
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub last_event_at: Option<NaiveDateTime>,
    pub events_last_24h: i64,
    pub signature_failures_last_24h: i64,
    pub dead_events: i64,
}

pub fn webhook_health(
    conn: &mut DbConnection,
    connection_id: &str,
    since: NaiveDateTime,
) -> Result<WebhookHealth, StorageError> {
    let events = webhook_events::table.filter(webhook_events::connection_id.eq(connection_id));
    let last_event_at = events
        .select(diesel::dsl::max(webhook_events::received_at))
        .first::<Option<NaiveDateTime>>(conn)?;
    let events_last_24h = events
        .filter(webhook_events::received_at.ge(since))
        .count()
        .get_result(conn)?;
    let dead_events = events
        .filter(webhook_events::status.eq(EventStatus::Dead))
        .count()
        .get_result(conn)?;
    let signature_failures_last_24h = webhook_rejections::table
        .filter(webhook_rejections::connection_id.eq(connection_id))
        .filter(webhook_rejections::at.ge(since))
        .filter(webhook_rejections::reason.eq_any(SIGNATURE_FAILURES))
        .count()
        .get_result(conn)?;
    Ok(WebhookHealth {
        last_event_at,
        events_last_24h,
        signature_failures_last_24h,
        dead_events,
    })
}

/// Deliveries received and signature failures in each span `[bounds[i], bounds[i + 1])`: one
/// counted range per span on the `(connection_id, received_at)` and `(connection_id, at)`
/// indexes, the same on both backends (which truncate times to the hour differently).
pub fn webhook_activity(
    conn: &mut DbConnection,
    connection_id: &str,
    bounds: &[NaiveDateTime],
) -> Result<Vec<(i64, i64)>, StorageError> {
    let mut spans = Vec::with_capacity(bounds.len().saturating_sub(1));
    for span in bounds.windows(2) {
        let (from, to) = (span[0], span[1]);
        let deliveries = webhook_events::table
            .filter(webhook_events::connection_id.eq(connection_id))
            .filter(webhook_events::received_at.ge(from))
            .filter(webhook_events::received_at.lt(to))
            .count()
            .get_result(conn)?;
        let failures = webhook_rejections::table
            .filter(webhook_rejections::connection_id.eq(connection_id))
            .filter(webhook_rejections::at.ge(from))
            .filter(webhook_rejections::at.lt(to))
            .filter(webhook_rejections::reason.eq_any(SIGNATURE_FAILURES))
            .count()
            .get_result(conn)?;
        spans.push((deliveries, failures));
    }
    Ok(spans)
}

/// When an event signed by the secret with this hint last arrived.
pub fn last_signed_with(
    conn: &mut DbConnection,
    connection_id: &str,
    hint: &str,
) -> Result<Option<NaiveDateTime>, StorageError> {
    Ok(webhook_events::table
        .filter(webhook_events::connection_id.eq(connection_id))
        .filter(webhook_events::signed_with.eq(hint))
        .select(diesel::dsl::max(webhook_events::received_at))
        .first(conn)?)
}

/// What a disconnect leaves behind: subscriptions still running and invoices still unpaid.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Affected {
    pub active_subscriptions: i64,
    pub open_invoices: i64,
    pub unpushed_invoices: i64,
}

pub fn affected(conn: &mut DbConnection, connection_id: &str) -> Result<Affected, StorageError> {
    let active_subscriptions = subscriptions::table
        .filter(subscriptions::connection_id.eq(connection_id))
        .filter(subscriptions::status.eq_any(["active", "trialing", "past_due", "unpaid"]))
        .count()
        .get_result(conn)?;
    let open_invoices = invoices::table
        .filter(invoices::connection_id.eq(connection_id))
        .filter(invoices::status.eq_any([InvoiceStatus::Open, InvoiceStatus::PastDue]))
        .count()
        .get_result(conn)?;
    let unpushed_invoices = invoices::table
        .filter(invoices::connection_id.eq(connection_id))
        .filter(invoices::sync_state.eq_any([SyncState::Pending, SyncState::Failed]))
        .count()
        .get_result(conn)?;
    Ok(Affected {
        active_subscriptions,
        open_invoices,
        unpushed_invoices,
    })
}
