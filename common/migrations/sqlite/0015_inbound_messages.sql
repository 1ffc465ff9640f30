-- Schema version 15: inbound messages (SMS and WhatsApp) as received, one per provider id,
-- listed newest first.
CREATE TABLE IF NOT EXISTS inbound_messages (
  tenant_id TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  from_address TEXT NOT NULL,
  to_address TEXT,
  body TEXT NOT NULL,
  media_urls TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, provider_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbound_messages_by_time ON inbound_messages (tenant_id, received_at, provider_id);
