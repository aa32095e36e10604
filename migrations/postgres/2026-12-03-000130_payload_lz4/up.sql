-- Event payloads (3-7 KB of JSON) are compressed when stored out of line. PostgreSQL's default,
-- pglz, cost more CPU per stored event than the rest of the insert; lz4 compresses and
-- decompresses several times faster. Only rows written from now on use it. A server built
-- without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE webhook_events ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available on this server; payloads stay compressed with pglz';
END
$$;
