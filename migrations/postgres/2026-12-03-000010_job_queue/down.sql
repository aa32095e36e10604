DROP INDEX jobs_queue;
DROP INDEX jobs_dedupe;
ALTER TABLE jobs DROP COLUMN dedupe_key;
ALTER TABLE jobs RENAME TO outbox_jobs;
CREATE INDEX outbox_jobs_queue ON outbox_jobs (run_after, id) WHERE status = 'pending';
