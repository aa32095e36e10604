DROP INDEX connections_active_secret_key;
ALTER TABLE connections DROP COLUMN secret_key_fingerprint;
ALTER TABLE connections DROP COLUMN key_status;
