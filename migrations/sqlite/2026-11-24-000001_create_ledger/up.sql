-- The whole ledger, written once for both backends. Types are the portable subset diesel maps on
-- SQLite and PostgreSQL alike: TEXT ids, BIGINT minor units, TIMESTAMP (naive UTC), BOOLEAN.

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    token_hint TEXT NOT NULL,
    created_by TEXT,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY NOT NULL,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE connections (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    origin TEXT NOT NULL,
    status TEXT NOT NULL,
    stripe_account_id TEXT,
    publishable_key TEXT,
    secret_key_enc TEXT,
    secret_key_hint TEXT,
    can_push BOOLEAN NOT NULL DEFAULT FALSE,
    last_report TEXT,
    last_report_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    disconnected_at TIMESTAMP
);

CREATE TABLE webhook_secrets (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    secret_enc TEXT NOT NULL,
    secret_hint TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP,
    last_matched_at TIMESTAMP
);
CREATE INDEX webhook_secrets_connection ON webhook_secrets (connection_id);

CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    stripe_event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    api_version TEXT,
    livemode BOOLEAN NOT NULL,
    stripe_created TIMESTAMP NOT NULL,
    object_id TEXT,
    payload TEXT NOT NULL,
    source TEXT NOT NULL,
    signed_with TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at TIMESTAMP NOT NULL,
    received_at TIMESTAMP NOT NULL,
    applied_at TIMESTAMP,
    UNIQUE (connection_id, stripe_event_id)
);
CREATE INDEX webhook_events_due ON webhook_events (status, next_attempt_at);
CREATE INDEX webhook_events_object ON webhook_events (object_id);
CREATE INDEX webhook_events_type ON webhook_events (event_type, received_at);

CREATE TABLE webhook_rejections (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX webhook_rejections_connection ON webhook_rejections (connection_id, at);

CREATE TABLE customers (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    stripe_id TEXT NOT NULL,
    email TEXT,
    email_normalized TEXT,
    name TEXT,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    stripe_created TIMESTAMP,
    observed_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (connection_id, stripe_id)
);
CREATE INDEX customers_email ON customers (email_normalized);

CREATE TABLE products (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    stripe_id TEXT NOT NULL,
    name TEXT,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    observed_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (connection_id, stripe_id)
);

CREATE TABLE prices (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    stripe_id TEXT NOT NULL,
    stripe_product_id TEXT,
    nickname TEXT,
    unit_amount BIGINT,
    currency TEXT,
    billing_interval TEXT,
    interval_count INTEGER,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    observed_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (connection_id, stripe_id)
);

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    stripe_id TEXT NOT NULL,
    stripe_customer_id TEXT,
    status TEXT NOT NULL,
    stripe_price_id TEXT,
    stripe_product_id TEXT,
    plan_name TEXT,
    billing_interval TEXT,
    interval_count INTEGER,
    quantity BIGINT,
    amount BIGINT,
    currency TEXT,
    current_period_start TIMESTAMP,
    current_period_end TIMESTAMP,
    cancel_at_period_end BOOLEAN NOT NULL DEFAULT FALSE,
    cancel_at TIMESTAMP,
    canceled_at TIMESTAMP,
    ended_at TIMESTAMP,
    trial_end TIMESTAMP,
    stripe_created TIMESTAMP,
    observed_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (connection_id, stripe_id)
);
CREATE INDEX subscriptions_customer ON subscriptions (stripe_customer_id);

CREATE TABLE invoices (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    stripe_id TEXT,
    origin TEXT NOT NULL,
    number TEXT,
    stripe_customer_id TEXT,
    customer_email TEXT,
    customer_email_normalized TEXT,
    customer_name TEXT,
    stripe_subscription_id TEXT,
    currency TEXT NOT NULL,
    total BIGINT NOT NULL,
    amount_due BIGINT NOT NULL,
    amount_paid BIGINT NOT NULL DEFAULT 0,
    amount_remaining BIGINT NOT NULL,
    status TEXT NOT NULL,
    due_date TIMESTAMP,
    memo TEXT,
    hosted_invoice_url TEXT,
    pay_token TEXT UNIQUE,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    next_payment_attempt TIMESTAMP,
    last_payment_error TEXT,
    sync_state TEXT NOT NULL,
    sync_error TEXT,
    finalized_at TIMESTAMP,
    paid_at TIMESTAMP,
    voided_at TIMESTAMP,
    stripe_created TIMESTAMP,
    observed_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (connection_id, stripe_id)
);
CREATE INDEX invoices_customer ON invoices (stripe_customer_id);
CREATE INDEX invoices_email ON invoices (customer_email_normalized);
CREATE INDEX invoices_status ON invoices (status, created_at);

CREATE TABLE invoice_lines (
    id TEXT PRIMARY KEY NOT NULL,
    invoice_id TEXT NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    stripe_id TEXT,
    line_no INTEGER NOT NULL,
    description TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_amount BIGINT,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    stripe_price_id TEXT,
    period_start TIMESTAMP,
    period_end TIMESTAMP
);
CREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id, line_no);

CREATE TABLE payments (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    stripe_id TEXT NOT NULL,
    payment_intent_id TEXT,
    charge_id TEXT,
    stripe_customer_id TEXT,
    stripe_invoice_id TEXT,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_code TEXT,
    failure_message TEXT,
    method_type TEXT,
    card_brand TEXT,
    card_last4 TEXT,
    amount_refunded BIGINT NOT NULL DEFAULT 0,
    disputed BOOLEAN NOT NULL DEFAULT FALSE,
    description TEXT,
    stripe_created TIMESTAMP,
    observed_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (connection_id, stripe_id)
);
CREATE INDEX payments_customer ON payments (stripe_customer_id, stripe_created);
CREATE INDEX payments_charge ON payments (charge_id);
CREATE INDEX payments_intent ON payments (payment_intent_id);
CREATE INDEX payments_invoice ON payments (stripe_invoice_id);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    stripe_id TEXT NOT NULL,
    charge_id TEXT,
    payment_intent_id TEXT,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT,
    status TEXT NOT NULL,
    failure_reason TEXT,
    stripe_created TIMESTAMP,
    observed_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (connection_id, stripe_id)
);
CREATE INDEX refunds_charge ON refunds (charge_id);

CREATE TABLE disputes (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    stripe_id TEXT NOT NULL,
    charge_id TEXT,
    payment_intent_id TEXT,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT,
    status TEXT NOT NULL,
    evidence_due_by TIMESTAMP,
    stripe_created TIMESTAMP,
    observed_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (connection_id, stripe_id)
);
CREATE INDEX disputes_charge ON disputes (charge_id);

CREATE TABLE outbox_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_after TIMESTAMP NOT NULL,
    locked_until TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX outbox_jobs_due ON outbox_jobs (status, run_after);
CREATE INDEX outbox_jobs_subject ON outbox_jobs (subject_id);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (scope, idem_key)
);

CREATE TABLE sync_cursors (
    connection_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    cursor TEXT,
    completed BOOLEAN NOT NULL DEFAULT FALSE,
    objects_seen BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (connection_id, resource)
);
