//! Tenants' provider credentials read from the store and opened with the key ring, cached for
//! a short while: providers ask once per message (Twilio) or group of messages (SES) sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::credentials::{CredentialsError, Keyring};
use common::provider::CredentialError;
use common::ses::SesAccount;
use common::ses::provider::SesCredentials;
use common::store::{ChannelCredentials, Store};
use common::twilio::TwilioAccount;
use common::twilio::provider::TwilioCredentials;
use common::{Channel, TenantId};

/// How long an answer (credentials, or their absence) is reused; a change made through the
/// admin API reaches the dispatcher within this time.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// Answers by tenant and channel, with when they were read (`None`: no credentials).
type Cache<T> = Mutex<HashMap<(TenantId, Channel), (Instant, Option<T>)>>;

/// Credentials from the store's sealed channel credentials.
pub struct StoreCredentials {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    twilio: Cache<TwilioAccount>,
    ses: Cache<SesAccount>,
}

impl std::fmt::Debug for StoreCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCredentials")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

impl StoreCredentials {
    /// Reads from `store`, opens with `keyring`.
    pub fn new(store: Arc<dyn Store>, keyring: Arc<Keyring>) -> Self {
        Self {
            store,
            keyring,
            twilio: Mutex::default(),
            ses: Mutex::default(),
        }
    }

    /// The tenant's account for `channel`, from `cache` or read, opened with `open` and cached.
    async fn account<T: Clone>(
        &self,
        cache: &Cache<T>,
        tenant: &TenantId,
        channel: Channel,
        open: impl FnOnce(&Keyring, &ChannelCredentials) -> Result<T, CredentialsError>,
    ) -> Result<T, CredentialError> {
        let key = (tenant.clone(), channel);
        let cached = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|(read_at, _)| read_at.elapsed() < CACHE_TTL)
            .map(|(_, account)| account.clone());
        let account = match cached {
            Some(account) => account,
            None => {
                let row = self
                    .store
                    .credentials(tenant, channel)
                    .await
                    .map_err(|error| CredentialError::Unavailable(error.to_string()))?;
                let account = row.map(|row| open(&self.keyring, &row)).transpose().map_err(|error| {
                    tracing::error!(%tenant, %channel, %error, "stored credentials do not open");
                    CredentialError::Unavailable(error.to_string())
                })?;
                cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, (Instant::now(), account.clone()));
                account
            }
        };
        account.ok_or(CredentialError::NotConfigured)
    }
}

#[async_trait]
impl TwilioCredentials for StoreCredentials {
    async fn credentials(&self, tenant: &TenantId, channel: Channel) -> Result<TwilioAccount, CredentialError> {
        self.account(&self.twilio, tenant, channel, common::twilio::open_account)
            .await
    }
}

#[async_trait]
impl SesCredentials for StoreCredentials {
    async fn credentials(&self, tenant: &TenantId) -> Result<SesAccount, CredentialError> {
        self.account(&self.ses, tenant, Channel::Email, common::ses::open_account)
            .await
    }
}
