-- Schema version 14: campaign messages held until their channel is ready
-- (`when_not_ready: "hold"`), each the encoded envelope the release appends to the log.
CREATE TABLE IF NOT EXISTS held_messages (
  tenant_id TEXT NOT NULL,
  campaign_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  message_id TEXT NOT NULL,
  envelope BLOB NOT NULL,
  held_at INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, campaign_id, channel, message_id)
) WITHOUT ROWID;
