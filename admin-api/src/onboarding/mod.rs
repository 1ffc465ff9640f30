//! The A2P 10DLC onboarding workflow: a durable state machine per tenant, kept in the tenant's
//! [`Brand`] row, that takes a tenant from submitted business information to an SMS number
//! that sends.
//!
//! # Steps (`Brand::workflow_step`)
//!
//! | step | what it does | next |
//! |---|---|---|
//! | `subaccount` | uses the tenant's own Twilio account if its SMS credentials exist (verifying them if needed); else creates a subaccount under the platform's master account (`[onboarding]` settings) and stores its SID and token, sealed, as the tenant's SMS credentials, then verifies them | `customer_profile` |
//! | `customer_profile` | Trust Hub secondary customer profile: the bundle, the business-information and authorized-representative end users, the business address as an Address resource of the account (`Addresses.json`) and the address document naming it (`address_sids`), their three assignments, an evaluation (must be compliant), the submission | `trust_product` |
//! | `trust_product` | A2P trust product: the bundle, the messaging-profile end user, its assignment and the customer profile's, an evaluation, the submission | `brand` |
//! | `brand` | registers the A2P brand (`Brand::status` becomes `pending`) | `awaiting_approval` |
//! | `awaiting_approval` | polls the brand every `poll_interval_secs`, and at once when the brand-status webhook (`POST /webhooks/twilio/brand-status`) reports a change: only the fetched brand moves the workflow, never the callback's own claim | `phone_number` (approved), `rejected` (failed or suspended) |
//! | `phone_number` | searches an SMS-capable local number (the configured area code, else the business phone's, else any) and buys it with `SmsUrl` = public URL + `/webhooks/twilio/inbound` and `StatusCallback` = public URL + `/webhooks/twilio/status`; adds the sender number row as `provisioning` | `messaging_service` |
//! | `messaging_service` | creates a Messaging Service with the same webhook URLs and adds the number | `campaign` |
//! | `campaign` | registers the US A2P campaign from the business information | `campaign_review` |
//! | `campaign_review` | polls the campaign until `VERIFIED`, then makes the number `active` | `ready` |
//! | `ready` | done: admission lets SMS through (verified credentials, approved brand, active number) | |
//! | `rejected` | the brand failed or was suspended; `Brand::status_reason` says why. The tenant fixes its business information (`PUT /v1/business-info`) and resubmits (`POST /v1/channels/sms/resubmit`): new Trust Hub bundles and a new brand registration are built (Twilio vets a registration once), the account is kept | `customer_profile` |
//! | `demo_review` | demo tenants only, never registered with Twilio: the brand is `pending` until `demo_approval_secs` (30) after business info was submitted, then approved (score 75) with a fictional active number `+1 NXX 555 01XX` | `ready` |
//! | `needs_attention` | an operator must act; `status_reason` says why (see below). Resubmitting resumes the step it stopped at, except after an uncertain outcome | the stopped step |
//!
//! # What is stored when
//!
//! Each step creates its Twilio objects one at a time, and records each object's SID in
//! `Brand::twilio_sids` (keys below) before the next call, so every step is idempotent and a
//! restarted process resumes exactly where the last one stopped without creating anything
//! twice. Before each create, the key about to be created is written as `workflow.intent`;
//! the SID replaces it once Twilio answered. An intent found on resumption means the process
//! stopped during that call (or Twilio's answer was lost, [`AccountOpError::Unknown`]): Twilio
//! may have created the object. A bundle submission is then resolved by fetching the bundle (a
//! submitted one is no longer `draft`), a subaccount by the credentials row written just after
//! it; everything else has no lookup in the client (Twilio's list calls are not wrapped), so
//! the workflow stops in `needs_attention` with `workflow.uncertain` naming the object, and is
//! never created blindly again: an operator checks the tenant's Twilio account and clears the
//! marker (recording the object's SID if it exists). Adding the number to the Messaging Service
//! is retried instead, as adding it twice is refused with 21710, which counts as added.
//!
//! Keys: `account`, `subaccount`, `address`, `customer_profile` and `customer_profile.*`, `trust_product`
//! and `trust_product.*`, `brand`, `phone_number`, `phone_number.e164`, `messaging_service`,
//! `messaging_service.phone_number`, `campaign`; bookkeeping under `workflow.*`.
//!
//! # Failures
//!
//! - Twilio unavailable ([`AccountOpError::Transient`], and unreadable answers to reads): the
//!   step is tried again after `retry_interval_secs` (300), `max_attempts` (10) times in all;
//!   then `needs_attention` with the last error. `workflow_attempts` counts them.
//! - Credentials refused, requests refused, non-compliant bundles, no number to buy, a refused
//!   campaign: `needs_attention` with the reason.
//!
//! # Running it
//!
//! [`Onboarding::drive_once`] takes one tenant one unit further (at most one Twilio write) and
//! persists the result with when the workflow is next due; [`Onboarding::run`] is the background
//! runner that picks due workflows one at a time. All changes of one tenant's workflow (the
//! runner, the webhook, a resubmission) are serialised by a per-tenant lock: one process runs
//! the workflow (the all-in-one process, or the standalone admin API).
//!
//! Every step, retry, rejection, resubmission and stop is audited (`onboarding.*`).

pub mod status;
mod steps;

use std::sync::Arc;
use std::time::Duration;

use common::TenantId;
use common::config::OnboardingSettings;
use common::credentials::Keyring;
use common::store::{Brand, BrandStatus, Store, StoreError};
use common::twilio::accounts::AccountOpError;
use common::twilio::{TwilioAccount, TwilioClient};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::locks::TenantLocks;

/// A workflow step, as stored in `Brand::workflow_step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The tenant's Twilio account: its own, or a subaccount of the platform.
    Subaccount,
    /// The Trust Hub secondary customer profile.
    CustomerProfile,
    /// The A2P trust product.
    TrustProduct,
    /// The brand registration.
    Brand,
    /// Waiting for the brand's vetting.
    AwaitingApproval,
    /// Buying the number.
    PhoneNumber,
    /// The Messaging Service and its number.
    MessagingService,
    /// The US A2P campaign.
    Campaign,
    /// Waiting for the campaign's verification.
    CampaignReview,
    /// SMS works.
    Ready,
    /// The brand was rejected or suspended: the tenant must act.
    Rejected,
    /// An operator must act.
    NeedsAttention,
    /// A demo tenant's simulated vetting: approved, with a fictional number, after
    /// `demo_approval_secs`.
    DemoReview,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 13] = [
        Step::Subaccount,
        Step::CustomerProfile,
        Step::TrustProduct,
        Step::Brand,
        Step::AwaitingApproval,
        Step::PhoneNumber,
        Step::MessagingService,
        Step::Campaign,
        Step::CampaignReview,
        Step::Ready,
        Step::Rejected,
        Step::NeedsAttention,
        Step::DemoReview,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Subaccount => "subaccount",
            Step::CustomerProfile => "customer_profile",
            Step::TrustProduct => "trust_product",
            Step::Brand => "brand",
            Step::AwaitingApproval => "awaiting_approval",
            Step::PhoneNumber => "phone_number",
            Step::MessagingService => "messaging_service",
            Step::Campaign => "campaign",
            Step::CampaignReview => "campaign_review",
            Step::Ready => "ready",
            Step::Rejected => "rejected",
            Step::NeedsAttention => "needs_attention",
            Step::DemoReview => "demo_review",
        }
    }

    /// Reads a stored name.
    pub fn parse(raw: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.as_str() == raw)
    }

    /// Whether the workflow moves on its own from this step (not waiting for a person); a
    /// ready workflow keeps watching its brand and campaign.
    pub fn is_active(self) -> bool {
        !matches!(self, Step::Rejected | Step::NeedsAttention)
    }
}

/// Keys of `Brand::twilio_sids`.
pub mod keys {
    /// The Twilio account the tenant's objects live in.
    pub const ACCOUNT: &str = "account";
    /// The subaccount the platform created.
    pub const SUBACCOUNT: &str = "subaccount";
    /// The customer profile bundle.
    pub const CUSTOMER_PROFILE: &str = "customer_profile";
    /// Its business-information end user.
    pub const CP_BUSINESS: &str = "customer_profile.business_information";
    /// Its authorized-representative end user.
    pub const CP_REPRESENTATIVE: &str = "customer_profile.authorized_representative";
    /// The business address as an Address resource of the account (`AD...`), which the
    /// address document references.
    pub const ADDRESS: &str = "address";
    /// Its address document.
    pub const CP_ADDRESS: &str = "customer_profile.address";
    /// The business information's assignment.
    pub const CP_ASSIGNED_BUSINESS: &str = "customer_profile.assigned.business_information";
    /// The representative's assignment.
    pub const CP_ASSIGNED_REPRESENTATIVE: &str = "customer_profile.assigned.authorized_representative";
    /// The address document's assignment.
    pub const CP_ASSIGNED_ADDRESS: &str = "customer_profile.assigned.address";
    /// Set (to the bundle's status) once the customer profile is submitted.
    pub const CP_SUBMITTED: &str = "customer_profile.submitted";
    /// The trust product bundle.
    pub const TRUST_PRODUCT: &str = "trust_product";
    /// Its messaging-profile end user.
    pub const TP_PROFILE: &str = "trust_product.messaging_profile";
    /// The messaging profile's assignment.
    pub const TP_ASSIGNED_PROFILE: &str = "trust_product.assigned.messaging_profile";
    /// The customer profile's assignment to the trust product.
    pub const TP_ASSIGNED_CUSTOMER_PROFILE: &str = "trust_product.assigned.customer_profile";
    /// Set once the trust product is submitted.
    pub const TP_SUBMITTED: &str = "trust_product.submitted";
    /// The brand registration.
    pub const BRAND: &str = "brand";
    /// The bought number's SID.
    pub const PHONE_NUMBER: &str = "phone_number";
    /// The bought number, E.164.
    pub const PHONE_NUMBER_E164: &str = "phone_number.e164";
    /// The Messaging Service.
    pub const MESSAGING_SERVICE: &str = "messaging_service";
    /// Set once the number is in the Messaging Service.
    pub const SERVICE_NUMBER: &str = "messaging_service.phone_number";
    /// The A2P campaign.
    pub const CAMPAIGN: &str = "campaign";
    /// The key being created right now (a write-ahead intent).
    pub const INTENT: &str = "workflow.intent";
    /// A key whose creation has an unknown outcome: an operator must resolve it.
    pub const UNCERTAIN: &str = "workflow.uncertain";
    /// The step a `needs_attention` workflow stopped at.
    pub const RESUME_STEP: &str = "workflow.resume_step";

    /// Keys a resubmission after a rejection drops (new bundles, new brand).
    pub const REBUILT_ON_RESUBMIT: [&str; 16] = [
        CUSTOMER_PROFILE,
        CP_BUSINESS,
        CP_REPRESENTATIVE,
        ADDRESS,
        CP_ADDRESS,
        CP_ASSIGNED_BUSINESS,
        CP_ASSIGNED_REPRESENTATIVE,
        CP_ASSIGNED_ADDRESS,
        CP_SUBMITTED,
        TRUST_PRODUCT,
        TP_PROFILE,
        TP_ASSIGNED_PROFILE,
        TP_ASSIGNED_CUSTOMER_PROFILE,
        TP_SUBMITTED,
        BRAND,
        INTENT,
    ];
}

/// Why the workflow could not be driven or changed.
#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tenant has no workflow (no business information submitted).
    #[error("the tenant has no onboarding workflow")]
    NotStarted,
    /// The stored step is not one this build knows.
    #[error("the stored onboarding step {0:?} is not recognised")]
    UnknownStep(String),
    /// Nothing to resubmit: the workflow is moving or done.
    #[error("the onboarding workflow is {0}: there is nothing to resubmit")]
    NothingToResubmit(&'static str),
    /// A Twilio object's creation has an unknown outcome; an operator must resolve it first.
    #[error("the outcome of creating the twilio {0} is unknown: an operator must resolve it first")]
    Uncertain(String),
}

/// Where a workflow stands after a drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Its step.
    pub step: Step,
    /// The brand's status.
    pub status: BrandStatus,
    /// Attempts of the current step that failed for a transient reason.
    pub attempts: u32,
    /// When it is next due; `None` when it waits for a person or is done.
    pub due: Option<OffsetDateTime>,
    /// Why it stopped or is retrying.
    pub reason: Option<String>,
}

impl Progress {
    fn of(brand: &Brand, step: Step, due: Option<OffsetDateTime>) -> Self {
        Self {
            step,
            status: brand.status,
            attempts: brand.workflow_attempts,
            due,
            reason: brand.status_reason.clone(),
        }
    }
}

/// What a unit of work achieved.
#[derive(Debug)]
enum Outcome {
    /// Recorded an object within the step; go on at once.
    Progress,
    /// The step is done; the next one is due after the wait, if any.
    Done(Step, Option<Duration>),
    /// Nothing changed yet (a poll): look again after this long.
    Wait(Duration),
    /// A ready tenant's brand and campaign were looked at: look again after this long,
    /// keeping the reason a suspended campaign left (a failed look changes nothing).
    Watch(Duration),
    /// Nothing to do any more (a ready demo tenant has nothing at Twilio to watch).
    Idle,
    /// The brand was rejected or suspended.
    Rejected,
}

/// Why a unit of work did not succeed.
#[derive(Debug)]
enum Fault {
    /// Twilio said no or was unreachable.
    Twilio(AccountOpError),
    /// A Twilio write may have happened: the object behind the key must be looked for.
    Uncertain { key: String, reason: String },
    /// An operator must act, for this reason.
    Attention(String),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for Fault {
    fn from(error: StoreError) -> Self {
        Fault::Store(error)
    }
}

impl From<AccountOpError> for Fault {
    fn from(error: AccountOpError) -> Self {
        Fault::Twilio(error)
    }
}

/// The onboarding workflow of every tenant: its dependencies, settings and runner.
pub struct Onboarding {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    twilio: TwilioClient,
    public_url: String,
    settings: OnboardingSettings,
    wake: Notify,
    locks: TenantLocks,
}

impl std::fmt::Debug for Onboarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Onboarding")
            .field("public_url", &self.public_url)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn after(wait: Duration) -> OffsetDateTime {
    now() + wait
}

impl Onboarding {
    /// The workflow over `store`, calling Twilio with `twilio`; webhook URLs given to Twilio
    /// start with `public_url`.
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        twilio: TwilioClient,
        public_url: impl Into<String>,
        settings: OnboardingSettings,
    ) -> Self {
        Self {
            store,
            keyring,
            twilio,
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            settings,
            wake: Notify::new(),
            locks: TenantLocks::default(),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &OnboardingSettings {
        &self.settings
    }

    /// The platform's master account, if configured.
    fn master(&self) -> Option<TwilioAccount> {
        let sid = self.settings.master_account_sid.as_deref()?;
        let token: &SecretString = self.settings.master_auth_token.as_ref()?;
        Some(TwilioAccount::new(sid, token.clone()))
    }

    /// Wakes the runner: a workflow became due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn audit(&self, tenant: &TenantId, actor: &str, action: &str, detail: Value) -> Result<(), StoreError> {
        crate::audit::append(self.store.as_ref(), tenant, actor, action, detail).await
    }

    /// Starts a tenant's workflow (its business information was just saved); nothing if it has
    /// one already. A demo tenant is never registered with Twilio: its approval is simulated
    /// (`demo_review`).
    pub async fn start(&self, tenant: &TenantId, actor: &str) -> Result<(), StoreError> {
        let lock = self.locks.of(tenant);
        let _guard = lock.lock().await;
        if self.store.brand(tenant).await?.is_some() {
            return Ok(());
        }
        let demo = self.store.tenant(tenant).await?.is_some_and(|row| row.is_demo);
        let (step, status, due) = if demo {
            (
                Step::DemoReview,
                BrandStatus::Pending,
                after(self.settings.demo_approval()),
            )
        } else {
            (Step::Subaccount, BrandStatus::Draft, now())
        };
        let brand = Brand {
            tenant_id: tenant.clone(),
            status,
            status_reason: None,
            trust_score: None,
            workflow_step: step.as_str().to_owned(),
            workflow_attempts: 0,
            twilio_sids: Default::default(),
            updated_at: now(),
            approved_at: None,
        };
        self.store.put_workflow(&brand, Some(due)).await?;
        self.audit(
            tenant,
            actor,
            "onboarding.started",
            json!({ "step": step, "demo": demo }),
        )
        .await?;
        tracing::info!(%tenant, "onboarding started");
        self.wake();
        Ok(())
    }

    /// Resubmits a rejected registration (new bundles and brand, after the tenant updated its
    /// business information) or resumes a workflow that needed attention at the step it
    /// stopped at; the workflow is due at once.
    pub async fn resubmit(&self, tenant: &TenantId, actor: &str) -> Result<Progress, OnboardingError> {
        let lock = self.locks.of(tenant);
        let _guard = lock.lock().await;
        let mut brand = self.store.brand(tenant).await?.ok_or(OnboardingError::NotStarted)?;
        let step = Step::parse(&brand.workflow_step)
            .ok_or_else(|| OnboardingError::UnknownStep(brand.workflow_step.clone()))?;
        let (next, detail) = match step {
            Step::Rejected => {
                let dropped: serde_json::Map<String, Value> = keys::REBUILT_ON_RESUBMIT
                    .iter()
                    .filter_map(|key| {
                        brand
                            .twilio_sids
                            .remove(*key)
                            .map(|sid| ((*key).to_owned(), Value::String(sid)))
                    })
                    .collect();
                brand.status = BrandStatus::Draft;
                brand.trust_score = None;
                let detail = json!({
                    "from": step,
                    "rejection_reason": brand.status_reason,
                    "replaced": dropped,
                });
                (Step::CustomerProfile, detail)
            }
            Step::NeedsAttention => {
                if let Some(key) = brand.twilio_sids.get(keys::UNCERTAIN) {
                    return Err(OnboardingError::Uncertain(key.clone()));
                }
                let resume = brand
                    .twilio_sids
                    .remove(keys::RESUME_STEP)
                    .and_then(|raw| Step::parse(&raw))
                    .filter(|step| step.is_active())
                    .unwrap_or(Step::Subaccount);
                (resume, json!({ "from": step, "reason": brand.status_reason }))
            }
            other => return Err(OnboardingError::NothingToResubmit(other.as_str())),
        };
        brand.workflow_step = next.as_str().to_owned();
        brand.workflow_attempts = 0;
        brand.status_reason = None;
        brand.updated_at = now();
        let due = Some(now());
        self.store.put_workflow(&brand, due).await?;
        let mut detail = detail;
        detail["to"] = json!(next);
        self.audit(tenant, actor, "onboarding.resubmitted", detail).await?;
        tracing::info!(%tenant, step = next.as_str(), "onboarding resubmitted");
        self.wake();
        Ok(Progress::of(&brand, next, due))
    }

    /// Takes a tenant's workflow one unit further (at most one Twilio write, or one poll) and
    /// stores where it stands and when it is next due. A workflow that is ready or waits for a
    /// person is left as it is (and unscheduled).
    pub async fn drive_once(&self, tenant: &TenantId) -> Result<Progress, OnboardingError> {
        let lock = self.locks.of(tenant);
        let _guard = lock.lock().await;
        let mut brand = self.store.brand(tenant).await?.ok_or(OnboardingError::NotStarted)?;
        let Some(step) = Step::parse(&brand.workflow_step) else {
            // Unscheduled, so that the runner does not pick it again and again.
            self.store.put_workflow(&brand, None).await?;
            return Err(OnboardingError::UnknownStep(brand.workflow_step.clone()));
        };
        if !step.is_active() {
            self.store.put_workflow(&brand, None).await?;
            return Ok(Progress::of(&brand, step, None));
        }
        let result = self.unit(&mut brand, step).await;
        self.settle(&mut brand, step, result).await
    }

    /// Drives a tenant's workflow until it is not due at once (waiting, done or stopped), at
    /// most `max_units` units; answers where it stands.
    pub async fn drive(&self, tenant: &TenantId, max_units: usize) -> Result<Progress, OnboardingError> {
        let mut progress = self.drive_once(tenant).await?;
        for _ in 1..max_units {
            if progress.due.is_none_or(|due| due > now()) {
                break;
            }
            progress = self.drive_once(tenant).await?;
        }
        Ok(progress)
    }

    /// Applies a unit's result: the next step, a retry, a stop; persists it with its due time.
    async fn settle(
        &self,
        brand: &mut Brand,
        step: Step,
        result: Result<Outcome, Fault>,
    ) -> Result<Progress, OnboardingError> {
        let tenant = brand.tenant_id.clone();
        let (next, due) = match result {
            Ok(Outcome::Progress) => {
                brand.workflow_attempts = 0;
                brand.status_reason = None;
                (step, Some(now()))
            }
            Ok(Outcome::Wait(wait)) => {
                brand.workflow_attempts = 0;
                brand.status_reason = None;
                (step, Some(after(wait)))
            }
            Ok(Outcome::Watch(wait)) => (step, Some(after(wait))),
            Ok(Outcome::Idle) => (step, None),
            Ok(Outcome::Done(next, wait)) => {
                brand.workflow_attempts = 0;
                brand.status_reason = None;
                let due = next.is_active().then(|| wait.map_or_else(now, after));
                self.audit(
                    &tenant,
                    "system",
                    &format!("onboarding.{}.done", step.as_str()),
                    json!({ "next": next, "twilio_sids": sids_of(brand) }),
                )
                .await?;
                tracing::info!(%tenant, step = step.as_str(), next = next.as_str(), "onboarding step done");
                (next, due)
            }
            Ok(Outcome::Rejected) => {
                self.audit(
                    &tenant,
                    "system",
                    "onboarding.brand_rejected",
                    json!({ "status": brand.status, "reason": brand.status_reason, "brand": brand.twilio_sids.get(keys::BRAND) }),
                )
                .await?;
                tracing::info!(%tenant, status = ?brand.status, "10dlc brand rejected");
                (Step::Rejected, None)
            }
            Err(Fault::Store(error)) => return Err(error.into()),
            Err(Fault::Twilio(error)) if retryable(&error) => {
                brand.workflow_attempts += 1;
                let attempts = brand.workflow_attempts;
                let max = self.settings.max_attempts.max(1);
                if attempts >= max {
                    let reason = format!(
                        "twilio was unavailable for {attempts} attempts of step {}: {error}",
                        step.as_str()
                    );
                    self.attention(brand, step, reason).await?
                } else {
                    brand.status_reason = Some(format!(
                        "twilio is unavailable (attempt {attempts} of {max}), retrying: {error}"
                    ));
                    self.audit(
                        &tenant,
                        "system",
                        "onboarding.retry_scheduled",
                        json!({ "step": step, "attempt": attempts, "error": error.to_string() }),
                    )
                    .await?;
                    tracing::warn!(%tenant, step = step.as_str(), attempts, %error, "twilio unavailable, onboarding step will be retried");
                    (step, Some(after(self.settings.retry_interval())))
                }
            }
            Err(Fault::Twilio(error)) => {
                let reason = match &error {
                    AccountOpError::InvalidCredentials { .. } => format!(
                        "twilio refused the account credentials ({error}); fix them (POST /v1/channels/sms with \
                         your own account, or the platform's master account), then resubmit"
                    ),
                    _ => error.to_string(),
                };
                if let AccountOpError::Unknown { .. } = error
                    && let Some(key) = brand.twilio_sids.get(keys::INTENT).cloned()
                {
                    brand.twilio_sids.insert(keys::UNCERTAIN.to_owned(), key);
                }
                self.attention(brand, step, reason).await?
            }
            Err(Fault::Uncertain { key, reason }) => {
                brand.twilio_sids.insert(keys::UNCERTAIN.to_owned(), key.clone());
                let reason = format!(
                    "the outcome of creating the twilio {key} is unknown ({reason}): an operator must check the \
                     tenant's twilio account for it before onboarding resumes"
                );
                self.attention(brand, step, reason).await?
            }
            Err(Fault::Attention(reason)) => self.attention(brand, step, reason).await?,
        };
        brand.workflow_step = next.as_str().to_owned();
        brand.updated_at = now();
        self.store.put_workflow(brand, due).await?;
        Ok(Progress::of(brand, next, due))
    }

    /// Stops the workflow for an operator; answers the step and due time to store.
    async fn attention(
        &self,
        brand: &mut Brand,
        step: Step,
        reason: String,
    ) -> Result<(Step, Option<OffsetDateTime>), StoreError> {
        brand.twilio_sids.remove(keys::INTENT);
        brand
            .twilio_sids
            .insert(keys::RESUME_STEP.to_owned(), step.as_str().to_owned());
        self.audit(
            &brand.tenant_id,
            "system",
            "onboarding.needs_attention",
            json!({ "step": step, "reason": reason, "attempts": brand.workflow_attempts }),
        )
        .await?;
        tracing::warn!(tenant = %brand.tenant_id, step = step.as_str(), reason, "onboarding needs attention");
        brand.status_reason = Some(reason);
        Ok((Step::NeedsAttention, None))
    }

    /// Acts on a brand status reported by Twilio's webhook for a workflow waiting for it:
    /// the report is audited, never applied as such; the brand is fetched from Twilio at once
    /// and only that answer moves the workflow (a callback signed with a leaked or shared token
    /// cannot approve a brand). Answers whether the brand is the tenant's and under review.
    pub async fn brand_status_reported(
        &self,
        tenant: &TenantId,
        brand_sid: &str,
        status: &str,
    ) -> Result<bool, OnboardingError> {
        {
            let lock = self.locks.of(tenant);
            let _guard = lock.lock().await;
            let Some(brand) = self.store.brand(tenant).await? else {
                return Ok(false);
            };
            let watched = matches!(
                Step::parse(&brand.workflow_step),
                Some(Step::AwaitingApproval | Step::Ready)
            );
            if brand.twilio_sids.get(keys::BRAND).map(String::as_str) != Some(brand_sid) || !watched {
                return Ok(false);
            }
            let reported = common::twilio::accounts::BrandStatus::parse(status);
            self.audit(
                tenant,
                "twilio",
                "onboarding.brand_status_reported",
                json!({ "brand": brand_sid, "status": reported.as_str() }),
            )
            .await?;
        }
        // The poll of the awaiting-approval step (or the watch of a ready one), now rather than
        // at its next due time.
        self.drive_once(tenant).await?;
        Ok(true)
    }

    /// The background runner: picks due workflows one at a time and drives each one unit,
    /// looking again every `runner_tick_ms` or when woken, until `cancel` fires (between units).
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        tracing::info!("onboarding runner started");
        loop {
            loop {
                if cancel.is_cancelled() {
                    tracing::info!("onboarding runner stopped");
                    return;
                }
                let due = match self.store.workflows_due(now(), 1).await {
                    Ok(due) => due,
                    Err(error) => {
                        tracing::warn!(%error, "onboarding runner could not read due workflows");
                        break;
                    }
                };
                let Some(tenant) = due.into_iter().next() else {
                    break;
                };
                if let Err(error) = self.drive_once(&tenant).await {
                    tracing::warn!(%tenant, %error, "onboarding drive failed");
                    break;
                }
            }
            tokio::select! {
                () = cancel.cancelled() => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.runner_tick()) => {}
            }
        }
    }
}

/// Whether an error means Twilio did not process the request and it may simply be sent again.
fn retryable(error: &AccountOpError) -> bool {
    matches!(
        error,
        AccountOpError::Transient { .. } | AccountOpError::UnexpectedResponse { .. }
    )
}

/// The Twilio SIDs of a brand row, without the workflow's bookkeeping.
fn sids_of(brand: &Brand) -> Value {
    brand
        .twilio_sids
        .iter()
        .filter(|(key, _)| !key.starts_with("workflow."))
        .map(|(key, sid)| (key.clone(), Value::String(sid.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_and_only_two_are_idle() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
            assert_eq!(serde_json::to_value(step).unwrap(), json!(step.as_str()));
        }
        assert_eq!(Step::parse("nope"), None);
        let idle: Vec<Step> = Step::ALL.into_iter().filter(|step| !step.is_active()).collect();
        assert_eq!(idle, [Step::Rejected, Step::NeedsAttention]);
    }

    #[test]
    fn transient_and_unreadable_answers_are_retried_others_are_not() {
        let transient = AccountOpError::Transient {
            operation: "x",
            reason: "TWILIO_HTTP_503".into(),
            retry_after: None,
        };
        assert!(retryable(&transient));
        assert!(retryable(&AccountOpError::UnexpectedResponse {
            operation: "x",
            reason: "r".into()
        }));
        assert!(!retryable(&AccountOpError::InvalidCredentials { operation: "x" }));
        assert!(!retryable(&AccountOpError::Unknown {
            operation: "x",
            reason: "TWILIO_TIMEOUT".into()
        }));
    }
}
