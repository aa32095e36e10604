-- Which ledger objects each applied event describes. A ledger row is rebuilt from every event
-- listed for it, sorted by Stripe's `created` and a fixed tie-break, so the order in which Stripe
-- delivered the events cannot change the result (DESIGN.md, invariant 4).
CREATE TABLE ledger_event_keys (
    ledger_key TEXT NOT NULL,
    event_id TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    PRIMARY KEY (ledger_key, event_id)
);
CREATE INDEX ledger_event_keys_event ON ledger_event_keys (event_id);

-- The apply workers' queue: only events still to apply, in the order they are due. The claim
-- query repeats this predicate literally so that both planners use the index.
CREATE INDEX webhook_events_queue ON webhook_events (next_attempt_at, id)
    WHERE status IN ('pending', 'failed');

-- Replaces (status, next_attempt_at): the planners preferred it for the claim and then sorted
-- every due event, reading each row, on every claim. Counting by status needs only this.
DROP INDEX webhook_events_due;
CREATE INDEX webhook_events_status ON webhook_events (status);
