ALTER TABLE webhook_events ALTER COLUMN payload SET COMPRESSION pglz;
