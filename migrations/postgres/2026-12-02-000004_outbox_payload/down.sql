DROP INDEX outbox_jobs_queue;
ALTER TABLE outbox_jobs DROP COLUMN payload;
