//! Reading the legacy installation's SQLite database, opened read-only.
//!
//! The tables are the seed's (part 1): `tenant_business_info`, `tenant_10dlc_brands`,
//! `tenant_channel_credentials_v2`, `sms_phone_pool`, `message_provider_mappings`, and the
//! columns its `ALTER TABLE` statements add to `tenants`, `campaigns`, `messages` and
//! `contacts`. The seed does not print those four base tables, nor the WhatsApp templates; what
//! is read of them is every column the seed names plus `id`, `tenant_id`, `name`,
//! `created_at`, `updated_at`, `status`, `campaign_id`, `contact_id`, `email`, and
//! `whatsapp_templates (id, tenant_id, name, twilio_content_sid, status)`. A row is read as a
//! map of its columns, so a column the installation lacks reads as absent instead of failing
//! the run, and a table it lacks reads as empty.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime, macros::format_description};

/// Why the legacy database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// SQLite failed (not a database, locked, a query).
    #[error("legacy database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A table every installation has is missing.
    #[error("legacy database has no `{0}` table: is this an EngageNinja database?")]
    MissingTable(&'static str),
    /// A read's thread ended without an answer.
    #[error("legacy database read stopped: {0}")]
    Stopped(String),
}

/// One legacy row: its columns by name (NULLs left out).
#[derive(Debug, Clone, Default)]
pub struct Record(BTreeMap<String, Value>);

impl Record {
    /// A text column (integers and reals as their decimal text).
    pub fn text(&self, column: &str) -> Option<String> {
        match self.0.get(column)? {
            Value::Text(text) => Some(text.trim().to_owned()).filter(|text| !text.is_empty()),
            Value::Integer(value) => Some(value.to_string()),
            Value::Real(value) => Some(value.to_string()),
            Value::Null | Value::Blob(_) => None,
        }
    }

    /// An integer column (text holding an integer counts).
    pub fn integer(&self, column: &str) -> Option<i64> {
        match self.0.get(column)? {
            Value::Integer(value) => Some(*value),
            Value::Real(value) => Some(*value as i64),
            Value::Text(text) => text.trim().parse().ok(),
            Value::Null | Value::Blob(_) => None,
        }
    }

    /// A BOOLEAN column as SQLite keeps it (0/1, or `true`/`false` text).
    pub fn flag(&self, column: &str) -> bool {
        match self.0.get(column) {
            Some(Value::Text(text)) => matches!(text.trim().to_ascii_lowercase().as_str(), "1" | "true" | "t" | "yes"),
            _ => self.integer(column).is_some_and(|value| value != 0),
        }
    }

    /// Whether the column holds a value.
    pub fn has(&self, column: &str) -> bool {
        self.0.contains_key(column)
    }

    /// A TIMESTAMP column: RFC 3339, SQLite's `YYYY-MM-DD HH:MM:SS[.SSS]` (UTC), or Unix
    /// seconds or milliseconds.
    pub fn time(&self, column: &str) -> Option<OffsetDateTime> {
        match self.0.get(column)? {
            Value::Integer(value) => unix(*value),
            Value::Real(value) => unix(*value as i64),
            Value::Text(text) => parse_time(text.trim()),
            Value::Null | Value::Blob(_) => None,
        }
    }
}

fn unix(value: i64) -> Option<OffsetDateTime> {
    // Seconds until the year 5138; milliseconds beyond.
    if value.abs() < 100_000_000_000 {
        OffsetDateTime::from_unix_timestamp(value).ok()
    } else {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(value) * 1_000_000).ok()
    }
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at);
    }
    let sqlite = format_description!(
        version = 2,
        "[year]-[month]-[day][first [T][ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    if let Ok(at) = PrimitiveDateTime::parse(text.trim_end_matches('Z'), &sqlite) {
        return Some(at.assume_utc());
    }
    let date = format_description!("[year]-[month]-[day]");
    if let Ok(day) = time::Date::parse(text, &date) {
        return Some(day.midnight().assume_utc());
    }
    text.parse::<i64>().ok().and_then(unix)
}

/// Everything of one tenant the importer maps.
#[derive(Debug, Default)]
pub struct TenantRows {
    /// The `tenants` row.
    pub tenant: Record,
    /// Its `tenant_business_info` row.
    pub business_info: Option<Record>,
    /// Its `tenant_10dlc_brands` row.
    pub brand: Option<Record>,
    /// Its `tenant_channel_credentials_v2` rows.
    pub credentials: Vec<Record>,
    /// Its `sms_phone_pool` rows.
    pub numbers: Vec<Record>,
    /// Its `contacts` rows.
    pub contacts: Vec<Record>,
    /// Its `campaigns` rows.
    pub campaigns: Vec<Record>,
    /// Its `whatsapp_templates` rows.
    pub templates: Vec<Record>,
}

/// The legacy database, read-only; each read runs on the blocking pool.
#[derive(Clone)]
pub struct LegacyDb {
    conn: Arc<Mutex<Reader>>,
}

impl LegacyDb {
    /// Opens `path` read-only; fails if it has no `tenants` table.
    pub async fn open(path: &Path) -> Result<LegacyDb, LegacyError> {
        let path = path.to_owned();
        let reader = tokio::task::spawn_blocking(move || {
            let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let reader = Reader { conn };
            if !reader.has_table("tenants")? {
                return Err(LegacyError::MissingTable("tenants"));
            }
            Ok(reader)
        })
        .await
        .map_err(|error| LegacyError::Stopped(error.to_string()))??;
        Ok(LegacyDb {
            conn: Arc::new(Mutex::new(reader)),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Reader) -> Result<T, LegacyError> + Send + 'static,
    ) -> Result<T, LegacyError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let reader = conn
                .lock()
                .map_err(|_| LegacyError::Stopped("a read panicked".to_owned()))?;
            read(&reader)
        })
        .await
        .map_err(|error| LegacyError::Stopped(error.to_string()))?
    }

    /// The tenant ids, in order.
    pub async fn tenant_ids(&self) -> Result<Vec<String>, LegacyError> {
        self.read(Reader::tenant_ids).await
    }

    /// Everything of tenant `id` but its messages.
    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRows>, LegacyError> {
        let id = id.to_owned();
        self.read(move |reader| reader.tenant(&id)).await
    }

    /// Up to `limit` of tenant `id`'s messages after SQLite row `after`, each with its
    /// provider mapping's `provider_message_id` and `provider_status`; answers them with
    /// the last row read.
    pub async fn messages(
        &self,
        id: &str,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<i64>), LegacyError> {
        let id = id.to_owned();
        self.read(move |reader| reader.messages(&id, after, limit)).await
    }
}

/// The connection and the queries, run on a blocking thread.
struct Reader {
    conn: Connection,
}

impl Reader {
    fn has_table(&self, table: &str) -> Result<bool, LegacyError> {
        let found: i64 = self.conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get(0),
        )?;
        Ok(found > 0)
    }

    /// Rows of `sql` (with `params`) as records; none when `table` does not exist.
    fn records(&self, table: &str, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Record>, LegacyError> {
        if !self.has_table(table)? {
            return Ok(Vec::new());
        }
        let mut statement = self.conn.prepare(sql)?;
        let names: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
        let rows = statement.query_map(params, |row| {
            let mut record = BTreeMap::new();
            for (index, name) in names.iter().enumerate() {
                let value: Value = row.get(index)?;
                if value != Value::Null {
                    record.insert(name.clone(), value);
                }
            }
            Ok(Record(record))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn tenant_ids(&self) -> Result<Vec<String>, LegacyError> {
        let mut statement = self.conn.prepare("SELECT id FROM tenants ORDER BY id")?;
        let ids = statement.query_map([], |row| row.get::<_, String>(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    fn tenant(&self, id: &str) -> Result<Option<TenantRows>, LegacyError> {
        let Some(tenant) = self
            .records("tenants", "SELECT * FROM tenants WHERE id = ?1", [id])?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let one = |table: &str| -> Result<Option<Record>, LegacyError> {
            Ok(self
                .records(
                    table,
                    &format!("SELECT * FROM {table} WHERE tenant_id = ?1 LIMIT 1"),
                    [id],
                )?
                .into_iter()
                .next())
        };
        let all = |table: &str, order: &str| {
            self.records(
                table,
                &format!("SELECT * FROM {table} WHERE tenant_id = ?1 ORDER BY {order}"),
                [id],
            )
        };
        Ok(Some(TenantRows {
            tenant,
            business_info: one("tenant_business_info")?,
            brand: one("tenant_10dlc_brands")?,
            credentials: all("tenant_channel_credentials_v2", "channel")?,
            numbers: all("sms_phone_pool", "phone_number")?,
            contacts: all("contacts", "id")?,
            campaigns: all("campaigns", "id")?,
            templates: all("whatsapp_templates", "id")?,
        }))
    }

    fn messages(&self, id: &str, after: i64, limit: usize) -> Result<(Vec<Record>, Option<i64>), LegacyError> {
        let mapping = if self.has_table("message_provider_mappings")? {
            "(SELECT provider_message_id FROM message_provider_mappings p WHERE p.message_id = m.id \
               ORDER BY p.updated_at DESC LIMIT 1) AS provider_message_id, \
             (SELECT provider_status FROM message_provider_mappings p WHERE p.message_id = m.id \
               ORDER BY p.updated_at DESC LIMIT 1) AS provider_status"
        } else {
            "NULL AS provider_message_id, NULL AS provider_status"
        };
        let sql = format!(
            "SELECT m.rowid AS legacy_rowid, m.*, {mapping} FROM messages m \
             WHERE m.tenant_id = ?1 AND m.rowid > ?2 ORDER BY m.rowid LIMIT ?3"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.records("messages", &sql, rusqlite::params![id, after, limit])?;
        let last = rows.last().and_then(|row| row.integer("legacy_rowid"));
        Ok((rows, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_read_in_every_shape_sqlite_holds() {
        let expected = OffsetDateTime::from_unix_timestamp(1_766_241_000).unwrap();
        let mut record = Record::default();
        for (column, value) in [
            ("rfc", Value::Text("2025-12-20T14:30:00Z".to_owned())),
            ("sqlite", Value::Text("2025-12-20 14:30:00".to_owned())),
            ("seconds", Value::Integer(1_766_241_000)),
            ("millis", Value::Integer(1_766_241_000_000)),
            ("day", Value::Text("2025-12-20".to_owned())),
        ] {
            record.0.insert(column.to_owned(), value);
        }
        for column in ["rfc", "sqlite", "seconds", "millis"] {
            assert_eq!(record.time(column), Some(expected), "{column}");
        }
        assert_eq!(
            record.time("day"),
            Some(OffsetDateTime::from_unix_timestamp(1_766_188_800).unwrap())
        );
        assert_eq!(record.time("absent"), None);
    }
}
