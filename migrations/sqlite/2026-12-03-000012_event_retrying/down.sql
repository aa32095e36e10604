UPDATE webhook_events SET status = 'failed' WHERE status = 'retrying';
DROP INDEX webhook_events_queue;
CREATE INDEX webhook_events_queue ON webhook_events (next_attempt_at, id)
    WHERE status IN ('pending', 'failed');
