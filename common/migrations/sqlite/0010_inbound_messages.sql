-- Schema version 10: inbound messages already processed, by Twilio's MessageSid.
--
-- A webhook replayed with a valid signature (Twilio's signatures carry no time) must not apply
-- a START or STOP a second time. Rows older than the retention are removed as new ones come.
CREATE TABLE inbound_messages (
    tenant_id TEXT NOT NULL,
    message_sid TEXT NOT NULL,
    processed_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, message_sid)
) WITHOUT ROWID;
CREATE INDEX inbound_messages_by_time ON inbound_messages (processed_ms);
