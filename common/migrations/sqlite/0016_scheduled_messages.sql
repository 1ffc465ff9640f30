-- Schema version 16: messages scheduled further ahead than the dispatcher keeps in memory,
-- each the encoded envelope the release appends to the log once it is due. `releasing` is set
-- when the release takes it: from then on it cannot be canceled.
CREATE TABLE IF NOT EXISTS scheduled_messages (
  tenant_id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  campaign_id TEXT,
  due_at INTEGER NOT NULL,
  envelope BLOB NOT NULL,
  releasing INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS scheduled_messages_by_due ON scheduled_messages (due_at);
CREATE INDEX IF NOT EXISTS scheduled_messages_by_campaign
  ON scheduled_messages (tenant_id, campaign_id, message_id);
