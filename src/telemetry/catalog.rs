//! Every metric billmirror exports, in one place: its name (prefixed `billmirror_`, counters
//! ending in `_total`, durations in `_seconds`, as Prometheus names them) and its HELP line. Code
//! records through these constants, so a name cannot drift from its description; a test scrapes
//! `/metrics` and checks every family against the naming rules.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Requests answered, by route template, method and status. Counter.
pub const HTTP_REQUESTS: &str = "billmirror_http_requests_total";
/// Request latency by route template and method. Histogram.
pub const HTTP_REQUEST_DURATION: &str = "billmirror_http_request_duration_seconds";
/// Webhook deliveries stored, by connection and outcome (stored, ignored, duplicate). Counter.
pub const WEBHOOK_EVENTS_RECEIVED: &str = "billmirror_webhook_events_received_total";
/// Webhook deliveries refused, by connection and reason. Counter.
pub const WEBHOOK_REJECTIONS: &str = "billmirror_webhook_rejections_total";
/// When this process last stored a webhook delivery, per connection (Unix time). Gauge.
pub const WEBHOOK_LAST_RECEIVED: &str = "billmirror_webhook_last_received_timestamp_seconds";
/// Stored events by status (pending, applied, ignored, failed, dead). Gauge, read at scrape.
pub const WEBHOOK_EVENTS: &str = "billmirror_webhook_events";
/// The apply lag: age of the oldest event waiting to be applied (0 when none). Gauge.
pub const EVENTS_OLDEST_UNAPPLIED_AGE: &str = "billmirror_events_oldest_unapplied_age_seconds";
/// Background jobs by kind and state. Gauge, read at scrape.
pub const JOBS: &str = "billmirror_jobs";
/// Calls to Stripe's API (every attempt), by endpoint template, method and HTTP status
/// (`error` when no answer came). Counter.
pub const STRIPE_REQUESTS: &str = "billmirror_stripe_requests_total";
/// Stripe call latency (every attempt) by endpoint template and method. Histogram.
pub const STRIPE_REQUEST_DURATION: &str = "billmirror_stripe_request_duration_seconds";
/// The last key report of each active connection: 1 when every check passed (0 for one Stripe
/// revoked). Gauge.
pub const CONNECTION_KEY_REPORT_OK: &str = "billmirror_connection_key_report_ok";
/// Whether each active connection's key may push invoices (1) or not (0). Gauge.
pub const CONNECTION_CAN_PUSH: &str = "billmirror_connection_can_push";

/// Registers every HELP line; called once, when the recorder is installed.
pub fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency by route template and method."
    );
    describe_counter!(
        WEBHOOK_EVENTS_RECEIVED,
        "Webhook deliveries stored, by connection and outcome (stored, ignored, duplicate)."
    );
    describe_counter!(
        WEBHOOK_REJECTIONS,
        "Webhook deliveries refused (nothing stored), by connection and reason."
    );
    describe_gauge!(
        WEBHOOK_LAST_RECEIVED,
        Unit::Seconds,
        "Unix time this process last stored a webhook delivery, per connection."
    );
    describe_gauge!(
        WEBHOOK_EVENTS,
        "Stored events by status; status=\"dead\" events need a person (POST /api/events/{id}/replay)."
    );
    describe_gauge!(
        EVENTS_OLDEST_UNAPPLIED_AGE,
        Unit::Seconds,
        "Apply lag: age of the oldest pending or failed event, 0 when every event is applied."
    );
    describe_gauge!(
        JOBS,
        "Background jobs (invoice pushes, reading invoice lines) by kind and state."
    );
    describe_counter!(
        STRIPE_REQUESTS,
        "Stripe API calls (each attempt) by endpoint template, method and HTTP status (error: no answer)."
    );
    describe_histogram!(
        STRIPE_REQUEST_DURATION,
        Unit::Seconds,
        "Stripe API call latency (each attempt) by endpoint template and method."
    );
    describe_gauge!(
        CONNECTION_KEY_REPORT_OK,
        "1 when the active connection's last key report passed every check, 0 when one failed."
    );
    describe_gauge!(
        CONNECTION_CAN_PUSH,
        "1 when the active connection's key may create invoices in Stripe, else 0."
    );
}
