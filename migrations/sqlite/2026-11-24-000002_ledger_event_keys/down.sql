DROP TABLE ledger_event_keys;
