//! Admission: whether a claimed message may be sent, and how. Checks run in a fixed order and
//! every refusal is a terminal status with a stable reason code, never a silent drop.
//!
//! Per tenant and channel the directory keeps, for a few seconds, what admission needs from the
//! store: the tenant, whether the channel is ready (credentials verified; for SMS an approved
//! 10DLC brand and an active number), its settings and the route its messages take.
//! Suppressions (and, for tenants that require it, marketing consents) are read for every
//! batch, so an opt-out takes effect at once; WhatsApp free-form text is checked
//! against the contact's last inbound message (the 24-hour window) per message. Quota is reserved here, before the
//! send, in SMS segments (messages elsewhere): one dispatcher owns a tenant, so the reservation
//! cannot race.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::config::PacingSettings;
use common::credentials::{FROM_ADDRESS, setting};
use common::log::{Partition, partition_for};
use common::readiness::{self, NotReady, Ready, serves};
use common::segments::count_segments;
use common::store::{
    Brand, NumberStatus, ProviderKind, SenderNumber, Store, StoreError, Tenant, TenantSettings, TenantStatus, period_of,
};
use common::{Channel, Content, EmailAddress, Envelope, MessageStatus, PhoneNumber, Recipient, Sender, TenantId};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::pacing::Rate;
use crate::route::{DailyCap, PoolSender, Route};
use common::provider::{Provider, TemplateProblem};

/// How long what the directory read from the store is trusted.
const DIRECTORY_TTL: Duration = Duration::from_secs(5);
/// How long after a contact's last inbound message WhatsApp accepts free-form text.
const WHATSAPP_WINDOW: time::Duration = time::Duration::hours(24);

/// A stable reason code for a message refused at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tenant does not exist.
    TenantUnknown,
    /// The tenant is suspended.
    TenantSuspended,
    /// The channel is not ready to send (credentials, brand, number: see [`NotReady`]).
    NotReady(NotReady),
    /// The envelope names a sender the tenant does not own.
    SenderNotAllowed,
    /// No provider is available for the channel in this deployment.
    ProviderUnavailable,
    /// The recipient is on the tenant's suppression list.
    RecipientSuppressed,
    /// A marketing message to a recipient with no recorded opt-in to its channel, for a tenant
    /// whose settings require one.
    ConsentMissing,
    /// The message expired before it could be sent.
    Expired,
    /// The tenant's monthly quota for the channel is used up.
    QuotaExhausted,
    /// WhatsApp free-form text outside the 24 hours after the contact last wrote: only a
    /// template may go. Coded `63016`, the code Twilio itself would answer.
    WhatsappWindowClosed,
    /// The message names a template the tenant's provider account does not hold.
    TemplateNotFound,
    /// The message's WhatsApp template is not approved (pending, rejected or paused).
    TemplateNotApproved,
    /// The message does not give every variable its template declares.
    TemplateVariablesMissing,
}

impl Refusal {
    /// Every refusal, for metrics and docs.
    pub const ALL: [Refusal; 22] = [
        Refusal::TenantUnknown,
        Refusal::TenantSuspended,
        Refusal::NotReady(NotReady::ChannelNotConfigured),
        Refusal::NotReady(NotReady::CredentialsUnverified),
        Refusal::NotReady(NotReady::ConfigureBusinessInfo),
        Refusal::NotReady(NotReady::WaitForApproval),
        Refusal::NotReady(NotReady::UpdateBusinessInfo),
        Refusal::NotReady(NotReady::BrandSuspended),
        Refusal::NotReady(NotReady::CampaignSuspended),
        Refusal::NotReady(NotReady::NoActiveNumber),
        Refusal::NotReady(NotReady::RegisterWhatsappSender),
        Refusal::NotReady(NotReady::WhatsappSenderNotOnline),
        Refusal::SenderNotAllowed,
        Refusal::ProviderUnavailable,
        Refusal::RecipientSuppressed,
        Refusal::ConsentMissing,
        Refusal::Expired,
        Refusal::QuotaExhausted,
        Refusal::WhatsappWindowClosed,
        Refusal::TemplateNotFound,
        Refusal::TemplateNotApproved,
        Refusal::TemplateVariablesMissing,
    ];

    /// The stable code stored as the status reason.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::TenantUnknown => "TENANT_UNKNOWN",
            Refusal::TenantSuspended => "TENANT_SUSPENDED",
            Refusal::NotReady(not_ready) => not_ready.code(),
            Refusal::SenderNotAllowed => "SENDER_NOT_ALLOWED",
            Refusal::ProviderUnavailable => "PROVIDER_UNAVAILABLE",
            Refusal::RecipientSuppressed => "RECIPIENT_SUPPRESSED",
            Refusal::ConsentMissing => "CONSENT_MISSING",
            Refusal::Expired => "EXPIRED",
            Refusal::QuotaExhausted => "QUOTA_EXHAUSTED",
            Refusal::WhatsappWindowClosed => "63016",
            Refusal::TemplateNotFound => "TEMPLATE_NOT_FOUND",
            Refusal::TemplateNotApproved => "TEMPLATE_NOT_APPROVED",
            Refusal::TemplateVariablesMissing => "TEMPLATE_VARIABLES_MISSING",
        }
    }

    /// The terminal status the refusal ends in.
    pub fn status(self) -> MessageStatus {
        match self {
            Refusal::RecipientSuppressed => MessageStatus::Suppressed,
            Refusal::Expired => MessageStatus::Expired,
            _ => MessageStatus::Rejected,
        }
    }
}

/// Quota reserved for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaHold {
    /// The channel.
    pub channel: Channel,
    /// The month (`YYYY-MM`).
    pub period: String,
    /// Cells reserved.
    pub amount: u64,
}

/// The cells a message costs its sender: SMS segments as billed, 1 elsewhere.
pub fn segments_of(envelope: &Envelope) -> u32 {
    match (&envelope.content, envelope.channel) {
        (Content::Body(body), Channel::Sms) => count_segments(body).segments,
        _ => 1,
    }
}

/// Admission's answer for one message: its route and reserved quota, or its refusal.
pub type Decision = Result<(Arc<Route>, Option<QuotaHold>), Refusal>;

/// What admission reads about a batch's recipients: who is suppressed, per tenant, and who
/// consented to their channel, per tenant requiring consent for marketing and channel.
#[derive(Debug, Default)]
pub struct Recipients {
    suppressed: HashMap<TenantId, HashSet<String>>,
    consented: HashMap<TenantId, HashMap<Channel, HashSet<String>>>,
}

impl Recipients {
    fn suppressed(&self, envelope: &Envelope) -> bool {
        self.suppressed
            .get(&envelope.tenant_id)
            .is_some_and(|addresses| addresses.contains(envelope.to.as_str()))
    }

    fn consented(&self, envelope: &Envelope) -> bool {
        self.consented
            .get(&envelope.tenant_id)
            .and_then(|channels| channels.get(&envelope.channel))
            .is_some_and(|addresses| addresses.contains(envelope.to.as_str()))
    }
}

/// Whether a message needs its recipient's recorded opt-in under these settings.
fn needs_consent(envelope: &Envelope, settings: &TenantSettings) -> bool {
    settings.requires_consent(envelope.priority) && !envelope.is_keyword_reply()
}

/// The providers messages go to: live tenants' by the kind of provider their channel's
/// credentials are for; demo tenants' always the demo provider.
#[derive(Clone)]
pub struct Providers {
    /// The simulated provider of demo tenants.
    pub demo: Arc<dyn Provider>,
    /// The real providers, by kind, that this deployment has.
    pub live: HashMap<ProviderKind, Arc<dyn Provider>>,
}

/// Whether a tenant's channel can send, and how.
#[derive(Clone)]
enum ChannelReadiness {
    Ready(Arc<Route>),
    NotReady(Refusal),
}

/// What admission knows about one tenant.
struct TenantEntry {
    read_at: Instant,
    tenant: Option<Tenant>,
    settings: TenantSettings,
    channels: HashMap<Channel, ChannelReadiness>,
    quotas: HashMap<Channel, u64>,
}

/// Admission's view of tenants, read through from the store.
pub struct Directory {
    store: Arc<dyn Store>,
    providers: Providers,
    pacing: PacingSettings,
    tenants: HashMap<TenantId, TenantEntry>,
    quota: Arc<QuotaBook>,
}

impl Directory {
    /// A directory over `store`.
    pub fn new(store: Arc<dyn Store>, providers: Providers, pacing: PacingSettings, quota: Arc<QuotaBook>) -> Self {
        Self {
            store,
            providers,
            pacing,
            tenants: HashMap::new(),
            quota,
        }
    }

    /// Decides for each envelope of a batch: its route and reserved quota, or its refusal.
    /// A store error leaves no quota reserved, so the batch can be admitted again.
    pub async fn admit(&mut self, envelopes: &[Envelope], now: OffsetDateTime) -> Result<Vec<Decision>, StoreError> {
        let recipients = self.recipients_among(envelopes).await?;
        let decisions = self.decide(envelopes, &recipients, now).await?;
        if let Err(err) = self.quota.flush(self.store.as_ref()).await {
            // The reservations stand in the book (this dispatcher owns the tenant); the store's
            // usage counters catch up at the next flush.
            tracing::warn!(error = %err, "could not write quota usage; retried at the next flush");
        }
        metrics::gauge!("dispatcher_quotas_near_limit").set(self.quota.near_limit(&period_of(now)) as f64);
        Ok(decisions)
    }

    /// Until when quiet hours hold each message of a batch (its tenant's settings and the
    /// deployment's state windows): `None` for one that may go now. Demo tenants' traffic is
    /// simulated and never held; neither are emails or keyword replies.
    pub async fn quiet_hours(
        &mut self,
        envelopes: &[&Envelope],
        now: OffsetDateTime,
    ) -> Result<Vec<Option<OffsetDateTime>>, StoreError> {
        let clock = Instant::now();
        let mut holds = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            if envelope.channel == Channel::Email || envelope.is_keyword_reply() {
                holds.push(None);
                continue;
            }
            self.entry(&envelope.tenant_id, clock).await?;
            let entry = &self.tenants[&envelope.tenant_id];
            let hold = match &entry.tenant {
                Some(tenant) if !tenant.is_demo => {
                    entry
                        .settings
                        .quiet_until(&envelope.to, envelope.priority, &self.pacing.quiet_hours_states, now)
                }
                _ => None,
            };
            holds.push(hold);
        }
        Ok(holds)
    }

    /// Decides a batch whose recipients are known. With the tenants' entries fresh it reads
    /// nothing from the store: this is admission's share of the per-message hot path.
    pub async fn decide(
        &mut self,
        envelopes: &[Envelope],
        recipients: &Recipients,
        now: OffsetDateTime,
    ) -> Result<Vec<Decision>, StoreError> {
        let mut decisions: Vec<Decision> = Vec::with_capacity(envelopes.len());
        let clock = Instant::now();
        for envelope in envelopes {
            match self.admit_one(envelope, recipients, now, clock).await {
                Ok(decision) => decisions.push(decision),
                Err(err) => {
                    // All or nothing: give back what this batch reserved before the error.
                    for (envelope, decision) in envelopes.iter().zip(&decisions) {
                        if let Ok((_, Some(hold))) = decision {
                            self.quota.release(&envelope.tenant_id, hold);
                        }
                    }
                    return Err(err);
                }
            }
        }
        Ok(decisions)
    }

    async fn admit_one(
        &mut self,
        envelope: &Envelope,
        recipients: &Recipients,
        now: OffsetDateTime,
        clock: Instant,
    ) -> Result<Decision, StoreError> {
        let entry = self.entry(&envelope.tenant_id, clock).await?;
        let Some(tenant) = &entry.tenant else {
            return Ok(Err(Refusal::TenantUnknown));
        };
        if tenant.status == TenantStatus::Suspended {
            return Ok(Err(Refusal::TenantSuspended));
        }
        let is_demo = tenant.is_demo;
        let needs_consent = needs_consent(envelope, &entry.settings);
        let route = match self.channel(&envelope.tenant_id, envelope.channel).await? {
            ChannelReadiness::Ready(route) => route,
            ChannelReadiness::NotReady(refusal) => return Ok(Err(refusal)),
        };
        if let Some(from) = &envelope.from
            && envelope.channel != Channel::Email
            && !is_demo
            && route.senders.iter().all(|sender| sender.sender != *from)
        {
            return Ok(Err(Refusal::SenderNotAllowed));
        }
        if recipients.suppressed(envelope) && !envelope.is_keyword_reply() {
            return Ok(Err(Refusal::RecipientSuppressed));
        }
        if needs_consent && !recipients.consented(envelope) {
            return Ok(Err(Refusal::ConsentMissing));
        }
        if envelope.is_expired(now) {
            return Ok(Err(Refusal::Expired));
        }
        if is_demo {
            return Ok(Ok((route, None)));
        }
        if let Content::Template { id, variables } = &envelope.content
            && let Some(Err(problem)) = route
                .provider
                .check_template(&envelope.tenant_id, envelope.channel, id, variables)
                .await
        {
            return Ok(Err(match problem {
                TemplateProblem::NotFound => Refusal::TemplateNotFound,
                TemplateProblem::NotApproved => Refusal::TemplateNotApproved,
                TemplateProblem::VariablesMissing => Refusal::TemplateVariablesMissing,
            }));
        }
        if envelope.channel == Channel::Whatsapp
            && matches!(envelope.content, Content::Body(_))
            && !self.whatsapp_window_open(envelope, now).await?
        {
            return Ok(Err(Refusal::WhatsappWindowClosed));
        }
        let limit = self
            .tenants
            .get(&envelope.tenant_id)
            .and_then(|entry| entry.quotas.get(&envelope.channel).copied());
        let Some(limit) = limit else {
            return Ok(Ok((route, None)));
        };
        let amount = u64::from(segments_of(envelope));
        let hold = QuotaHold {
            channel: envelope.channel,
            period: period_of(now),
            amount,
        };
        if self
            .quota
            .reserve(self.store.as_ref(), &envelope.tenant_id, &hold, limit)
            .await?
        {
            Ok(Ok((route, Some(hold))))
        } else {
            Ok(Err(Refusal::QuotaExhausted))
        }
    }

    /// Whether the recipient wrote to the tenant on WhatsApp within the last 24 hours.
    async fn whatsapp_window_open(&self, envelope: &Envelope, now: OffsetDateTime) -> Result<bool, StoreError> {
        let Recipient::Phone(number) = &envelope.to else {
            return Ok(false);
        };
        let last = self
            .store
            .last_inbound(&envelope.tenant_id, &number.whatsapp_address())
            .await?;
        Ok(last.is_some_and(|last| now - last < WHATSAPP_WINDOW))
    }

    /// The tenant's entry, read from the store when absent or stale.
    async fn entry(&mut self, tenant_id: &TenantId, clock: Instant) -> Result<&TenantEntry, StoreError> {
        let fresh = self
            .tenants
            .get(tenant_id)
            .is_some_and(|entry| clock.saturating_duration_since(entry.read_at) < DIRECTORY_TTL);
        if !fresh {
            let tenant = self.store.tenant(tenant_id).await?;
            let settings = match &tenant {
                Some(_) => self.store.tenant_settings(tenant_id).await?.unwrap_or_default(),
                None => TenantSettings::default(),
            };
            let mut quotas = HashMap::new();
            if let Some(plan_id) = tenant.as_ref().and_then(|tenant| tenant.plan_id.as_deref())
                && let Some(plan) = self.store.plan(plan_id).await?
            {
                quotas = plan.monthly_quota.into_iter().collect();
            }
            let entry = TenantEntry {
                read_at: clock,
                tenant,
                settings,
                channels: HashMap::new(),
                quotas,
            };
            self.tenants.insert(tenant_id.clone(), entry);
        }
        Ok(self.tenants.get(tenant_id).expect("just inserted"))
    }

    async fn channel(&mut self, tenant_id: &TenantId, channel: Channel) -> Result<ChannelReadiness, StoreError> {
        if let Some(known) = self
            .tenants
            .get(tenant_id)
            .and_then(|entry| entry.channels.get(&channel))
        {
            return Ok(known.clone());
        }
        let tenant = self
            .tenants
            .get(tenant_id)
            .and_then(|entry| entry.tenant.clone())
            .expect("entry read first");
        let readiness = self.read_channel(&tenant, channel).await?;
        if let Some(entry) = self.tenants.get_mut(tenant_id) {
            entry.channels.insert(channel, readiness.clone());
        }
        Ok(readiness)
    }

    async fn read_channel(&self, tenant: &Tenant, channel: Channel) -> Result<ChannelReadiness, StoreError> {
        if tenant.is_demo {
            let numbers: Vec<SenderNumber> = self
                .store
                .sender_numbers(&tenant.id)
                .await?
                .into_iter()
                .filter(|number| number.status == NumberStatus::Active && serves(number.kind, channel))
                .collect();
            return Ok(ChannelReadiness::Ready(Arc::new(
                self.demo_route(tenant, channel, &numbers),
            )));
        }
        let Ready {
            credentials,
            brand,
            numbers,
        } = match readiness::check(self.store.as_ref(), tenant, channel).await? {
            Ok(ready) => ready,
            Err(not_ready) => return Ok(ChannelReadiness::NotReady(Refusal::NotReady(not_ready))),
        };
        let Some(provider) = self.providers.live.get(&credentials.provider) else {
            return Ok(ChannelReadiness::NotReady(Refusal::ProviderUnavailable));
        };
        let account = provider
            .account_of(&credentials)
            .unwrap_or_else(|| format!("{}:{channel}", tenant.id));
        let senders: Vec<PoolSender> = match channel {
            Channel::Email => {
                let from = setting(&credentials, FROM_ADDRESS).and_then(|raw| EmailAddress::parse(raw).ok());
                let Some(from) = from else {
                    return Ok(ChannelReadiness::NotReady(Refusal::NotReady(
                        NotReady::ChannelNotConfigured,
                    )));
                };
                vec![PoolSender {
                    key: Arc::from(format!("email:{account}")),
                    sender: Sender::Email(from),
                    rate: Rate::per_second(self.pacing.email),
                }]
            }
            Channel::Sms | Channel::Whatsapp => number_senders(&numbers, |number| self.rate_of(number, brand.as_ref())),
        };
        if senders.is_empty() {
            return Ok(ChannelReadiness::NotReady(Refusal::NotReady(NotReady::NoActiveNumber)));
        }
        let daily_cap = brand.as_ref().map(|brand| DailyCap {
            brand: Arc::from(tenant.id.as_str()),
            segments: self.pacing.brand_daily_caps[tier(brand.trust_score)],
        });
        Ok(ChannelReadiness::Ready(Arc::new(Route {
            provider: Arc::clone(provider),
            account: Arc::from(account),
            account_concurrency: self.pacing.account_concurrency.max(1),
            senders,
            daily_cap,
        })))
    }

    /// A demo tenant sends from its numbers if it has some, else from one fictional sender per
    /// channel, through the demo provider, paced like a real sender.
    fn demo_route(&self, tenant: &Tenant, channel: Channel, numbers: &[SenderNumber]) -> Route {
        let senders = if numbers.is_empty() {
            let sender = match channel {
                Channel::Email => {
                    Sender::Email(EmailAddress::parse("demo@engageninja.example").expect("a valid address"))
                }
                Channel::Sms | Channel::Whatsapp => {
                    Sender::Phone(PhoneNumber::parse("+12025550100").expect("a valid fictional number"))
                }
            };
            vec![PoolSender {
                key: Arc::from(format!("demo:{}:{channel}", tenant.id)),
                sender,
                rate: Rate::per_second(self.pacing.demo),
            }]
        } else {
            number_senders(numbers, |_| Rate::per_second(self.pacing.demo))
        };
        Route {
            provider: Arc::clone(&self.providers.demo),
            account: Arc::from(format!("demo:{}", tenant.id)),
            account_concurrency: self.pacing.account_concurrency.max(1),
            senders,
            daily_cap: None,
        }
    }

    /// A number's default rate from its kind and, for a 10DLC long code, its brand's score.
    fn rate_of(&self, number: &SenderNumber, brand: Option<&Brand>) -> Option<Rate> {
        Rate::per_second(
            self.pacing
                .number_rate(number.kind, brand.and_then(|brand| brand.trust_score)),
        )
    }

    /// What admission needs to know about a batch's recipients, read for every batch so that
    /// an opt-out (or an opt-in) takes effect at once: the suppressed addresses per tenant, and
    /// the consented ones where a marketing message needs consent.
    pub async fn recipients_among(&mut self, envelopes: &[Envelope]) -> Result<Recipients, StoreError> {
        let clock = Instant::now();
        let mut addresses: HashMap<&TenantId, Vec<String>> = HashMap::new();
        let mut consent_asked: HashMap<(TenantId, Channel), Vec<String>> = HashMap::new();
        for envelope in envelopes {
            addresses
                .entry(&envelope.tenant_id)
                .or_default()
                .push(envelope.to.to_string());
            if needs_consent(envelope, &self.entry(&envelope.tenant_id, clock).await?.settings) {
                consent_asked
                    .entry((envelope.tenant_id.clone(), envelope.channel))
                    .or_default()
                    .push(envelope.to.to_string());
            }
        }
        let mut recipients = Recipients::default();
        for (tenant, addresses) in addresses {
            let found = self.store.suppressed_among(tenant, &addresses).await?;
            if !found.is_empty() {
                recipients
                    .suppressed
                    .insert(tenant.clone(), found.into_iter().collect());
            }
        }
        for ((tenant, channel), addresses) in consent_asked {
            let found = self.store.consented_among(&tenant, channel, &addresses).await?;
            recipients
                .consented
                .entry(tenant)
                .or_default()
                .insert(channel, found.into_iter().collect());
        }
        Ok(recipients)
    }
}

/// A pool of sender numbers, each at its own rate if it has one, else at `default_rate`.
fn number_senders(numbers: &[SenderNumber], default_rate: impl Fn(&SenderNumber) -> Option<Rate>) -> Vec<PoolSender> {
    numbers
        .iter()
        .map(|number| PoolSender {
            key: Arc::from(number.number.as_str()),
            sender: Sender::Phone(number.number.clone()),
            rate: number
                .rate_per_second
                .and_then(Rate::per_second)
                .or_else(|| default_rate(number)),
        })
        .collect()
}

/// The trust tier of a brand score: 0 for 75-100, 1 for 50-74, 2 for 1-49, 3 unscored.
fn tier(score: Option<u8>) -> usize {
    match score {
        Some(75..) => 0,
        Some(50..=74) => 1,
        Some(1..=49) => 2,
        _ => 3,
    }
}

/// Quota used per tenant, channel and month: read from the store once, then kept here and
/// written back as deltas.
#[derive(Default)]
pub struct QuotaBook {
    used: Mutex<HashMap<(TenantId, Channel, String), Usage>>,
    unflushed: Mutex<HashMap<(TenantId, Channel, String), i64>>,
}

/// A tenant's use of one channel's monthly quota.
#[derive(Debug, Clone, Copy)]
struct Usage {
    used: u64,
    limit: u64,
}

/// The share of a quota past which a tenant's channel counts as near its limit.
const NEAR_LIMIT: f64 = 0.9;

impl QuotaBook {
    /// Reserves `hold` for `tenant` if it fits under `limit`.
    async fn reserve(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        hold: &QuotaHold,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let key = (tenant.clone(), hold.channel, hold.period.clone());
        let known = self.used.lock().expect("quota book").get(&key).map(|usage| usage.used);
        let used = match known {
            Some(used) => used,
            None => store.usage(tenant, hold.channel, &hold.period).await?,
        };
        if used + hold.amount > limit {
            self.used.lock().expect("quota book").insert(key, Usage { used, limit });
            return Ok(false);
        }
        self.used.lock().expect("quota book").insert(
            key.clone(),
            Usage {
                used: used + hold.amount,
                limit,
            },
        );
        *self.unflushed.lock().expect("quota book").entry(key).or_default() += hold.amount as i64;
        Ok(true)
    }

    /// Gives back a reservation of a message that was never sent.
    pub fn release(&self, tenant: &TenantId, hold: &QuotaHold) {
        let key = (tenant.clone(), hold.channel, hold.period.clone());
        if let Some(usage) = self.used.lock().expect("quota book").get_mut(&key) {
            usage.used = usage.used.saturating_sub(hold.amount);
        }
        *self.unflushed.lock().expect("quota book").entry(key).or_default() -= hold.amount as i64;
    }

    /// How many tenant channels have used at least 90% of this month's quota (`period`), as far
    /// as this book has seen them.
    pub fn near_limit(&self, period: &str) -> usize {
        self.used
            .lock()
            .expect("quota book")
            .iter()
            .filter(|((_, _, of), usage)| of == period && usage.used as f64 >= usage.limit as f64 * NEAR_LIMIT)
            .count()
    }

    /// Forgets the counts of tenants living on `partitions` (of `count`), so that they are read
    /// again from the store: called when the partitions are assigned, since whoever owned them
    /// meanwhile has spent from the same quotas.
    pub fn forget_partitions(&self, partitions: &[Partition], count: u32) {
        self.used
            .lock()
            .expect("quota book")
            .retain(|(tenant, _, _), _| !partitions.contains(&partition_for(tenant.as_str().as_bytes(), count)));
    }

    /// Writes the reservations and releases made since the last flush to the store.
    pub async fn flush(&self, store: &dyn Store) -> Result<(), StoreError> {
        let deltas: Vec<_> = self
            .unflushed
            .lock()
            .expect("quota book")
            .drain()
            .filter(|(_, delta)| *delta != 0)
            .collect();
        let mut pending = deltas.into_iter();
        while let Some(((tenant, channel, period), delta)) = pending.next() {
            if let Err(err) = store.add_usage(&tenant, channel, &period, delta).await {
                // Keep what was not written for the next flush.
                let mut unflushed = self.unflushed.lock().expect("quota book");
                for (key, delta) in std::iter::once(((tenant, channel, period), delta)).chain(pending) {
                    *unflushed.entry(key).or_default() += delta;
                }
                return Err(err);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use common::provider::{Lookup, OutboundMessage, SendOutcome};
    use common::store::MessageRecord;
    use common::store::sqlite::SqliteStore;

    use super::*;

    /// A provider that is never asked: admission's window check reads the store only.
    struct Unused;

    #[async_trait]
    impl Provider for Unused {
        fn name(&self) -> &'static str {
            "unused"
        }

        async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome> {
            unreachable!("the window check sends nothing ({} messages)", batch.len())
        }

        async fn lookup(&self, _message: &MessageRecord) -> Lookup {
            Lookup::Unavailable
        }
    }

    #[tokio::test]
    async fn the_whatsapp_window_is_exactly_24_hours_after_the_contacts_last_message() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("store.db")).await.unwrap());
        let tenant = TenantId::parse("acme").unwrap();
        let wrote = time::macros::datetime!(2026-12-01 10:00 UTC);
        store.create_tenant(&Tenant::live(tenant.clone())).await.unwrap();
        store
            .record_inbound(&tenant, "whatsapp:+14155550100", wrote)
            .await
            .unwrap();
        let providers = Providers {
            demo: Arc::new(Unused),
            live: HashMap::new(),
        };
        let directory = Directory::new(
            store,
            providers,
            PacingSettings::default(),
            Arc::new(QuotaBook::default()),
        );
        let to = |number: &str| {
            let json = format!(
                r#"{{"version":1,"message_id":"m","tenant_id":"acme","channel":"whatsapp","to":"{number}","body":"hi"}}"#
            );
            Envelope::parse(json.as_bytes()).unwrap()
        };
        let day = time::Duration::hours(24);
        let nanosecond = time::Duration::nanoseconds(1);
        for (at, open) in [
            (wrote, true),
            (wrote + day - nanosecond, true),
            (wrote + day, false),
            (wrote + day + day, false),
        ] {
            let seen = directory.whatsapp_window_open(&to("+14155550100"), at).await.unwrap();
            assert_eq!(seen, open, "{} after the last inbound message", at - wrote);
        }
        // A contact who never wrote: closed.
        assert!(
            !directory
                .whatsapp_window_open(&to("+14155550199"), wrote)
                .await
                .unwrap()
        );
    }

    #[test]
    fn quotas_used_to_nine_tenths_this_month_count_as_near_the_limit() {
        let book = QuotaBook::default();
        let tenant = |id: &str| TenantId::parse(id).unwrap();
        let month = "2026-12".to_owned();
        {
            let mut used = book.used.lock().unwrap();
            for (id, channel, period, used_now) in [
                ("a", Channel::Sms, &month, 90),
                ("b", Channel::Sms, &month, 89),
                ("a", Channel::Email, &month, 100),
                ("c", Channel::Sms, &"2026-11".to_owned(), 100),
            ] {
                used.insert(
                    (tenant(id), channel, period.clone()),
                    Usage {
                        used: used_now,
                        limit: 100,
                    },
                );
            }
        }
        assert_eq!(
            book.near_limit(&month),
            2,
            "a's SMS and email; b is below, c is last month"
        );
        book.release(
            &tenant("a"),
            &QuotaHold {
                channel: Channel::Sms,
                period: month.clone(),
                amount: 1,
            },
        );
        assert_eq!(book.near_limit(&month), 1, "a released a segment: 89 of 100");

        let partition_of_a = partition_for(b"a", 8);
        book.forget_partitions(&[partition_of_a], 8);
        let remembered: Vec<String> = book
            .used
            .lock()
            .unwrap()
            .keys()
            .map(|(tenant, _, _)| tenant.to_string())
            .collect();
        assert!(!remembered.contains(&"a".to_owned()), "a is read again: {remembered:?}");
        for other in ["b", "c"] {
            assert_eq!(
                remembered.contains(&other.to_owned()),
                partition_for(other.as_bytes(), 8) != partition_of_a,
                "{other}"
            );
        }
    }
}
