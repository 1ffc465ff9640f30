-- The reconciliation job looks for messages stuck in a status since before a time.
CREATE INDEX messages_by_status_updated ON messages (status, updated_at);
