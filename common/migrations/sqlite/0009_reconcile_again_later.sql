-- Schema version 9: a message reconciliation has asked about waits its turn again.
--
-- reconcile_at is when stuck_messages last returned the message (NULL: never). A message is
-- due for reconciliation from the later of its last change and that time, so one the provider
-- cannot settle yet (no answer, no provider id) goes to the back of the line instead of taking
-- the first places of every run and starving the messages after it. The reconciliation index
-- orders by that time; it still covers only `sent` and `unknown`.
ALTER TABLE messages ADD COLUMN reconcile_at INTEGER;
DROP INDEX messages_in_flight;
CREATE INDEX messages_in_flight ON messages (status, max(updated_at, ifnull(reconcile_at, 0)))
    WHERE status = 'sent' OR status = 'unknown';
