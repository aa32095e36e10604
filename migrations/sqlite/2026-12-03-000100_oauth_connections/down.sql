DROP TABLE oauth_states;
ALTER TABLE connections DROP COLUMN revoked_at;
ALTER TABLE connections DROP COLUMN refresh_claimed_until;
ALTER TABLE connections DROP COLUMN token_version;
ALTER TABLE connections DROP COLUMN access_expires_at;
ALTER TABLE connections DROP COLUMN refresh_token_enc;
ALTER TABLE connections DROP COLUMN auth;
