-- Schema version 13: a tenant's messaging settings as JSON (whether marketing needs an opt-in,
-- the replies to HELP, STOP and START); NULL until set, which means the defaults.
ALTER TABLE tenants ADD COLUMN settings TEXT;
