//! Webhook ingest: which connections accept events and with which secrets, the signature check,
//! the envelope, and the inbox that stores events before they are acknowledged. Applying stored
//! events to the ledger is the `ledger` module's job.

pub mod envelope;
pub mod inbox;
pub mod replay;
pub mod signature;
pub mod thin;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::domain::states::EventStatus;
use crate::domain::{ids, time, Secret};
use crate::storage::events::EventRow;
pub use envelope::{Envelope, EnvelopeError};
pub use signature::SignatureError;

/// The id of the connection configured from `STRIPE_*` variables, served at `/webhooks/stripe`.
pub const ENV_CONNECTION_ID: &str = "env";

/// What a connection needs to accept a webhook.
#[derive(Debug)]
pub struct Endpoint {
    pub connection_id: String,
    /// `live` or `test` when known from the connection's keys; events of the other mode are refused.
    pub mode: Option<&'static str>,
    /// The active signing secrets, newest first.
    pub secrets: Vec<Secret>,
}

/// The connections that accept webhooks, shared by every request. Changed when connections are
/// added or their secrets rotated.
#[derive(Clone, Default)]
pub struct Endpoints(Arc<RwLock<HashMap<String, Arc<Endpoint>>>>);

impl Endpoints {
    pub fn get(&self, connection_id: &str) -> Option<Arc<Endpoint>> {
        self.0.read().ok()?.get(connection_id).cloned()
    }

    /// Keeps only the connections for which `keep` holds.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut map) = self.0.write() {
            map.retain(|id, _| keep(id));
        }
    }

    pub fn remove(&self, connection_id: &str) {
        if let Ok(mut map) = self.0.write() {
            map.remove(connection_id);
        }
    }

    pub fn set(&self, endpoint: Endpoint) {
        if let Ok(mut map) = self.0.write() {
            map.insert(endpoint.connection_id.clone(), Arc::new(endpoint));
        }
    }
}

/// Why a delivery is refused. Nothing is stored for any of these.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    MissingSignature,
    Signature(SignatureError),
    InvalidPayload(String),
    /// An identifying field (id, type, API version, object id) holds a control character.
    ControlCharacter(&'static str),
    /// Arrays and objects nest beyond [`envelope::MAX_DEPTH`].
    TooDeep,
    LivemodeMismatch {
        connection_mode: &'static str,
    },
}

impl From<EnvelopeError> for Rejection {
    fn from(error: EnvelopeError) -> Self {
        match error {
            EnvelopeError::Invalid(problem) => Rejection::InvalidPayload(problem),
            EnvelopeError::ControlCharacter(field) => Rejection::ControlCharacter(field),
            EnvelopeError::TooDeep => Rejection::TooDeep,
        }
    }
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingSignature => "missing_signature",
            Rejection::Signature(e) => e.code(),
            Rejection::InvalidPayload(_) => "invalid_payload",
            Rejection::ControlCharacter(_) => "invalid_characters",
            Rejection::TooDeep => "payload_too_deep",
            Rejection::LivemodeMismatch { .. } => "livemode_mismatch",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Rejection::MissingSignature => "The request has no Stripe-Signature header.".to_owned(),
            Rejection::Signature(e) => format!("{e}."),
            Rejection::InvalidPayload(problem) => format!("{problem}."),
            Rejection::ControlCharacter(field) => format!(
                "The event's `{field}` contains a control character (such as \\u0000); it cannot \
                 be stored."
            ),
            Rejection::TooDeep => format!(
                "The event nests arrays and objects more than {} levels deep.",
                envelope::MAX_DEPTH
            ),
            Rejection::LivemodeMismatch { connection_mode } => format!(
                "The event's livemode does not match this {connection_mode}-mode connection."
            ),
        }
    }
}

/// Checks a delivery: signature first (nothing unauthenticated is even parsed), then the
/// envelope, then the mode. Returns the envelope and the label of the secret that signed it.
pub fn verify_delivery(
    endpoint: &Endpoint,
    signature_header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(Envelope, String), Rejection> {
    let header = signature_header.ok_or(Rejection::MissingSignature)?;
    let matched = signature::verify(header, body, &endpoint.secrets, now, tolerance)
        .map_err(Rejection::Signature)?;
    let envelope = Envelope::parse(body).map_err(Rejection::from)?;
    if let Some(mode) = endpoint.mode {
        if envelope.livemode != (mode == "live") {
            return Err(Rejection::LivemodeMismatch {
                connection_mode: mode,
            });
        }
    }
    let signed_with = endpoint
        .secrets
        .get(matched)
        .map(Secret::masked)
        .unwrap_or_default();
    Ok((envelope, signed_with))
}

/// Whether billmirror makes something of an event: a snapshot event whose type the ledger maps,
/// or a thin event standing for one (`v1.invoice.paid`).
pub fn maps(envelope: &Envelope) -> bool {
    if envelope.thin {
        thin::snapshot_type(&envelope.event_type).is_some()
            && envelope
                .related_object
                .as_ref()
                .is_some_and(|r| thin::related_path(&r.url).is_some())
    } else {
        crate::ledger::maps(&envelope.event_type)
    }
}

/// The inbox row for a verified event: `pending` when billmirror maps its type (`fetching` for a
/// thin event, which its job reads from Stripe first), else `ignored` (stored all the same, and
/// answered 2xx so that Stripe does not retry it for days).
pub fn inbox_row(
    connection_id: &str,
    envelope: Envelope,
    body: String,
    source: &str,
    signed_with: Option<String>,
    maps_type: bool,
) -> EventRow {
    let now = time::now();
    EventRow {
        id: ids::new_id("ev"),
        connection_id: connection_id.to_owned(),
        stripe_event_id: envelope.id,
        event_type: envelope.event_type,
        api_version: envelope.api_version,
        livemode: envelope.livemode,
        stripe_created: time::from_unix(envelope.created).unwrap_or(now),
        object_id: envelope.object_id,
        payload: body,
        source: source.to_owned(),
        signed_with,
        status: match (maps_type, envelope.thin) {
            (false, _) => EventStatus::Ignored,
            (true, false) => EventStatus::Pending,
            (true, true) => EventStatus::Fetching,
        },
        attempts: 0,
        last_error: None,
        next_attempt_at: now,
        received_at: now,
        applied_at: None,
    }
}
