-- A drift report between the ledger and Stripe's lists, run as a job: where it stands (which
-- resources are done, with their differences) is kept here, so a run that stops resumes at the
-- first resource it had not finished.
CREATE TABLE reconcile_runs (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    status TEXT NOT NULL,
    repair BOOLEAN NOT NULL,
    report TEXT NOT NULL,
    error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX reconcile_runs_connection ON reconcile_runs (connection_id, created_at);
