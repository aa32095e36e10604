-- Snapshots of a ledger object's fold state (JSON, see `ledger::fold::Folded`), kept every
-- `ledger::fold::SNAPSHOT_EVERY` events: an event older than the kept state re-folds from the
-- newest snapshot before it instead of from the object's first event. `events` is how many
-- events the snapshot includes; `created` is the Unix time of the newest of them, so the events
-- to re-fold are read from that second on.
CREATE TABLE ledger_fold_snapshots (
    ledger_key TEXT NOT NULL,
    events BIGINT NOT NULL,
    created BIGINT NOT NULL,
    fold TEXT NOT NULL,
    PRIMARY KEY (ledger_key, events)
);
CREATE INDEX ledger_fold_snapshots_created ON ledger_fold_snapshots (ledger_key, created);
-- Invoices and payments now keep their folds too: one recorded before has to be re-folded from
-- its events (a NULL fold) rather than taken as new.
INSERT INTO ledger_folds (ledger_key, fold)
    SELECT DISTINCT ledger_key, NULL FROM ledger_event_keys k
    WHERE NOT EXISTS (SELECT 1 FROM ledger_folds f WHERE f.ledger_key = k.ledger_key);
