-- Schema version 12: recipients' opt-ins with their proof (where the consent came from, when,
-- and the wording shown), one per tenant, recipient and channel.
CREATE TABLE IF NOT EXISTS consents (
  tenant_id TEXT NOT NULL,
  recipient TEXT NOT NULL,
  channel TEXT NOT NULL,
  source TEXT NOT NULL,
  wording TEXT,
  given_at INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, recipient, channel)
) WITHOUT ROWID;
