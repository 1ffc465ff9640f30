//! Opens the configured backends of the two seams.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{LogBackend, Settings, StoreBackend};
use crate::log::embedded::{EmbeddedLog, EmbeddedLogOptions};
use crate::log::kafka::KafkaLog;
use crate::log::{LogError, MessageLog};
use crate::store::cassandra::CassandraStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The message log could not be opened.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the embedded message log and SQLite store under `settings.data_dir`.
pub async fn open_embedded(settings: &Settings) -> Result<(Arc<dyn MessageLog>, Arc<dyn Store>), BackendError> {
    let log = open_embedded_log(settings).await?;
    let store = SqliteStore::open(&settings.store_path()).await?;
    Ok((Arc::new(log), Arc::new(store)))
}

/// Opens the configured backends: the message log chosen by `log.backend`, and the store
/// chosen by `store.backend`.
pub async fn open(settings: &Settings) -> Result<(Arc<dyn MessageLog>, Arc<dyn Store>), BackendError> {
    let log = open_log(settings).await?;
    let store = open_store(settings).await?;
    Ok((log, store))
}

/// Opens the store chosen by `store.backend`.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match settings.store.backend {
        StoreBackend::Sqlite => Arc::new(SqliteStore::open(&settings.store_path()).await?),
        StoreBackend::Cassandra => Arc::new(CassandraStore::open(&settings.store.cassandra).await?),
    })
}

/// Opens the message log chosen by `log.backend`.
pub async fn open_log(settings: &Settings) -> Result<Arc<dyn MessageLog>, LogError> {
    Ok(match settings.log.backend {
        LogBackend::Embedded => Arc::new(open_embedded_log(settings).await?),
        LogBackend::Kafka => Arc::new(KafkaLog::open(&settings.log.kafka, settings.log.partitions).await?),
    })
}

async fn open_embedded_log(settings: &Settings) -> Result<EmbeddedLog, LogError> {
    let options = EmbeddedLogOptions {
        partitions: settings.log.partitions,
        segment_bytes: settings.log.segment_bytes,
    };
    let dir = settings.log_dir();
    // The previous owner may still be letting go (a process exiting as its successor starts,
    // or the tasks of a stack stopped in this process being dropped): its lock is waited for.
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        let (path, options) = (dir.clone(), options.clone());
        match tokio::task::spawn_blocking(move || EmbeddedLog::open(&path, &options))
            .await
            .map_err(|err| LogError::Io(std::io::Error::other(err)))?
        {
            Err(LogError::Locked(_)) if tokio::time::Instant::now() < deadline => {
                tracing::info!(dir = %dir.display(), "log locked by another owner; waiting for it to let go");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            opened => return opened,
        }
    }
}

/// How long a locked embedded log is waited for before the start fails.
const LOCK_WAIT: Duration = Duration::from_secs(10);
