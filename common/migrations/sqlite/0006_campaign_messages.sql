-- Schema version 6: a campaign's messages, for its live counts by status.

-- Only messages of a campaign are indexed. Status changes do not touch this index (its
-- columns never change), so it costs one B-tree insert per campaign message, at the claim.
CREATE INDEX messages_by_campaign ON messages (tenant_id, campaign_id) WHERE campaign_id IS NOT NULL;
