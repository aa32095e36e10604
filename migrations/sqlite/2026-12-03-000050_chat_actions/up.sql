-- Actions from chat. A Slack app channel whose buttons may act gets its app's signing secret
-- (sealed by the vault) and, optionally, the channel escalations go to. Slack users map to
-- billmirror roles (an unknown user is `support`). Each click is one row, unique on Slack's
-- `{user}:{action_ts}`, so a retried request acts once. "Contacted" and "assigned to the billing
-- queue" are follow-ups on a customer, shown in its billing context. Ops alerts remember whether
-- each condition is firing, so an alert is sent once per change.
CREATE TABLE notify_interactivity (
    channel_id TEXT PRIMARY KEY NOT NULL REFERENCES notify_channels (id),
    signing_secret_enc TEXT NOT NULL,
    signing_secret_hint TEXT NOT NULL,
    escalation_channel_id TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE notify_slack_users (
    slack_user_id TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL,
    name TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE notify_chat_actions (
    id TEXT PRIMARY KEY NOT NULL,
    dedupe_key TEXT NOT NULL,
    action TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    connection_id TEXT,
    slack_user_id TEXT NOT NULL,
    slack_user_name TEXT,
    role TEXT NOT NULL,
    response_url TEXT,
    status TEXT NOT NULL,
    result TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX notify_chat_actions_once ON notify_chat_actions (dedupe_key);

CREATE TABLE customer_follow_ups (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    invoice_id TEXT,
    actor TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX customer_follow_ups_customer ON customer_follow_ups (connection_id, customer_id);

CREATE TABLE notify_ops_alerts (
    alert_key TEXT PRIMARY KEY NOT NULL,
    firing BOOLEAN NOT NULL,
    detail TEXT,
    changed_at TIMESTAMP NOT NULL
);

-- Changed (to a new random word) in the transaction of every rule change: applying an event
-- reads this one row and keeps the parsed rules of each version in memory, so a change made
-- through any instance takes effect on the next event everywhere.
CREATE TABLE notify_rules_version (
    id INTEGER PRIMARY KEY NOT NULL,
    version TEXT NOT NULL
);
