-- The audit log page filters by actor or by action and lists newest first (by id, which is
-- time-ordered): one index each, so a filter on a long log reads only its own entries.
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
