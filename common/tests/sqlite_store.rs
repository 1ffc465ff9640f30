//! What only the embedded SQLite store has: migrations are applied once and a newer schema is
//! refused, data survives a reopen, undecodable rows are reported, deletion row by row, and a
//! version 2 database migrates. The behaviour every store shares is in `store_behaviour.rs`,
//! which runs against SQLite and Cassandra.

use std::path::{Path, PathBuf};

use common::store::sqlite::{SCHEMA_VERSION, SqliteStore};
use common::store::{
    AuditStore, MessageStore, NewMessage, OnboardingStore, StatusUpdate, StoreError, TenantStore, UsageStore,
};
use common::{CampaignId, Channel, MessageStatus, Priority};

mod store_support;

use store_support::*;

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join("store.db")
}

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap()
}

fn migration_files() -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join("sqlite");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|ext| ext == "sql")
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// Migrations and durability.

#[tokio::test]
async fn open_creates_the_file_and_applies_every_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(path.exists());
    assert_eq!(user_version(&path), i64::try_from(migration_files()).unwrap());
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    drop(store);
}

#[tokio::test]
async fn open_on_an_existing_empty_file_applies_the_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::File::create(&path).unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
}

#[tokio::test]
async fn reopen_keeps_the_data_and_does_not_reapply_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
        assert_eq!(
            store.claim_messages(&[new_message("acme", "m1", T0)]).await.unwrap(),
            vec![true]
        );
        let applied = store
            .apply_status(&[update("acme", "m1", MessageStatus::Sent, T0 + 1, Some("SM1"))])
            .await
            .unwrap();
        assert_eq!(applied, vec![true]);
        assert_eq!(
            store.add_usage(&tid("acme"), Channel::Sms, "2026-01", 5).await.unwrap(),
            5
        );
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    assert_eq!(
        store.tenant(&tid("acme")).await.unwrap(),
        Some(tenant("acme", false, T0))
    );
    let message = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!(message.status, MessageStatus::Sent);
    assert_eq!(message.history.len(), 2);
    assert_eq!(store.usage(&tid("acme"), Channel::Sms, "2026-01").await.unwrap(), 5);
    // The unique key is the final guard: a second claim of the id (another record) is refused
    // and the first one stands.
    let again = NewMessage {
        position: position(1, 99),
        ..new_message("acme", "m1", T0 + 5)
    };
    assert_eq!(store.claim_messages(&[again]).await.unwrap(), vec![false]);
    let claim = store.claims(&[(tid("acme"), mid("m1"))]).await.unwrap()[0].unwrap();
    assert_eq!(
        (claim.position, claim.status, claim.accepted_at),
        (Some(position(0, 0)), MessageStatus::Sent, at(T0))
    );
    // And a third open, on a database that is already current.
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(store.tenant(&tid("acme")).await.unwrap().is_some());
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    match SqliteStore::open(&path).await {
        Err(StoreError::Invalid(message)) => {
            assert_eq!(
                message,
                format!("database schema version 999 is newer than this build ({SCHEMA_VERSION})")
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn undecodable_stored_values_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE tenants SET status = 'weird' WHERE id = 'acme'", [])
            .unwrap();
    }
    assert!(matches!(store.tenant(&tid("acme")).await, Err(StoreError::Invalid(_))));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE tenants SET status = 'active', id = 'not an id' WHERE id = 'acme'",
            [],
        )
        .unwrap();
    }
    assert!(matches!(store.demo_tenants_created_before(at(T0 + 1)).await, Ok(v) if v.is_empty()));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE tenants SET is_demo = 1", []).unwrap();
    }
    assert!(matches!(
        store.demo_tenants_created_before(at(T0 + 1)).await,
        Err(StoreError::Invalid(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Deletion, row by row.

fn count_rows(path: &Path, table: &str, tenant_column: &str, tenant: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        &format!("SELECT count(*) FROM {table} WHERE {tenant_column} = ?1"),
        [tenant],
        |row| row.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn deleting_a_tenant_removes_everything_it_owns_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    populate(&store, "acme").await;
    populate(&store, "other").await;
    store
        .append_audit(&audit_entry(None, T0, "platform.thing"))
        .await
        .unwrap();

    let tables = [
        ("tenants", "id"),
        ("api_keys", "tenant_id"),
        ("business_info", "tenant_id"),
        ("brands", "tenant_id"),
        ("sender_numbers", "tenant_id"),
        ("channel_credentials", "tenant_id"),
        ("usage", "tenant_id"),
        ("suppressions", "tenant_id"),
        ("messages", "tenant_id"),
        ("message_status_history", "tenant_id"),
        ("audit_log", "tenant_id"),
    ];
    for (table, column) in tables {
        assert!(
            count_rows(&path, table, column, "acme") > 0,
            "{table} has no acme row to delete"
        );
    }

    assert!(store.delete_tenant(&tid("acme")).await.unwrap());
    assert!(!store.delete_tenant(&tid("acme")).await.unwrap());

    for (table, column) in tables {
        assert_eq!(
            count_rows(&path, table, column, "acme"),
            0,
            "{table} still has acme rows"
        );
        assert!(
            count_rows(&path, table, column, "other") > 0,
            "{table} lost other's rows"
        );
    }
    let acme = tid("acme");
    assert_eq!(store.tenant(&acme).await.unwrap(), None);
    assert_eq!(store.api_key_by_hash("hash-acme").await.unwrap(), None);
    assert_eq!(store.message(&acme, &mid("m1")).await.unwrap(), None);
    assert_eq!(store.usage(&acme, Channel::Sms, "2026-01").await.unwrap(), 0);

    // The other tenant is intact, and the freed number can be taken.
    let other = tid("other");
    assert!(store.tenant(&other).await.unwrap().is_some());
    assert!(store.api_key_by_hash("hash-other").await.unwrap().is_some());
    assert!(store.brand(&other).await.unwrap().is_some());
    assert_eq!(
        store.message(&other, &mid("m1")).await.unwrap().unwrap().history.len(),
        2
    );
    assert_eq!(store.audit(&other, 10).await.unwrap().len(), 1);
    store
        .put_sender_number(&sender_number("other", "+14155550100"))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let platform: i64 = conn
        .query_row("SELECT count(*) FROM audit_log WHERE tenant_id IS NULL", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(platform, 1);
}

#[tokio::test]
async fn the_history_view_keeps_the_version_2_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    store.claim_messages(&[new_message("acme", "m1", T0)]).await.unwrap();
    let mut failed = update("acme", "m1", MessageStatus::Failed, T0 + 2, Some("SM1"));
    failed.reason = Some("30005".to_owned());
    store
        .apply_status(&[update("acme", "m1", MessageStatus::Sent, T0 + 1, None), failed])
        .await
        .unwrap();
    assert_eq!(
        history_rows(&path),
        vec![
            ("acme".to_owned(), "m1".to_owned(), 0, "queued".to_owned(), T0, None),
            ("acme".to_owned(), "m1".to_owned(), 1, "sent".to_owned(), T0 + 1, None),
            (
                "acme".to_owned(),
                "m1".to_owned(),
                2,
                "failed".to_owned(),
                T0 + 2,
                Some("30005".to_owned())
            ),
        ]
    );
}

/// A row of message_status_history: tenant, message, seq, status, at, reason.
type HistoryRow = (String, String, i64, String, i64, Option<String>);

fn history_rows(path: &Path) -> Vec<HistoryRow> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT tenant_id, message_id, seq, status, at, reason FROM message_status_history \
             ORDER BY tenant_id, message_id, seq",
        )
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Migrating a version 2 database.

/// The statements the version 2 store wrote messages with, verbatim.
mod v2 {
    pub(crate) const INSERT_MESSAGE: &str = "INSERT INTO messages (tenant_id, message_id, campaign_id, channel, recipient, \
                                      priority, segments, status, reason, provider_message_id, accepted_at, \
                                      updated_at, last_seq) \
                                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', NULL, NULL, ?8, ?8, 0) \
                                      ON CONFLICT (tenant_id, message_id) DO NOTHING";
    pub(crate) const SELECT_MESSAGE_STATUS: &str =
        "SELECT status, last_seq FROM messages WHERE tenant_id = ?1 AND message_id = ?2";
    pub(crate) const UPDATE_MESSAGE_STATUS: &str = "UPDATE messages SET status = ?3, reason = ?4, updated_at = ?5, \
                                             provider_message_id = coalesce(?6, provider_message_id), \
                                             last_seq = ?7 WHERE tenant_id = ?1 AND message_id = ?2";
    pub(crate) const INSERT_HISTORY: &str = "INSERT INTO message_status_history (tenant_id, message_id, seq, status, at, \
                                      reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    pub(crate) const UPSERT_PROVIDER_ID: &str = "INSERT INTO provider_message_ids (provider_message_id, tenant_id, \
                                          message_id) VALUES (?1, ?2, ?3) ON CONFLICT (provider_message_id) DO \
                                          UPDATE SET tenant_id = excluded.tenant_id, \
                                          message_id = excluded.message_id";
}

/// Creates a version 2 database at `path`, from the version 1 and 2 migrations.
fn create_v2(path: &Path) -> rusqlite::Connection {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join("sqlite");
    let mut conn = rusqlite::Connection::open(path).unwrap();
    for file in ["0001_initial.sql", "0002_stuck_messages.sql"] {
        let sql = std::fs::read_to_string(dir.join(file)).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(&sql).unwrap();
        tx.commit().unwrap();
    }
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn
}

/// Claims a message the way the version 2 store did.
fn v2_claim(conn: &rusqlite::Connection, message: &NewMessage) {
    let accepted_ms = i64::try_from(message.accepted_at.unix_timestamp_nanos() / 1_000_000).unwrap();
    let inserted = conn
        .execute(
            v2::INSERT_MESSAGE,
            rusqlite::params![
                message.tenant_id.as_str(),
                message.message_id.as_str(),
                message.campaign_id.as_ref().map(CampaignId::as_str),
                message.channel.as_str(),
                message.recipient,
                message.priority.as_str(),
                message.segments,
                accepted_ms,
            ],
        )
        .unwrap();
    assert_eq!(inserted, 1);
    conn.execute(
        v2::INSERT_HISTORY,
        rusqlite::params![
            message.tenant_id.as_str(),
            message.message_id.as_str(),
            0_i64,
            "queued",
            accepted_ms,
            None::<&str>
        ],
    )
    .unwrap();
}

/// Applies a status change the way the version 2 store did (the rule checked in Rust).
fn v2_apply(conn: &rusqlite::Connection, change: &StatusUpdate) -> bool {
    let (tenant, id) = (change.tenant_id.as_str(), change.message_id.as_str());
    let (status, last_seq): (String, i64) = conn
        .query_row(v2::SELECT_MESSAGE_STATUS, [tenant, id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    if !status.parse::<MessageStatus>().unwrap().can_advance_to(change.status) {
        return false;
    }
    let at_ms = i64::try_from(change.at.unix_timestamp_nanos() / 1_000_000).unwrap();
    let seq = last_seq + 1;
    conn.execute(
        v2::UPDATE_MESSAGE_STATUS,
        rusqlite::params![
            tenant,
            id,
            change.status.as_str(),
            change.reason,
            at_ms,
            change.provider_message_id,
            seq
        ],
    )
    .unwrap();
    conn.execute(
        v2::INSERT_HISTORY,
        rusqlite::params![tenant, id, seq, change.status.as_str(), at_ms, change.reason],
    )
    .unwrap();
    if let Some(provider_id) = &change.provider_message_id {
        conn.execute(v2::UPSERT_PROVIDER_ID, [provider_id.as_str(), tenant, id])
            .unwrap();
    }
    true
}

#[tokio::test]
async fn a_version_2_database_migrates_and_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let odd_reason = "he said \"stop\", then \\ ✓ ]";
    {
        let conn = create_v2(&path);
        conn.execute(
            "INSERT INTO tenants (id, name, is_demo, status, plan_id, created_by, created_at) \
             VALUES ('acme', 'Tenant acme', 0, 'active', 'starter', NULL, ?1)",
            [T0],
        )
        .unwrap();
        // Claimed in an order that differs from both the key order and the acceptance order.
        v2_claim(&conn, &new_message("acme", "m3", T0 + 3));
        v2_claim(&conn, &new_message("acme", "m1", T0 + 1));
        v2_claim(
            &conn,
            &NewMessage {
                campaign_id: None,
                channel: Channel::Email,
                recipient: "ana@example.com".to_owned(),
                priority: Priority::Transactional,
                segments: 1,
                ..new_message("acme", "m2", T0 + 2)
            },
        );
        v2_claim(&conn, &new_message("other", "m1", T0));
        v2_claim(&conn, &new_message("acme", "m4", T0 + 4));
        let mut failed = update("acme", "m3", MessageStatus::Failed, T0 + 30, Some("SM3"));
        failed.reason = Some(odd_reason.to_owned());
        let changes = [
            update("acme", "m1", MessageStatus::Sent, T0 + 10, Some("SM1-old")),
            update("acme", "m1", MessageStatus::Delivered, T0 + 11, Some("SM1")),
            update("acme", "m1", MessageStatus::Sent, T0 + 12, None),
            update("acme", "m3", MessageStatus::Unknown, T0 + 20, None),
            failed,
            update("other", "m1", MessageStatus::Sent, T0 + 5, Some("SM-other")),
        ];
        let applied: Vec<bool> = changes.iter().map(|change| v2_apply(&conn, change)).collect();
        assert_eq!(applied, [true, true, false, true, true, true]);
        // m4 lost its history rows (version 2 never did this; the migration must cope).
        conn.execute("DELETE FROM message_status_history WHERE message_id = 'm4'", [])
            .unwrap();
    }
    let v2_history = history_rows(&path);
    assert_eq!(v2_history.len(), 9);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));

    // Every message reads back as version 2 wrote it.
    let change = |status, ms, reason: Option<&str>| common::store::StatusChange {
        status,
        at: at(ms),
        reason: reason.map(str::to_owned),
    };
    let m1 = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!(
        m1,
        common::store::MessageRecord {
            tenant_id: tid("acme"),
            message_id: mid("m1"),
            campaign_id: Some(CampaignId::parse("spring-sale").unwrap()),
            channel: Channel::Sms,
            recipient: "+14155550100".to_owned(),
            priority: Priority::Marketing,
            segments: 2,
            status: MessageStatus::Delivered,
            reason: None,
            provider_message_id: Some("SM1".to_owned()),
            accepted_at: at(T0 + 1),
            updated_at: at(T0 + 11),
            history: vec![
                change(MessageStatus::Queued, T0 + 1, None),
                change(MessageStatus::Sent, T0 + 10, None),
                change(MessageStatus::Delivered, T0 + 11, None),
            ],
        }
    );
    let m2 = store.message(&tid("acme"), &mid("m2")).await.unwrap().unwrap();
    assert_eq!(
        (
            m2.campaign_id,
            m2.channel,
            m2.recipient.as_str(),
            m2.priority,
            m2.segments
        ),
        (None, Channel::Email, "ana@example.com", Priority::Transactional, 1)
    );
    assert_eq!((m2.status, m2.provider_message_id), (MessageStatus::Queued, None));
    assert_eq!(m2.history, vec![change(MessageStatus::Queued, T0 + 2, None)]);
    let m3 = store.message(&tid("acme"), &mid("m3")).await.unwrap().unwrap();
    assert_eq!(
        (
            m3.status,
            m3.reason.as_deref(),
            m3.provider_message_id.as_deref(),
            m3.updated_at
        ),
        (MessageStatus::Failed, Some(odd_reason), Some("SM3"), at(T0 + 30))
    );
    assert_eq!(
        m3.history,
        vec![
            change(MessageStatus::Queued, T0 + 3, None),
            change(MessageStatus::Unknown, T0 + 20, None),
            change(MessageStatus::Failed, T0 + 30, Some(odd_reason)),
        ]
    );
    let other = store.message(&tid("other"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!((other.status, other.history.len()), (MessageStatus::Sent, 2));
    let m4 = store.message(&tid("acme"), &mid("m4")).await.unwrap().unwrap();
    assert_eq!((m4.status, m4.history.len()), (MessageStatus::Queued, 0));

    // The history reads the same through the version 2 table name, now a view.
    assert_eq!(history_rows(&path), v2_history);

    // The provider-id index is gone (version 8); the message rows keep their provider ids.
    assert_eq!(count_rows(&path, "sqlite_master", "name", "provider_message_ids"), 0);
    for (provider_id, tenant, id) in [
        ("SM1", "acme", "m1"),
        ("SM3", "acme", "m3"),
        ("SM-other", "other", "m1"),
    ] {
        let record = store.message(&tid(tenant), &mid(id)).await.unwrap().unwrap();
        assert_eq!(
            record.provider_message_id.as_deref(),
            Some(provider_id),
            "{tenant}/{id}"
        );
    }
    // The reconciliation index was rebuilt.
    let stuck = store.stuck_messages(at(T0 + 1_000), 10).await.unwrap();
    assert_eq!(stuck.len(), 1);
    assert_eq!(
        (stuck[0].tenant_id.as_str(), stuck[0].message_id.as_str()),
        ("other", "m1")
    );

    // And the migrated messages go on: a second claim of theirs is refused, their claims read
    // back without a record (made before records were kept), changes follow the rule and extend
    // their history, new messages are claimed next to them.
    assert_eq!(
        store
            .claim_messages(&[
                new_message("acme", "m1", T0),
                new_message("acme", "m5", T0 + 50),
                new_message("acme", "m3", T0),
            ])
            .await
            .unwrap(),
        vec![false, true, false]
    );
    let claims: Vec<_> = store
        .claims(&[(tid("acme"), mid("m1")), (tid("acme"), mid("m3"))])
        .await
        .unwrap()
        .into_iter()
        .map(|claim| claim.map(|claim| (claim.position, claim.status)))
        .collect();
    assert_eq!(
        claims,
        [
            Some((None, MessageStatus::Delivered)),
            Some((None, MessageStatus::Failed))
        ]
    );
    let applied = store
        .apply_status(&[
            update("acme", "m2", MessageStatus::Sent, T0 + 60, Some("SM2")),
            update("acme", "m4", MessageStatus::Sent, T0 + 61, None),
            update("acme", "m1", MessageStatus::Read, T0 + 62, None),
            update("acme", "m3", MessageStatus::Delivered, T0 + 63, None),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, true, false]);
    let m2 = store.message(&tid("acme"), &mid("m2")).await.unwrap().unwrap();
    assert_eq!(
        m2.history,
        vec![
            change(MessageStatus::Queued, T0 + 2, None),
            change(MessageStatus::Sent, T0 + 60, None)
        ]
    );
    let m4 = store.message(&tid("acme"), &mid("m4")).await.unwrap().unwrap();
    assert_eq!(m4.history, vec![change(MessageStatus::Sent, T0 + 61, None)]);
    let m1 = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!(m1.history.len(), 4);
    assert_eq!(m2.provider_message_id.as_deref(), Some("SM2"));

    // Reopening does not migrate again.
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    assert_eq!(
        store
            .message(&tid("acme"), &mid("m2"))
            .await
            .unwrap()
            .unwrap()
            .history
            .len(),
        2
    );
}
