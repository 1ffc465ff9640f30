-- EngageNinja Dispatch, embedded store: initial schema.
--
-- Conventions:
-- * Timestamps are INTEGER unix milliseconds (UTC); sub-millisecond precision is dropped.
-- * Enums are TEXT holding their stable snake_case names; JSON values are TEXT.
-- * Set-up tables (keys, business info, brand, numbers, credentials) reference tenants with
--   ON DELETE CASCADE. Tables written on the dispatch path (messages, message_status_history,
--   provider_message_ids, usage, suppressions, audit_log) carry tenant_id without a foreign key:
--   a message or callback of a tenant that was just deleted must never fail a whole batch, and
--   the foreign-key probes cost about a fifth of the dispatch path's write throughput. History
--   and provider ids are only ever written in the transaction that reads or writes their
--   message. delete_tenant removes the rows of these tables explicitly, in its transaction.

CREATE TABLE tenants (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    is_demo     INTEGER NOT NULL CHECK (is_demo IN (0, 1)),
    status      TEXT    NOT NULL,
    plan_id     TEXT,
    created_by  TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX tenants_demo_created_at ON tenants (created_at) WHERE is_demo = 1;

CREATE TABLE api_keys (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id      TEXT    NOT NULL,
    secret_hash TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    PRIMARY KEY (tenant_id, key_id)
);

CREATE TABLE business_info (
    tenant_id   TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    data        TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE brands (
    tenant_id         TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    status            TEXT    NOT NULL,
    status_reason     TEXT,
    trust_score       INTEGER,
    workflow_step     TEXT    NOT NULL,
    workflow_attempts INTEGER NOT NULL,
    twilio_sids       TEXT    NOT NULL,
    updated_at        INTEGER NOT NULL,
    approved_at       INTEGER
);

-- A number belongs to one tenant at a time.
CREATE TABLE sender_numbers (
    number          TEXT    NOT NULL PRIMARY KEY,
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    twilio_sid      TEXT,
    rate_per_second REAL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX sender_numbers_tenant ON sender_numbers (tenant_id);

CREATE TABLE channel_credentials (
    tenant_id          TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel            TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    settings           TEXT    NOT NULL,
    key_id             TEXT    NOT NULL,
    sealed_secrets     BLOB    NOT NULL,
    is_verified        INTEGER NOT NULL CHECK (is_verified IN (0, 1)),
    verification_error TEXT,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, channel)
);

-- monthly_quota: JSON object channel name -> quota.
CREATE TABLE plans (
    id            TEXT NOT NULL PRIMARY KEY,
    name          TEXT NOT NULL,
    monthly_quota TEXT NOT NULL
);

-- period: YYYY-MM.
CREATE TABLE usage (
    tenant_id TEXT    NOT NULL,
    channel   TEXT    NOT NULL,
    period    TEXT    NOT NULL,
    count     INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (tenant_id, channel, period)
) WITHOUT ROWID;

CREATE TABLE suppressions (
    tenant_id  TEXT    NOT NULL,
    address    TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    source     TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, address)
) WITHOUT ROWID;

-- last_seq: the seq of the message's newest history entry (0 for the first, `queued`).
CREATE TABLE messages (
    tenant_id           TEXT    NOT NULL,
    message_id          TEXT    NOT NULL,
    campaign_id         TEXT,
    channel             TEXT    NOT NULL,
    recipient           TEXT    NOT NULL,
    priority            TEXT    NOT NULL,
    segments            INTEGER NOT NULL,
    status              TEXT    NOT NULL,
    reason              TEXT,
    provider_message_id TEXT,
    accepted_at         INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    last_seq            INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
) WITHOUT ROWID;

CREATE TABLE message_status_history (
    tenant_id  TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    status     TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    reason     TEXT,
    PRIMARY KEY (tenant_id, message_id, seq)
) WITHOUT ROWID;

CREATE TABLE provider_message_ids (
    provider_message_id TEXT NOT NULL PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    message_id          TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX provider_message_ids_message ON provider_message_ids (tenant_id, message_id);

-- tenant_id is NULL for platform-wide actions; detail is JSON.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    tenant_id TEXT,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    detail    TEXT    NOT NULL
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);
