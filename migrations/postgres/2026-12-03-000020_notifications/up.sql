-- Chat notifications: where messages go (channels, their secret sealed by the vault), which events
-- go where (rules), and one delivery row per (event, rule) or digest, unique on its key, so a
-- message is posted once ever.
CREATE TABLE notify_channels (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    secret_hint TEXT NOT NULL,
    target TEXT,
    api_base TEXT,
    redaction TEXT NOT NULL,
    rate_per_minute INTEGER NOT NULL,
    status TEXT NOT NULL,
    broken_reason TEXT,
    last_ok_at TIMESTAMP,
    last_failure_at TIMESTAMP,
    last_error TEXT,
    next_send_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE notify_rules (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    channel_id TEXT NOT NULL REFERENCES notify_channels (id),
    families TEXT NOT NULL,
    connection_ids TEXT,
    mode TEXT NOT NULL,
    min_amount BIGINT,
    min_currency TEXT,
    redaction TEXT,
    enabled BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX notify_rules_channel ON notify_rules (channel_id);

CREATE TABLE notify_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    dedupe_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    rule_id TEXT,
    connection_id TEXT,
    event_id TEXT,
    family TEXT,
    subject TEXT,
    amount BIGINT,
    currency TEXT,
    facts TEXT NOT NULL,
    redaction TEXT,
    occurred_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL,
    digest_id TEXT,
    members INTEGER NOT NULL DEFAULT 0,
    provider_message_id TEXT,
    thread_ts TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX notify_deliveries_once ON notify_deliveries (dedupe_key);
CREATE INDEX notify_deliveries_waiting ON notify_deliveries (channel_id, status, occurred_at);
CREATE INDEX notify_deliveries_thread ON notify_deliveries (channel_id, subject);
CREATE INDEX notify_deliveries_digest ON notify_deliveries (digest_id);
