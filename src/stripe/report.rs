//! The key report: every check billmirror makes of a connection's credentials, in order, each
//! with a status and a sentence saying what is wrong and how to fix it. Offline checks first
//! (`keys`), then, when the secret key looks right, online checks against Stripe with it.

use serde::Serialize;

use stripe_shared::Account;

use super::client::{StripeClient, StripeError};
use super::keys::{self, Field, KeyKind, Mode};
use super::typed;
use crate::domain::Secret;
use crate::ledger::MAPPED_TYPES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    PublishableKeyFormat,
    SecretKeyFormat,
    WebhookSecretFormat,
    ModeMatch,
    Authentication,
    Permissions,
    AccountStatus,
    WebhookEndpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = CheckStatus)]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: CheckName,
    pub status: Status,
    /// A stable code for what was found (`whitespace`, `key_rejected`, `stripe_unreachable`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    pub message: String,
}

impl Check {
    pub fn pass(name: CheckName, message: impl Into<String>) -> Check {
        Check::new(name, Status::Pass, None, message)
    }
    pub fn warn(name: CheckName, code: &'static str, message: impl Into<String>) -> Check {
        Check::new(name, Status::Warn, Some(code), message)
    }
    pub fn fail(name: CheckName, code: &'static str, message: impl Into<String>) -> Check {
        Check::new(name, Status::Fail, Some(code), message)
    }
    pub fn skipped(name: CheckName, message: impl Into<String>) -> Check {
        Check::new(name, Status::Skipped, None, message)
    }
    fn new(
        name: CheckName,
        status: Status,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status,
            code,
            message: message.into(),
        }
    }
}

/// The credentials to check, exactly as they were pasted.
#[derive(Debug, Clone, Default)]
pub struct KeyInput {
    pub publishable_key: Option<String>,
    pub secret_key: Option<Secret>,
    pub webhook_secrets: Vec<Secret>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyReport {
    pub ok: bool,
    pub mode: Option<Mode>,
    pub checks: Vec<Check>,
    /// The Stripe account the secret key belongs to, once Stripe has said so.
    pub stripe_account_id: Option<String>,
    /// Whether the key may create customers, invoices and invoice items.
    pub can_push: bool,
}

impl KeyReport {
    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Every offline check passed or was skipped: the credentials may be saved.
    pub fn offline_ok(&self) -> bool {
        self.checks
            .iter()
            .take(OFFLINE_CHECKS)
            .all(|c| c.status != Status::Fail)
    }

    /// Stripe itself refused the secret key (revoked, rolled, unknown).
    pub fn key_rejected(&self) -> bool {
        self.check(CheckName::Authentication)
            .is_some_and(|c| c.code == Some("key_rejected"))
    }

    /// What this report learned about the secret key itself. A Stripe that could not be reached
    /// teaches nothing: `can_push` is then false only because nothing was checked.
    pub fn verdict(&self) -> KeyVerdict {
        if self.key_rejected() {
            return KeyVerdict::Rejected;
        }
        let authenticated = self
            .check(CheckName::Authentication)
            .is_some_and(|c| c.status == Status::Pass);
        let permissions_known = self
            .check(CheckName::Permissions)
            .is_some_and(|c| c.code != Some("stripe_unreachable"));
        if authenticated && permissions_known {
            KeyVerdict::Verified
        } else {
            KeyVerdict::Unverified
        }
    }

    fn finish(mut self) -> KeyReport {
        self.ok = self.checks.iter().all(|c| c.status != Status::Fail);
        self
    }
}

pub use crate::domain::states::KeyVerdict;

const OFFLINE_CHECKS: usize = 4;

/// The offline checks, and the secret key's kind when it passed.
pub fn offline(input: &KeyInput) -> (KeyReport, Option<KeyKind>) {
    let (publishable, pk_kind) =
        keys::format_check(Field::PublishableKey, input.publishable_key.as_deref());
    let (secret, sk_kind) = keys::format_check(
        Field::SecretKey,
        input.secret_key.as_ref().map(Secret::expose),
    );
    let webhook = webhook_secrets_check(&input.webhook_secrets);
    let mode_match = keys::mode_check(pk_kind, sk_kind);
    let report = KeyReport {
        ok: false,
        mode: sk_kind.and_then(KeyKind::mode),
        checks: vec![publishable, secret, webhook, mode_match],
        stripe_account_id: None,
        can_push: false,
    };
    (report.finish(), sk_kind)
}

fn webhook_secrets_check(secrets: &[Secret]) -> Check {
    if secrets.is_empty() {
        return keys::format_check(Field::WebhookSecret, None).0;
    }
    let count = secrets.len();
    let mut passed = Vec::new();
    for (n, secret) in secrets.iter().enumerate() {
        let (mut check, _) = keys::format_check(Field::WebhookSecret, Some(secret.expose()));
        if check.status == Status::Fail {
            if count > 1 {
                check.message = format!("Webhook secret {} of {count}: {}", n + 1, check.message);
            }
            return check;
        }
        passed.push(secret.masked());
    }
    let message = match passed.as_slice() {
        [one] => format!("A webhook signing secret ({one})."),
        many => format!(
            "{} webhook signing secrets ({}); any of them may sign an event during a rotation.",
            many.len(),
            many.join(", ")
        ),
    };
    Check::pass(CheckName::WebhookSecretFormat, message)
}

/// Where the report expects the account's webhook endpoint to point: one connection's exact URL,
/// or, before a connection exists, any billmirror URL under the public base.
pub enum ExpectedWebhook<'a> {
    Exact(&'a str),
    Under(&'a str),
}

impl ExpectedWebhook<'_> {
    fn matches(&self, url: &str) -> bool {
        match self {
            ExpectedWebhook::Exact(expected) => url.trim_end_matches('/') == *expected,
            ExpectedWebhook::Under(base) => url.starts_with(base),
        }
    }

    fn shown(&self) -> String {
        match self {
            ExpectedWebhook::Exact(url) => (*url).to_owned(),
            ExpectedWebhook::Under(base) => format!("{base}/…"),
        }
    }
}

/// The full report: the offline checks, then the online ones when the secret key passed.
pub async fn run(
    input: &KeyInput,
    client: Option<&StripeClient>,
    webhook: ExpectedWebhook<'_>,
) -> KeyReport {
    let (mut report, sk_kind) = offline(input);
    let online = [
        CheckName::Authentication,
        CheckName::Permissions,
        CheckName::AccountStatus,
        CheckName::WebhookEndpoint,
    ];
    let (Some(kind), Some(client)) = (sk_kind, client) else {
        report.checks.extend(online.map(|name| {
            Check::skipped(
                name,
                "Not checked with Stripe until the secret key passes its format check.",
            )
        }));
        return report.finish();
    };

    let account = typed::send(
        client,
        &stripe_connect::account::RetrieveForMyAccountAccount::new(),
        None,
    )
    .await;
    let (authentication, account) = authentication_check(&account);
    let reached = authentication.status != Status::Fail;
    report.checks.push(authentication);
    if !reached {
        let why = if report.key_rejected() {
            "Not checked: Stripe refused the secret key."
        } else {
            "Not checked: Stripe could not be reached."
        };
        report
            .checks
            .extend(online[1..].iter().map(|name| Check::skipped(*name, why)));
        return report.finish();
    }
    report.stripe_account_id = account.as_ref().map(|a| a.id.as_str().to_owned());

    let (permissions, can_push) = permissions_check(client, kind).await;
    report.checks.push(permissions);
    report.can_push = can_push;
    report.checks.push(account_status_check(account));
    report
        .checks
        .push(webhook_endpoint_check(client, &webhook).await);
    report.finish()
}

/// The report of a read-only OAuth connection: no pasted keys to check offline; Stripe is asked
/// whether the authorisation still opens the account, what it may read, and the account's state.
/// `how` names the flow for the sentences (`Stripe Connect`, `the Stripe App`); `webhooks` says
/// where its events arrive (`None`: the platform's Connect endpoint has no signing secret yet).
pub async fn run_oauth(
    client: &StripeClient,
    mode: Option<Mode>,
    how: &str,
    webhooks: Option<&str>,
) -> KeyReport {
    let offline = "Connected with Stripe (OAuth): there are no pasted keys to check.";
    let mut report = KeyReport {
        ok: false,
        mode,
        checks: vec![
            Check::skipped(CheckName::PublishableKeyFormat, offline),
            Check::skipped(CheckName::SecretKeyFormat, offline),
            Check::skipped(CheckName::WebhookSecretFormat, offline),
            Check::skipped(CheckName::ModeMatch, offline),
        ],
        stripe_account_id: None,
        can_push: false,
    };
    let account = typed::send(
        client,
        &stripe_connect::account::RetrieveForMyAccountAccount::new(),
        None,
    )
    .await;
    let (mut authentication, account) = authentication_check(&account);
    if authentication.code == Some("key_rejected") {
        authentication.message = format!(
            "Stripe no longer accepts this connection's authorisation through {how}: it was \
             revoked in Stripe. Connect the account with Stripe again."
        );
    }
    let reached = authentication.status != Status::Fail;
    report.checks.push(authentication);
    if !reached {
        let why = if report.key_rejected() {
            "Not checked: Stripe refused the authorisation."
        } else {
            "Not checked: Stripe could not be reached."
        };
        report.checks.extend(
            [
                CheckName::Permissions,
                CheckName::AccountStatus,
                CheckName::WebhookEndpoint,
            ]
            .map(|name| Check::skipped(name, why)),
        );
        return report.finish();
    }
    report.stripe_account_id = account.as_ref().map(|a| a.id.as_str().to_owned());
    let (mut permissions, _) =
        permissions_check(client, KeyKind::Restricted(mode.unwrap_or(Mode::Test))).await;
    if permissions.code == Some("read_only") || permissions.status == Status::Pass {
        permissions = Check::warn(
            CheckName::Permissions,
            "read_only",
            format!(
                "Connected with Stripe through {how}, read-only: billmirror mirrors this account \
                 but never pushes invoices through it. To push invoices, connect the account \
                 with a secret or restricted key that may write instead."
            ),
        );
    }
    report.checks.push(permissions);
    // Read-only by construction, whatever the probes found.
    report.can_push = false;
    report.checks.push(account_status_check(account));
    report.checks.push(match webhooks {
        Some(url) => Check::pass(
            CheckName::WebhookEndpoint,
            format!("Events arrive through the platform's Connect webhook endpoint, {url}."),
        ),
        None => Check::warn(
            CheckName::WebhookEndpoint,
            "connect_endpoint_missing",
            "No signing secret is configured for the platform's Connect webhook endpoint of this \
             mode (STRIPE_CONNECT_WEBHOOK_SECRET_LIVE or _TEST): events are only caught up, not \
             received as they happen.",
        ),
    });
    report.finish()
}

fn authentication_check(answer: &Result<Account, StripeError>) -> (Check, Option<&Account>) {
    let name = CheckName::Authentication;
    match answer {
        Ok(account) => {
            let id = account.id.as_str();
            let business = account
                .business_profile
                .as_ref()
                .and_then(|p| p.name.as_deref())
                .or_else(|| {
                    account
                        .settings
                        .as_ref()
                        .and_then(|s| s.dashboard.display_name.as_deref())
                })
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            (
                Check::pass(
                    name,
                    format!("Stripe accepted the key for account {id}{business}."),
                ),
                Some(account),
            )
        }
        // A restricted key without the account permission still authenticated.
        Err(e) if e.status() == Some(403) => (
            Check::pass(
                name,
                "Stripe accepted the key, though it may not read the account's details.",
            ),
            None,
        ),
        Err(e) if e.status() == Some(401) => {
            let message = if e.code() == Some("api_key_expired") {
                "Stripe says this key has expired (it was rolled or revoked): create a new key in \
                 the Dashboard (Developers → API keys) and use that."
            } else {
                "Stripe does not recognise this key: it was revoked or rolled, belongs to a \
                 deleted account, or was not copied whole. Copy it again from the Dashboard \
                 (Developers → API keys)."
            };
            (Check::fail(name, "key_rejected", message), None)
        }
        Err(e) if e.is_unavailable() => (
            Check::fail(
                name,
                "stripe_unreachable",
                format!(
                    "Stripe could not be reached, so the key was not checked; nothing is known to \
                     be wrong with it. Try again shortly. ({})",
                    e.cause()
                ),
            ),
            None,
        ),
        Err(e) => (
            Check::fail(
                name,
                "stripe_error",
                format!("Stripe refused to describe the account: {e}"),
            ),
            None,
        ),
    }
}

/// A permission billmirror uses, and the harmless call that proves the key has it.
struct Probe {
    /// As the Dashboard names it: `Customers: write`.
    label: &'static str,
    /// Needed to push invoices (write) rather than to mirror (read).
    for_push: bool,
    post: bool,
    path: &'static str,
}

const fn read(label: &'static str, path: &'static str) -> Probe {
    Probe {
        label,
        for_push: false,
        post: false,
        path,
    }
}

/// Writes are probed by updating an object that does not exist: a key with the permission gets
/// 404, one without it 403, and nothing is created.
const fn write(label: &'static str, path: &'static str) -> Probe {
    Probe {
        label,
        for_push: true,
        post: true,
        path,
    }
}

const PROBES: &[Probe] = &[
    read("Customers: read", "customers"),
    read("Products: read", "products"),
    read("Prices: read", "prices"),
    read("Subscriptions: read", "subscriptions"),
    read("Invoices: read", "invoices"),
    read("Charges: read", "charges"),
    read("PaymentIntents: read", "payment_intents"),
    read("Refunds: read", "refunds"),
    read("Disputes: read", "disputes"),
    read("Events: read", "events"),
    read("Webhook Endpoints: read", "webhook_endpoints"),
    write(
        "Customers: write",
        "customers/cus_billmirror_permission_probe",
    ),
    write("Invoices: write", "invoices/in_billmirror_permission_probe"),
    write(
        "Invoice Items: write",
        "invoiceitems/ii_billmirror_permission_probe",
    ),
];

async fn permissions_check(client: &StripeClient, kind: KeyKind) -> (Check, bool) {
    let name = CheckName::Permissions;
    if matches!(kind, KeyKind::Secret(_)) {
        return (
            Check::pass(
                name,
                "A secret key has every permission billmirror needs, to mirror and to push \
                 invoices. A restricted key (rk_) limited to those permissions is safer.",
            ),
            true,
        );
    }
    let mut missing_read = Vec::new();
    let mut missing_write = Vec::new();
    let mut unknown = Vec::new();
    for probe in PROBES {
        let answer = if probe.post {
            client.post_once(probe.path, &[]).await
        } else {
            client.get(probe.path, &[("limit", "1".to_owned())]).await
        };
        match answer {
            Err(e) if e.status() == Some(403) => {
                if probe.for_push {
                    missing_write.push(probe.label);
                } else {
                    missing_read.push(probe.label);
                }
            }
            Err(e) if e.is_unavailable() => unknown.push(probe.label),
            // 2xx, or 404/400 on the probe object: the key got past the permission check.
            _ => {}
        }
    }
    let can_push = missing_write.is_empty() && unknown.is_empty();
    if !unknown.is_empty() {
        let check = Check::fail(
            name,
            "stripe_unreachable",
            format!(
                "Stripe could not be reached while checking {}; try again.",
                unknown.join(", ")
            ),
        );
        return (check, false);
    }
    let check = match (missing_read.is_empty(), missing_write.is_empty()) {
        (true, true) => Check::pass(
            name,
            format!(
                "The restricted key has every permission billmirror uses ({} probed).",
                PROBES.len()
            ),
        ),
        (true, false) => Check::warn(
            name,
            "read_only",
            format!(
                "The key can read everything billmirror mirrors, but lacks {}: billmirror can \
                 mirror this account but cannot push invoices to it. Grant those permissions to \
                 the key in the Dashboard to push invoices.",
                missing_write.join(", ")
            ),
        ),
        (false, _) => {
            let mut missing = missing_read.clone();
            missing.extend(&missing_write);
            Check::fail(
                name,
                "missing_permissions",
                format!(
                    "The restricted key lacks {}: billmirror cannot mirror those objects. Edit \
                     the key in the Dashboard (Developers → API keys) and grant them.",
                    missing.join(", ")
                ),
            )
        }
    };
    (check, can_push)
}

fn account_status_check(account: Option<&Account>) -> Check {
    let name = CheckName::AccountStatus;
    let Some(account) = account else {
        return Check::warn(
            name,
            "account_unreadable",
            "The key may not read the account, so its status is unknown; grant the restricted \
             key the Account read permission to see it here.",
        );
    };
    let requirements = account.requirements.as_ref();
    let due: Vec<&str> = requirements
        .and_then(|r| r.currently_due.as_ref())
        .map(|d| d.iter().map(String::as_str).collect())
        .unwrap_or_default();
    // An unknown reason (async-stripe's `Unknown`) is still Stripe's word, shown as such.
    let disabled_reason = requirements
        .and_then(|r| r.disabled_reason.as_ref())
        .map(|r| r.as_str());

    let mut problems = Vec::new();
    let mut failing = false;
    if account.charges_enabled == Some(false) {
        failing = true;
        problems.push(format!(
            "Stripe has disabled charges on this account, so customers cannot pay its invoices{}.",
            disabled_reason
                .map(|r| format!(" ({})", disabled_reason_sentence(r)))
                .unwrap_or_default()
        ));
    } else if let Some(reason) = disabled_reason {
        problems.push(format!(
            "Stripe reports the account as restricted: {}.",
            disabled_reason_sentence(reason)
        ));
    }
    if account.payouts_enabled == Some(false) {
        problems.push("Payouts are disabled: money collected stays in the Stripe balance.".into());
    }
    if account.details_submitted == Some(false) {
        problems.push(
            "The account's onboarding is not finished: submit the business details in the \
             Dashboard."
                .into(),
        );
    }
    if !due.is_empty() {
        problems.push(format!(
            "Stripe needs this information now: {}; provide it in the Dashboard before Stripe \
             restricts the account.",
            due.join(", ")
        ));
    }
    match (problems.is_empty(), failing) {
        (true, _) => Check::pass(
            name,
            "Charges and payouts are enabled and Stripe needs nothing from the account.",
        ),
        (false, true) => Check::fail(name, "charges_disabled", problems.join(" ")),
        (false, false) => Check::warn(name, "account_restricted", problems.join(" ")),
    }
}

/// Stripe's `requirements.disabled_reason` values as sentences.
fn disabled_reason_sentence(reason: &str) -> String {
    match reason {
        "requirements.past_due" => "required information is past due".into(),
        "requirements.pending_verification" => "Stripe is verifying the information given".into(),
        "listed" => "the account is on a prohibited-persons list and under review".into(),
        "platform_paused" => "the platform paused the account".into(),
        "rejected.fraud" => "Stripe rejected the account for suspected fraud".into(),
        "rejected.terms_of_service" => "Stripe rejected the account for breaking its terms".into(),
        "rejected.listed" | "rejected.other" => "Stripe rejected the account".into(),
        "under_review" => "Stripe is reviewing the account".into(),
        other => format!("Stripe's reason: {other}"),
    }
}

async fn webhook_endpoint_check(client: &StripeClient, expected: &ExpectedWebhook<'_>) -> Check {
    let name = CheckName::WebhookEndpoint;
    let answer = typed::list_all(
        client,
        &stripe_misc::webhook_endpoint::ListWebhookEndpoint::new(),
    )
    .await;
    let endpoints =
        match answer {
            Ok(list) => list.items,
            Err(e) if e.status() == Some(403) => return Check::warn(
                name,
                "endpoints_unreadable",
                "The key may not read webhook endpoints, so billmirror cannot check that Stripe \
                 sends it events; grant Webhook Endpoints: read.",
            ),
            Err(e) => {
                return Check::fail(
                    name,
                    "stripe_unreachable",
                    format!("The webhook endpoints could not be listed: {e}"),
                )
            }
        };
    let Some(endpoint) = endpoints
        .iter()
        .filter(|e| expected.matches(&e.url))
        .max_by_key(|e| e.status == "enabled")
    else {
        return Check::warn(
            name,
            "no_endpoint",
            format!(
                "No webhook endpoint in this Stripe account points at {}: billmirror receives no \
                 events. Register it with POST /api/connections/{{id}}/webhook-endpoint, or add it \
                 in the Dashboard (Developers → Webhooks).",
                expected.shown()
            ),
        );
    };
    let url = endpoint.url.as_str();
    let id = endpoint.id.as_str();
    let version = endpoint
        .api_version
        .as_deref()
        .map(|v| format!("API version {v}"))
        .unwrap_or_else(|| "the account's default API version".to_owned());
    if endpoint.status != "enabled" {
        return Check::fail(
            name,
            "endpoint_disabled",
            format!(
                "The webhook endpoint {id} ({url}) is disabled, so Stripe sends billmirror no \
                 events: enable it in the Dashboard (Developers → Webhooks)."
            ),
        );
    }
    let enabled: Vec<&str> = endpoint.enabled_events.iter().map(String::as_str).collect();
    if enabled.contains(&"*") {
        return Check::pass(
            name,
            format!("The webhook endpoint {id} ({url}) is enabled and sends every event type, in {version}."),
        );
    }
    let missing: Vec<&str> = MAPPED_TYPES
        .iter()
        .copied()
        .filter(|t| !enabled.contains(t))
        .collect();
    if missing.is_empty() {
        Check::pass(
            name,
            format!(
                "The webhook endpoint {id} ({url}) is enabled and sends every event type \
                 billmirror maps, in {version}."
            ),
        )
    } else {
        Check::warn(
            name,
            "events_missing",
            format!(
                "The webhook endpoint {id} ({url}) does not send {}: those changes will not \
                 reach the ledger. Add them to the endpoint (or POST \
                 /api/connections/{{id}}/webhook-endpoint to update it).",
                missing.join(", ")
            ),
        )
    }
}
