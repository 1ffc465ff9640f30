-- Schema version 7: a message's claim names the log record that made it, and each log
-- partition keeps a journal of the ids claimed on it.
--
-- * messages.log_partition / log_offset: the record that claimed the message. A later record
--   with the same id (a resubmission, a producer's retry) is a duplicate of it; the same record
--   read again (a redelivery after a crash or a handover) is not. NULL for messages claimed
--   before this version.
-- * claim_journal: per log partition, the 64-bit hashes (little-endian, 8 bytes each) of the
--   ids about to be claimed there, written before the claims, in generations. The dispatcher
--   that owns the partition rebuilds its duplicate filters from it (dispatcher::claims), so
--   that a new id costs no read of messages.

ALTER TABLE messages ADD COLUMN log_partition INTEGER;
ALTER TABLE messages ADD COLUMN log_offset INTEGER;

CREATE TABLE claim_journal (
    log_partition INTEGER NOT NULL,
    generation    INTEGER NOT NULL,
    entry         INTEGER NOT NULL,
    hashes        BLOB    NOT NULL,
    PRIMARY KEY (log_partition, generation, entry)
) WITHOUT ROWID;
