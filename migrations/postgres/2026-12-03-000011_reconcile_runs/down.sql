DROP INDEX reconcile_runs_connection;
DROP TABLE reconcile_runs;
