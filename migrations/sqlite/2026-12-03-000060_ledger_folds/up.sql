-- Each ledger object's fold state and the newest event it includes (JSON, see
-- `ledger::fold::Folded`), so a new event is folded into it instead of re-reading every event the
-- object has. A NULL fold means "re-fold from the recorded events": every object recorded before
-- this table existed starts so. An object without a row has no applied event yet.
CREATE TABLE ledger_folds (
    ledger_key TEXT PRIMARY KEY NOT NULL,
    fold TEXT
);
INSERT INTO ledger_folds (ledger_key, fold)
    SELECT DISTINCT ledger_key, NULL FROM ledger_event_keys;
