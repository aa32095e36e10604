-- Connections made by "Connect with Stripe" (OAuth) rather than with pasted keys.
-- `auth`: `key` (pasted or environment keys), `connect` (Stripe Connect OAuth: reads use the
-- platform key with `Stripe-Account`) or `app` (Stripe App OAuth: reads use the access token).
ALTER TABLE connections ADD COLUMN auth TEXT NOT NULL DEFAULT 'key';
-- The sealed refresh token (rolling for Stripe Apps: each refresh replaces it).
ALTER TABLE connections ADD COLUMN refresh_token_enc TEXT;
-- When the access token (sealed in secret_key_enc, App flow) stops working.
ALTER TABLE connections ADD COLUMN access_expires_at TIMESTAMP;
-- Bumped with every stored token change: a refresh stores its tokens only over the version it
-- read, so of two instances refreshing at once one wins and the other re-reads.
ALTER TABLE connections ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
-- Who is refreshing: the instance that claimed the refresh until then; the others wait.
ALTER TABLE connections ADD COLUMN refresh_claimed_until TIMESTAMP;
-- When Stripe said the authorisation is gone (`account.application.deauthorized`, or a 401).
ALTER TABLE connections ADD COLUMN revoked_at TIMESTAMP;

-- One row per "Connect with Stripe" started: the OAuth `state`, stored only as its SHA-256, bound
-- to the person and session that started it, usable once, for ten minutes.
CREATE TABLE oauth_states (
    state_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    session_hash TEXT NOT NULL,
    flow TEXT NOT NULL,
    mode TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
