-- What Stripe last said about a connection's secret key: `unverified` (Stripe never answered,
-- e.g. it was unreachable when the key was saved), `verified` (Stripe accepted the key; can_push
-- says whether it may write) or `rejected` (Stripe refused it). Without this, a key nobody could
-- check looked exactly like a read-only one.
ALTER TABLE connections ADD COLUMN key_status TEXT NOT NULL DEFAULT 'unverified';
-- A keyed hash of the secret key (HMAC-SHA256 under a key derived from the master key), never the
-- key: it lets one key be connected only once even when Stripe cannot say which account it is.
ALTER TABLE connections ADD COLUMN secret_key_fingerprint TEXT;
CREATE UNIQUE INDEX connections_active_secret_key ON connections (secret_key_fingerprint)
    WHERE status = 'active';
-- Existing rows, from their last report (compact JSON, checks in a fixed field order); fingerprints
-- are filled in at start, where the vault can open the keys.
UPDATE connections SET key_status = 'rejected'
    WHERE last_report LIKE '%"code":"key_rejected"%';
UPDATE connections SET key_status = 'verified'
    WHERE key_status = 'unverified' AND last_report IS NOT NULL
      AND last_report NOT LIKE '%"name":"authentication","status":"fail"%'
      AND last_report NOT LIKE '%"name":"permissions","status":"fail","code":"stripe_unreachable"%';
