DROP TABLE ledger_folds;
