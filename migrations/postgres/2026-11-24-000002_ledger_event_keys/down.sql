DROP INDEX webhook_events_status;
CREATE INDEX webhook_events_due ON webhook_events (status, next_attempt_at);
DROP INDEX webhook_events_queue;
DROP TABLE ledger_event_keys;
