-- Stripe keeps the first answer to an Idempotency-Key for 24 hours, a 500 included, and replays
-- it. After such an answer the push looks the object up and, when it is not there, sends the
-- step again under a new key: `{key_base}:r{epoch}`. One row per key that was given up on.
CREATE TABLE stripe_key_epochs (
    key_base TEXT PRIMARY KEY NOT NULL,
    epoch INTEGER NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
