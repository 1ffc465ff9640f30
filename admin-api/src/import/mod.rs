//! `import legacy`: brings an existing EngageNinja installation over from its SQLite database
//! (the seed's schema): tenants, business information, 10DLC brands and numbers, channel
//! credentials, contacts' consent, WhatsApp templates, campaigns and message history.
//!
//! Everything is written through the store seams, so the same run serves SQLite and Cassandra.
//! Each tenant is one unit: its row is written first as `suspended` (audited
//! `legacy_import.started`), then what it owns, and last it is made `active` and audited
//! `legacy_import.completed`. A run that stopped half way is run again: every item is written
//! only where it is absent (what is there, imported earlier or changed since, is kept), so a
//! tenant whose unit did not complete is completed, and a completed one only gains what the
//! legacy database gained meanwhile. Nothing is ever duplicated: messages are claimed under
//! their own ids, so history is never sent again, and a message id that reaches the log later
//! is a duplicate. `--dry-run` reads the store and writes nothing; the report then says what
//! would be created.
//!
//! Secrets are opened with the legacy key ([`secrets`]) and sealed at once under the key
//! ring's current key; a plaintext is never logged, reported or written anywhere else.
//! Imported credentials are checked against their provider in the background while the run
//! goes on, and the row records the outcome. The mapping itself is in `tenant.rs`.

pub mod legacy;
pub mod secrets;
mod tenant;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::config::Settings;
use common::credentials::{Keyring, KeyringError, keyring_from_settings};
use common::ses::SesClient;
use common::store::{Store, StoreError};
use common::twilio::TwilioClient;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use self::legacy::{LegacyDb, LegacyError};
use self::secrets::{LegacyKey, SecretError};
pub use self::tenant::{CredentialReport, IMPORTED_POSITION, Refusal, TenantOutcome, TenantReport};

/// Credential checks run at once, beside the import.
const CHECKS_AT_ONCE: usize = 4;

/// `import legacy`'s options.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "import legacy",
    about = "Imports an existing EngageNinja installation's SQLite database (tenants, brands, numbers, \
             credentials, consent, history) into this product's store"
)]
pub struct ImportArgs {
    /// The legacy SQLite database (opened read-only).
    #[arg(long, value_name = "FILE")]
    pub sqlite: PathBuf,
    /// The legacy encryption key: 48 hex characters (the AES-192 key of `iv:ciphertext`
    /// values), whose text is also the password of `createCipher` values.
    #[arg(long = "legacy-key-file", value_name = "KEYFILE")]
    pub legacy_key_file: PathBuf,
    /// Report what would happen, writing nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Import only these tenants (repeatable); all when absent.
    #[arg(long = "tenant", value_name = "ID")]
    pub tenants: Vec<String>,
    /// Where the JSON report goes; standard output when absent.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Settings file (TOML), as for the server.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Why the import could not run (a tenant that cannot be imported is reported, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The legacy database could not be read.
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    /// The legacy key file could not be read.
    #[error("legacy key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key ring could not be loaded.
    #[error("credential keys: {0}")]
    Keyring(#[from] KeyringError),
    /// The store failed; run the import again to resume.
    #[error("{0} (run the import again: it resumes where it stopped)")]
    Store(#[from] StoreError),
    /// A provider client could not be built from the settings.
    #[error("provider client: {0}")]
    Provider(String),
    /// The report could not be written.
    #[error("report {path}: {source}")]
    Report {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A tenant named with `--tenant` is not in the legacy database.
    #[error("tenant {0:?} is not in the legacy database")]
    UnknownTenant(String),
}

/// What a run did (or, dry, would do): the JSON report.
#[derive(Debug, Serialize)]
pub struct ImportReport {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The legacy database.
    pub source: String,
    /// When the run started (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Tenants by outcome.
    pub tenants: std::collections::BTreeMap<TenantOutcome, u64>,
    /// Items created (or to be created), by kind, over all tenants.
    pub created: std::collections::BTreeMap<&'static str, u64>,
    /// Items already in the store, by kind.
    pub existing: std::collections::BTreeMap<&'static str, u64>,
    /// Rows refused, over all tenants.
    pub refused: u64,
    /// Per tenant, in id order.
    pub per_tenant: Vec<TenantReport>,
}

/// What an import runs with.
pub(crate) struct Importer {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    legacy_key: LegacyKey,
    dry_run: bool,
    twilio: TwilioClient,
    ses: SesClient,
    checks: Arc<Semaphore>,
}

/// Reads the legacy key file.
fn legacy_key(path: &Path) -> Result<LegacyKey, ImportError> {
    let key_file = |reason: String| ImportError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let contents = std::fs::read(path).map_err(|error| key_file(error.to_string()))?;
    LegacyKey::parse(&contents).map_err(|error: SecretError| key_file(error.to_string()))
}

/// Runs an import with the store, key ring and provider clients the settings name.
pub async fn command(settings: &Settings, args: &ImportArgs) -> Result<ImportReport, ImportError> {
    // The inputs first: a wrong path or key file changes nothing here.
    let db = LegacyDb::open(&args.sqlite).await?;
    let legacy_key = legacy_key(&args.legacy_key_file)?;
    let importer = Importer {
        store: common::backends::open_store(settings).await?,
        keyring: Arc::new(keyring_from_settings(settings)?),
        legacy_key,
        dry_run: args.dry_run,
        twilio: TwilioClient::new(&(&settings.providers.twilio).into())
            .map_err(|error| ImportError::Provider(error.to_string()))?,
        ses: SesClient::new((&settings.providers.ses).into())
            .map_err(|error| ImportError::Provider(error.to_string()))?,
        checks: Arc::new(Semaphore::new(CHECKS_AT_ONCE)),
    };
    run(&importer, &db, args).await
}

/// The import itself.
async fn run(importer: &Importer, db: &LegacyDb, args: &ImportArgs) -> Result<ImportReport, ImportError> {
    let started_at = OffsetDateTime::now_utc();
    let all = db.tenant_ids().await?;
    let ids = if args.tenants.is_empty() {
        all
    } else {
        if let Some(unknown) = args.tenants.iter().find(|id| !all.contains(id)) {
            return Err(ImportError::UnknownTenant(unknown.clone()));
        }
        args.tenants.clone()
    };
    tracing::info!(source = %args.sqlite.display(), tenants = ids.len(), dry_run = importer.dry_run, "importing legacy installation");
    let progress = ProgressBar::new(ids.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tenants, {elapsed} elapsed, eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut checks = JoinSet::new();
    let mut per_tenant = Vec::with_capacity(ids.len());
    for id in &ids {
        progress.set_message(id.clone());
        let report = importer.tenant(db, id, &mut checks, &progress).await?;
        tracing::info!(tenant = %id, outcome = ?report.outcome, refused = report.refused.len(), "legacy tenant done");
        per_tenant.push(report);
        progress.inc(1);
    }
    progress.finish_and_clear();
    if !checks.is_empty() {
        tracing::info!(checks = checks.len(), "waiting for the imported credentials' checks");
    }
    while let Some(done) = checks.join_next().await {
        let Ok(check) = done else { continue };
        let check = check?;
        if let Some(report) = per_tenant.iter_mut().find(|report| report.tenant_id == check.tenant) {
            report.record_check(check);
        }
    }
    Ok(summarise(importer.dry_run, &args.sqlite, started_at, per_tenant))
}

fn summarise(dry_run: bool, source: &Path, started_at: OffsetDateTime, per_tenant: Vec<TenantReport>) -> ImportReport {
    let mut report = ImportReport {
        dry_run,
        source: source.display().to_string(),
        started_at,
        finished_at: OffsetDateTime::now_utc(),
        tenants: Default::default(),
        created: Default::default(),
        existing: Default::default(),
        refused: 0,
        per_tenant: Vec::new(),
    };
    for tenant in &per_tenant {
        *report.tenants.entry(tenant.outcome).or_default() += 1;
        for (kind, count) in &tenant.created {
            *report.created.entry(kind).or_default() += count;
        }
        for (kind, count) in &tenant.existing {
            *report.existing.entry(kind).or_default() += count;
        }
        report.refused += tenant.refused.len() as u64;
    }
    report.per_tenant = per_tenant;
    report
}

/// Runs [`command`] for a binary: `args` are the words after `import legacy`. Writes the JSON
/// report (to `--report` or standard output) and a one-line summary to standard error.
#[allow(clippy::print_stderr)]
pub async fn main(args: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    use clap::Parser as _;
    let args = ImportArgs::parse_from(std::iter::once("import legacy".to_owned()).chain(args));
    let settings = Settings::load(args.config.as_deref())?;
    common::telemetry::init_tracing(&settings.telemetry)?;
    let report = command(&settings, &args).await?;
    let json = serde_json::to_string_pretty(&report)?;
    match &args.report {
        Some(path) => std::fs::write(path, json + "\n").map_err(|source| ImportError::Report {
            path: path.clone(),
            source,
        })?,
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(json.as_bytes())?;
            stdout.write_all(b"\n")?;
        }
    }
    let list = |counts: Vec<(String, u64)>| {
        let parts: Vec<String> = counts
            .into_iter()
            .map(|(what, count)| format!("{count} {what}"))
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    };
    let outcome_name = |outcome: &TenantOutcome| {
        serde_json::to_value(outcome)
            .ok()
            .and_then(|name| name.as_str().map(str::to_owned))
    };
    eprintln!(
        "{}legacy import: tenants {}; created {}; already here {}; rows refused {}",
        if report.dry_run {
            "dry run, nothing written: "
        } else {
            ""
        },
        list(
            report
                .tenants
                .iter()
                .map(|(outcome, count)| (outcome_name(outcome).unwrap_or_default(), *count))
                .collect()
        ),
        list(
            report
                .created
                .iter()
                .map(|(kind, count)| ((*kind).to_owned(), *count))
                .collect()
        ),
        list(
            report
                .existing
                .iter()
                .map(|(kind, count)| ((*kind).to_owned(), *count))
                .collect()
        ),
        report.refused
    );
    Ok(())
}
