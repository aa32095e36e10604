DROP INDEX webhook_events_queue;
DROP TABLE ledger_event_keys;
