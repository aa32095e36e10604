-- What a push job needs beyond its subject's row (an invoice's days until due), as JSON.
ALTER TABLE outbox_jobs ADD COLUMN payload TEXT;
-- The push worker's claim: jobs still to run, in the order they are due.
CREATE INDEX outbox_jobs_queue ON outbox_jobs (run_after, id) WHERE status = 'pending';
