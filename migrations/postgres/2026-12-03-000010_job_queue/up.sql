-- The outbox becomes one queue for every kind of background job (invoice pushes, reading the rest
-- of an invoice's lines, …). A job is known by its kind and a dedupe key, so enqueueing the same
-- work twice keeps one job; each runner claims only its own kind.
ALTER TABLE outbox_jobs RENAME TO jobs;
ALTER TABLE jobs ADD COLUMN dedupe_key TEXT NOT NULL DEFAULT '';
UPDATE jobs SET dedupe_key = subject_id;
CREATE UNIQUE INDEX jobs_dedupe ON jobs (kind, dedupe_key);
DROP INDEX outbox_jobs_queue;
CREATE INDEX jobs_queue ON jobs (kind, run_after, id) WHERE status = 'pending';
