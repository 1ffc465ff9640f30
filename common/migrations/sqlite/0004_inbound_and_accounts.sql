-- Schema version 4: the WhatsApp 24-hour window, and webhook lookups by provider account.

-- When each contact last wrote to a tenant (any channel, by address): WhatsApp free-form
-- messages may only go out within 24 hours of it. One row per contact, overwritten.
CREATE TABLE inbound_contacts (
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    address         TEXT    NOT NULL,
    last_inbound_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, address)
) WITHOUT ROWID;

-- A status callback names only its Twilio account: its signature is checked with the token
-- of the credentials holding that account.
CREATE INDEX channel_credentials_by_account
    ON channel_credentials (json_extract(settings, '$.account_sid'))
    WHERE json_extract(settings, '$.account_sid') IS NOT NULL;
