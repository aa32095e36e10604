DROP TABLE ledger_fold_snapshots;
