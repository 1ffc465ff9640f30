//! `credentials reseal`: re-seals every stored channel credential under the key ring's current
//! key, with today's binding (the row and its account), so that an old key can be retired.
//!
//! Tenants are swept a page at a time in the store's order; a row already current is skipped,
//! so the sweep can be interrupted and run again, and it reports its counts after each page.
//! A row is re-read just before it is written and left alone if it changed meanwhile (the
//! tenant saved new credentials), so a concurrent save is never overwritten with the old
//! secret. A row that does not open (its key is no longer in the ring) is counted and named
//! in the log by tenant and channel, never by secret.

use common::Channel;
use common::config::Settings;
use common::credentials::{Keyring, KeyringError, keyring_from_settings, reseal};
use common::store::{Store, StoreError};

/// Tenants read per page.
const PAGE: usize = 100;

/// What a sweep did so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealReport {
    /// Tenants whose credentials were looked at.
    pub tenants: u64,
    /// Rows re-sealed.
    pub resealed: u64,
    /// Rows already under the current key and binding (or changed by their tenant meanwhile).
    pub current: u64,
    /// Rows that could not be opened.
    pub failed: u64,
}

/// Re-seals every row not yet under the current key and binding; `progress` is called after
/// each page of tenants with the counts so far.
pub async fn reseal_all(
    store: &dyn Store,
    keyring: &Keyring,
    mut progress: impl FnMut(&ResealReport),
) -> Result<ResealReport, StoreError> {
    let mut report = ResealReport::default();
    let mut after = None;
    loop {
        let tenants = store.credential_tenants(after.as_ref(), PAGE).await?;
        let Some(last) = tenants.last().cloned() else {
            return Ok(report);
        };
        for tenant in &tenants {
            report.tenants += 1;
            for channel in Channel::ALL {
                let Some(row) = store.credentials(tenant, channel).await? else {
                    continue;
                };
                match reseal(keyring, &row) {
                    Ok(None) => report.current += 1,
                    Ok(Some(fresh)) => {
                        if store.credentials(tenant, channel).await?.as_ref() == Some(&row) {
                            store.put_credentials(&fresh).await?;
                            report.resealed += 1;
                        } else {
                            report.current += 1;
                        }
                    }
                    Err(error) => {
                        tracing::error!(%tenant, %channel, key_id = row.key_id, %error, "credentials do not open; not re-sealed");
                        report.failed += 1;
                    }
                }
            }
        }
        progress(&report);
        after = Some(last);
    }
}

/// Why the sweep could not run.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    /// The key ring could not be loaded.
    #[error("credential keys: {0}")]
    Keyring(#[from] KeyringError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Rows did not open with this key ring; they were left as they are.
    #[error("{0} stored credentials could not be opened with this key ring (see the log); they were left as they are")]
    Unopened(u64),
}

/// The `credentials reseal` command: opens the configured store and key ring and sweeps,
/// logging the counts after each page.
pub async fn command(settings: &Settings) -> Result<ResealReport, ResealError> {
    let keyring = keyring_from_settings(settings)?;
    let store = common::backends::open_store(settings).await?;
    tracing::info!(current_key = keyring.current_key_id(), "re-sealing stored credentials");
    let report = reseal_all(store.as_ref(), &keyring, |report| {
        tracing::info!(
            tenants = report.tenants,
            resealed = report.resealed,
            current = report.current,
            failed = report.failed,
            "re-sealing"
        );
    })
    .await?;
    Ok(report)
}

/// Runs [`command`] for a binary: prints the counts, and fails if a row could not be opened.
#[allow(clippy::print_stdout)]
pub async fn print_command(settings: &Settings) -> Result<(), ResealError> {
    let report = command(settings).await?;
    println!(
        "credentials re-sealed: {} (already current: {}, could not open: {}) across {} tenants",
        report.resealed, report.current, report.failed, report.tenants
    );
    match report.failed {
        0 => Ok(()),
        failed => Err(ResealError::Unopened(failed)),
    }
}

#[cfg(test)]
mod tests {
    use common::TenantId;
    use common::credentials::{ACCOUNT_SID, generate_key, open, seal};
    use common::store::sqlite::SqliteStore;
    use common::store::{OnboardingStore, ProviderKind, Tenant, TenantStore};
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::json;

    use super::*;

    fn ring(spec: &str) -> Keyring {
        Keyring::parse(&SecretString::from(spec.to_owned())).unwrap()
    }

    #[tokio::test]
    async fn every_row_moves_to_the_new_key_once_and_an_unopenable_one_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).await.unwrap();
        let old = format!("k1:{}", generate_key().expose_secret());
        let lost = ring(&format!("gone:{}", generate_key().expose_secret()));
        let new = ring(&format!("k2:{},{old}", generate_key().expose_secret()));
        let old = ring(&old);
        for n in 0..250 {
            let tenant = TenantId::parse(format!("t{n:03}")).unwrap();
            store.create_tenant(&Tenant::live(tenant.clone())).await.unwrap();
            let keyring = if n == 7 { &lost } else { &old };
            let row = seal(
                keyring,
                &tenant,
                Channel::Sms,
                ProviderKind::Twilio,
                json!({ ACCOUNT_SID: format!("AC{n:032x}") }),
                &SecretString::from(format!("token-{n}")),
            );
            store.put_credentials(&row).await.unwrap();
        }

        let mut pages = Vec::new();
        let report = reseal_all(&store, &new, |report| pages.push(*report)).await.unwrap();
        assert_eq!(
            report,
            ResealReport {
                tenants: 250,
                resealed: 249,
                current: 0,
                failed: 1
            }
        );
        assert_eq!(pages.len(), 3, "one report per page of 100 tenants");
        let row = store
            .credentials(&TenantId::parse("t042").unwrap(), Channel::Sms)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.key_id, "k2");
        assert_eq!(open(&new, &row).unwrap().expose_secret(), "token-42");

        // Run again (an interrupted sweep resumes the same way): nothing left to do.
        let again = reseal_all(&store, &new, |_| {}).await.unwrap();
        assert_eq!((again.resealed, again.current, again.failed), (0, 249, 1));
    }
}
