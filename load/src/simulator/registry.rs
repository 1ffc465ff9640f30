//! The onboarding simulator's book: subaccounts, Trust Hub bundles, end users and documents,
//! A2P brands, Messaging Services, campaigns and numbers, and the counters of what the
//! onboarding endpoints saw. The endpoints that change it are in [`accounts`](super::accounts);
//! the shared state holds it, so that callbacks can sign with a subaccount's token.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use common::twilio::accounts::BundleKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::config::{BrandOutcome, OnboardingSimConfig};

/// What the onboarding endpoints saw, in `GET /stats` under `onboarding`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OnboardingStats {
    /// Onboarding requests received (any answer).
    pub requests: u64,
    /// Requests answered 503 by the fault switch.
    pub unavailable: u64,
    /// Requests refused, by Twilio error code (503s included).
    pub rejected_by_code: BTreeMap<String, u64>,
    /// Subaccounts created.
    pub subaccounts: u64,
    /// Accounts fetched.
    pub account_fetches: u64,
    /// Customer profiles created.
    pub customer_profiles: u64,
    /// Trust products created.
    pub trust_products: u64,
    /// End users created.
    pub end_users: u64,
    /// Supporting documents created.
    pub supporting_documents: u64,
    /// Address resources created (`Addresses.json`).
    pub addresses: u64,
    /// Entity assignments created.
    pub entity_assignments: u64,
    /// Evaluations made.
    pub evaluations: u64,
    /// Bundles submitted for review.
    pub bundles_submitted: u64,
    /// Brand registrations created.
    pub brand_registrations: u64,
    /// Brands approved.
    pub brands_approved: u64,
    /// Brands failed.
    pub brands_failed: u64,
    /// Brand status callbacks started (their delivery counts under `callbacks_*`).
    pub brand_callbacks: u64,
    /// Messaging Services created.
    pub messaging_services: u64,
    /// Numbers added to Messaging Services.
    pub service_phone_numbers: u64,
    /// Campaigns registered.
    pub campaigns: u64,
    /// Number searches answered.
    pub number_searches: u64,
    /// Numbers bought.
    pub numbers_purchased: u64,
    /// WhatsApp senders registered.
    pub whatsapp_senders: u64,
    /// Content API templates created.
    pub contents: u64,
    /// Templates submitted for WhatsApp approval.
    pub approvals_submitted: u64,
}

/// A status change to report (a brand's, a WhatsApp sender's, a template's approval).
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    /// The object's account, whose token signs the callback.
    pub account_sid: String,
    /// Where to POST it, if anywhere.
    pub url: Option<String>,
    /// The form.
    pub params: Vec<(String, String)>,
}

#[derive(Debug)]
pub(crate) struct SubaccountRecord {
    pub(crate) owner: String,
    pub(crate) token: String,
    pub(crate) friendly_name: String,
    pub(crate) slot: Arc<Semaphore>,
    pub(crate) created: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BundleState {
    Draft,
    PendingReview,
}

#[derive(Debug)]
pub(crate) struct BundleRecord {
    pub(crate) sid: String,
    pub(crate) account_sid: String,
    pub(crate) kind: BundleKind,
    pub(crate) friendly_name: String,
    pub(crate) email: String,
    pub(crate) policy_sid: String,
    pub(crate) status_callback: Option<String>,
    pub(crate) state: BundleState,
    pub(crate) submitted: Option<Instant>,
    /// (assignment SID, object SID).
    pub(crate) assignments: Vec<(String, String)>,
    pub(crate) created: OffsetDateTime,
    pub(crate) updated: OffsetDateTime,
}

#[derive(Debug)]
pub(crate) struct EndUserRecord {
    pub(crate) account_sid: String,
    pub(crate) user_type: String,
}

#[derive(Debug)]
pub(crate) struct DocumentRecord {
    pub(crate) account_sid: String,
    /// A `customer_profile_address` document's `address_sids`, when it names an Address
    /// resource of its account (what Trust Hub's evaluation asks of a business address).
    pub(crate) address_sid: Option<String>,
}

#[derive(Debug)]
pub(crate) struct AddressRecord {
    pub(crate) account_sid: String,
}

#[derive(Debug)]
pub(crate) struct BrandRecord {
    pub(crate) sid: String,
    pub(crate) account_sid: String,
    pub(crate) customer_profile: String,
    pub(crate) trust_product: String,
    pub(crate) brand_type: String,
    pub(crate) mock: bool,
    pub(crate) skip_automatic_sec_vet: bool,
    pub(crate) status: &'static str,
    pub(crate) brand_score: Option<u8>,
    pub(crate) tcr_id: Option<String>,
    pub(crate) failure_reason: Option<String>,
    pub(crate) created: OffsetDateTime,
    pub(crate) updated: OffsetDateTime,
}

#[derive(Debug)]
pub(crate) struct ServiceRecord {
    pub(crate) sid: String,
    pub(crate) account_sid: String,
    pub(crate) friendly_name: String,
    pub(crate) inbound_request_url: Option<String>,
    pub(crate) status_callback: Option<String>,
    pub(crate) campaign: Option<String>,
    pub(crate) created: OffsetDateTime,
}

#[derive(Debug)]
pub(crate) struct CampaignRecord {
    pub(crate) sid: String,
    pub(crate) account_sid: String,
    pub(crate) service_sid: String,
    pub(crate) brand_sid: String,
    pub(crate) description: String,
    pub(crate) message_flow: String,
    pub(crate) message_samples: Vec<String>,
    pub(crate) usecase: String,
    pub(crate) has_embedded_links: bool,
    pub(crate) has_embedded_phone: bool,
    pub(crate) opt_in_message: Option<String>,
    pub(crate) opt_out_message: Option<String>,
    pub(crate) help_message: Option<String>,
    pub(crate) brand_score: Option<u8>,
    /// The Campaign Registry's id, shown once verified.
    pub(crate) campaign_id: String,
    /// A status set by a test after the review (`SUSPENDED`, `FAILED`, `VERIFIED`), shown
    /// instead of the review's own.
    pub(crate) status_override: Option<String>,
    pub(crate) registered: Instant,
    pub(crate) created: OffsetDateTime,
}

#[derive(Debug)]
pub(crate) struct NumberRecord {
    pub(crate) sid: String,
    pub(crate) account_sid: String,
    pub(crate) phone_number: String,
    pub(crate) friendly_name: String,
    pub(crate) sms_url: Option<String>,
    pub(crate) sms_method: String,
    pub(crate) status_callback: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) created: OffsetDateTime,
}

/// A simulated WhatsApp sender.
#[derive(Debug, Clone)]
pub(crate) struct SenderRecord {
    pub(crate) sid: String,
    pub(crate) account_sid: String,
    pub(crate) sender_id: String,
    pub(crate) status: &'static str,
    pub(crate) body: Value,
    pub(crate) offline_reasons: Vec<Value>,
    pub(crate) callback_base: Option<String>,
}

/// A simulated Content API template.
#[derive(Debug, Clone)]
pub(crate) struct ContentRecord {
    pub(crate) sid: String,
    pub(crate) account_sid: String,
    pub(crate) body: Value,
    pub(crate) approval: Option<Value>,
    pub(crate) created: OffsetDateTime,
}

/// A record that belongs to one account.
pub(crate) trait AccountOwned {
    /// The account.
    fn account_sid(&self) -> &str;
}

impl AccountOwned for SenderRecord {
    fn account_sid(&self) -> &str {
        &self.account_sid
    }
}

impl AccountOwned for ContentRecord {
    fn account_sid(&self) -> &str {
        &self.account_sid
    }
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub(crate) stats: OnboardingStats,
    pub(crate) unavailable_left: u32,
    pub(crate) subaccounts: HashMap<String, SubaccountRecord>,
    pub(crate) bundles: HashMap<String, BundleRecord>,
    pub(crate) end_users: HashMap<String, EndUserRecord>,
    pub(crate) documents: HashMap<String, DocumentRecord>,
    pub(crate) addresses: HashMap<String, AddressRecord>,
    pub(crate) brands: HashMap<String, BrandRecord>,
    pub(crate) services: HashMap<String, ServiceRecord>,
    pub(crate) campaigns: HashMap<String, CampaignRecord>,
    pub(crate) numbers: HashMap<String, NumberRecord>,
    pub(crate) senders: HashMap<String, SenderRecord>,
    pub(crate) contents: HashMap<String, ContentRecord>,
    /// Replaces the configured brand outcome from now on (`RunningSimulator::set_brand_outcome`).
    pub(crate) brand_outcome: Option<BrandOutcome>,
}

/// The onboarding objects; every lock is held briefly and never across an await.
#[derive(Debug)]
pub(crate) struct Onboarding {
    pub(crate) config: OnboardingSimConfig,
    pub(crate) concurrency: usize,
    pub(crate) unavailable: AtomicBool,
    pub(crate) inner: Mutex<Inner>,
}

impl Onboarding {
    /// Empty, with `config`; subaccounts get `concurrency` create-message slots each.
    pub(crate) fn new(config: OnboardingSimConfig, concurrency: usize) -> Self {
        let inner = Inner {
            unavailable_left: config.unavailable_for_first,
            ..Inner::default()
        };
        Self {
            config,
            concurrency,
            unavailable: AtomicBool::new(false),
            inner: Mutex::new(inner),
        }
    }

    /// Makes brands reviewed from now on end as `outcome`.
    pub(crate) fn set_brand_outcome(&self, outcome: BrandOutcome) {
        self.inner().brand_outcome = Some(outcome);
    }

    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Switches every onboarding endpoint to 503 (or back).
    pub(crate) fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::Relaxed);
    }

    /// The counters now.
    pub(crate) fn stats(&self) -> OnboardingStats {
        self.inner().stats.clone()
    }

    /// A subaccount's auth token.
    pub(crate) fn subaccount_token(&self, sid: &str) -> Option<String> {
        self.inner().subaccounts.get(sid).map(|account| account.token.clone())
    }

    /// A subaccount's create-message slots.
    pub(crate) fn subaccount_slots(&self, sid: &str) -> Option<Arc<Semaphore>> {
        self.inner()
            .subaccounts
            .get(sid)
            .map(|account| Arc::clone(&account.slot))
    }

    /// Counts a request and says whether the fault switch answers it with a 503.
    pub(crate) fn admit(&self) -> bool {
        let mut inner = self.inner();
        inner.stats.requests += 1;
        let refused = if self.unavailable.load(Ordering::Relaxed) {
            true
        } else if inner.unavailable_left > 0 {
            inner.unavailable_left -= 1;
            true
        } else {
            false
        };
        if refused {
            inner.stats.unavailable += 1;
        }
        refused
    }

    pub(crate) fn count_rejected(&self, code: u32) {
        *self.inner().stats.rejected_by_code.entry(code.to_string()).or_default() += 1;
    }

    /// Ends a brand's review with the configured outcome; `None` if it is unknown or no longer
    /// pending.
    pub(crate) fn complete_brand_review(&self, sid: &str) -> Option<Notice> {
        let now = OffsetDateTime::now_utc();
        let mut inner = self.inner();
        let Inner {
            stats,
            brands,
            bundles,
            brand_outcome,
            ..
        } = &mut *inner;
        let brand = brands.get_mut(sid).filter(|brand| brand.status == "PENDING")?;
        match brand_outcome.as_ref().unwrap_or(&self.config.brand_outcome) {
            BrandOutcome::Approve => {
                brand.status = "APPROVED";
                brand.brand_score = Some(self.config.brand_score.min(100));
                brand.tcr_id = Some(format!("B{}", short_id()));
                stats.brands_approved += 1;
            }
            BrandOutcome::Fail { reason } => {
                brand.status = "FAILED";
                brand.failure_reason = Some(reason.clone());
                stats.brands_failed += 1;
            }
        }
        brand.updated = now;
        Some(self.brand_notice(stats, bundles, brand))
    }

    /// Suspends an approved brand with `reason`, as the carriers may at any time; `None` if it
    /// is unknown or not approved.
    pub(crate) fn suspend_brand(&self, sid: &str, reason: &str) -> Option<Notice> {
        let mut inner = self.inner();
        let Inner {
            stats, brands, bundles, ..
        } = &mut *inner;
        let brand = brands.get_mut(sid).filter(|brand| brand.status == "APPROVED")?;
        brand.status = "SUSPENDED";
        brand.failure_reason = Some(reason.to_owned());
        brand.updated = OffsetDateTime::now_utc();
        Some(self.brand_notice(stats, bundles, brand))
    }

    /// The status callback of a brand's current status: where it goes (counted) and its form.
    fn brand_notice(
        &self,
        stats: &mut OnboardingStats,
        bundles: &HashMap<String, BundleRecord>,
        brand: &BrandRecord,
    ) -> Notice {
        let url = self.config.brand_status_callback.clone().or_else(|| {
            bundles
                .get(&brand.customer_profile)
                .and_then(|profile| profile.status_callback.clone())
        });
        if url.is_some() {
            stats.brand_callbacks += 1;
        }
        let mut params = vec![
            ("AccountSid".to_owned(), brand.account_sid.clone()),
            ("BrandRegistrationSid".to_owned(), brand.sid.clone()),
            ("BrandStatus".to_owned(), brand.status.to_owned()),
            ("BrandType".to_owned(), brand.brand_type.clone()),
            ("CustomerProfileBundleSid".to_owned(), brand.customer_profile.clone()),
            ("A2PProfileBundleSid".to_owned(), brand.trust_product.clone()),
        ];
        if let Some(score) = brand.brand_score {
            params.push(("BrandScore".to_owned(), score.to_string()));
        }
        if let Some(tcr_id) = &brand.tcr_id {
            params.push(("TcrId".to_owned(), tcr_id.clone()));
        }
        if let Some(reason) = &brand.failure_reason {
            params.push(("FailureReason".to_owned(), reason.clone()));
        }
        tracing::debug!(
            sid = brand.sid,
            status = brand.status,
            callback = url.is_some(),
            "simulator brand status"
        );
        Notice {
            account_sid: brand.account_sid.clone(),
            url,
            params,
        }
    }
}

/// Six uppercase letters and digits, as TCR's brand and campaign ids.
pub(crate) fn short_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..6)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

/// The string at `pointer` in `value`, if it is a non-empty string.
pub(crate) fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// The body text of a template's types, where it has one.
fn body_text(content: &Value) -> Option<&str> {
    content
        .get("types")?
        .as_object()?
        .values()
        .find_map(|value| value.get("body").and_then(Value::as_str))
}

impl Onboarding {
    /// Ends a sender's review or verification; the change to report, if any.
    pub(crate) fn complete_sender(&self, sid: &str) -> Option<Notice> {
        let mut inner = self.inner();
        let bought = {
            let sender = inner.senders.get(sid)?;
            let number = sender.sender_id.trim_start_matches("whatsapp:");
            inner
                .numbers
                .values()
                .any(|record| record.account_sid == sender.account_sid && record.phone_number == number)
        };
        let sender = inner.senders.get_mut(sid)?;
        let name = text(&sender.body, "/profile/name")
            .unwrap_or_default()
            .to_ascii_lowercase();
        sender.status = match sender.status {
            "CREATING" if name.contains("whatsapp") || name.contains("twilio") => {
                sender.offline_reasons = vec![json!({
                    "code": "63113",
                    "message": "the display name does not follow Meta's display name rules",
                    "more_info": "https://www.twilio.com/docs/errors/63113",
                })];
                "OFFLINE"
            }
            "CREATING" if bought => "ONLINE",
            "CREATING" => "PENDING_VERIFICATION",
            "VERIFYING" => "ONLINE",
            _ => return None,
        };
        let url = sender
            .callback_base
            .as_ref()
            .map(|base| format!("{base}/webhooks/twilio/sender-status"));
        Some(Notice {
            account_sid: sender.account_sid.clone(),
            url,
            params: vec![
                ("AccountSid".to_owned(), sender.account_sid.clone()),
                ("SenderSid".to_owned(), sender.sid.clone()),
                ("Status".to_owned(), sender.status.to_owned()),
            ],
        })
    }

    /// Ends a template's review: approved, or rejected when its body starts or ends with a
    /// variable; the change to report, if any.
    pub(crate) fn complete_approval(&self, sid: &str) -> Option<Notice> {
        let mut inner = self.inner();
        let content = inner.contents.get(sid)?;
        let account_sid = content.account_sid.clone();
        let body = body_text(&content.body).unwrap_or_default().trim().to_owned();
        let base = self.config.whatsapp_callback_base.clone().or_else(|| {
            inner
                .senders
                .values()
                .filter(|sender| sender.account_sid == account_sid)
                .find_map(|sender| sender.callback_base.clone())
        });
        let approval = inner.contents.get_mut(sid)?.approval.as_mut()?;
        if text(approval, "/status") != Some("received") {
            return None;
        }
        if body.starts_with("{{") || body.ends_with("}}") {
            approval["status"] = json!("rejected");
            approval["rejection_reason"] =
                json!("INVALID_FORMAT: variables cannot be at the start or end of the template body");
        } else {
            approval["status"] = json!("approved");
        }
        let status = text(approval, "/status").unwrap_or_default().to_owned();
        Some(Notice {
            account_sid: account_sid.clone(),
            url: base.map(|base| format!("{base}/webhooks/twilio/content-status")),
            params: vec![
                ("AccountSid".to_owned(), account_sid),
                ("ContentSid".to_owned(), sid.to_owned()),
                ("ApprovalStatus".to_owned(), status),
            ],
        })
    }
}
