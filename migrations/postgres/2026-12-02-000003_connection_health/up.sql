-- A connection's webhook health (last event, events in the last 24 h) reads its newest events.
CREATE INDEX webhook_events_connection_received ON webhook_events (connection_id, received_at);
