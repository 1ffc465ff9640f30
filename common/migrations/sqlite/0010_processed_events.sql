-- Schema version 10: provider events already processed (an inbound message's Twilio
-- MessageSid, an SES event's SNS MessageId).
--
-- A webhook replayed with a valid signature (Twilio's signatures carry no time) must not apply
-- a START, a STOP or a bounce a second time. Rows older than the retention (400 days) are
-- removed as new ones come.
CREATE TABLE processed_events (
    tenant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
) WITHOUT ROWID;
CREATE INDEX processed_events_by_time ON processed_events (processed_ms);
