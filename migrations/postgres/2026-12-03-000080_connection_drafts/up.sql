-- Keys typed into the web UI's *Connect Stripe* form between its Validate and Save buttons.
-- The secret key and webhook secret are sealed with the master key (as connections' are), the
-- row belongs to one browser session (the stored hash of its id) and lives 15 minutes: the page
-- carries only the draft's random id, never a secret.
CREATE TABLE connection_drafts (
    id TEXT PRIMARY KEY NOT NULL,
    session_hash TEXT NOT NULL,
    publishable_key TEXT,
    secret_key_enc TEXT,
    webhook_secret_enc TEXT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX connection_drafts_expires ON connection_drafts (expires_at);
