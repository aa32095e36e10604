-- An event that failed to apply and waits for its next attempt is `retrying`, not `failed`: in the
-- job queue `failed` means a person must act, and one word must not mean both.
UPDATE webhook_events SET status = 'retrying' WHERE status = 'failed';
DROP INDEX webhook_events_queue;
-- The apply workers' queue; the claim query repeats this predicate so both planners use it.
CREATE INDEX webhook_events_queue ON webhook_events (next_attempt_at, id)
    WHERE status IN ('pending', 'retrying');
