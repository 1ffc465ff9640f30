//! The units of work of each step: at most one Twilio write each, its SID recorded before the
//! next one.

use std::future::Future;
use std::time::Duration;

use common::address::PhoneNumber;
use common::credentials::{ACCOUNT_SID, seal};
use common::store::{Brand, BrandStatus, NumberStatus, ProviderKind, SenderKind, SenderNumber, StoreError};
use common::twilio::TwilioAccount;
use common::twilio::accounts::{
    A2P_TRUST_PRODUCT_POLICY_SID, AccountOpError, AccountStatus, BrandType, BundleKind, BundleStatus, CampaignStatus,
    EvaluationStatus, NewAddress, NewBrandRegistration, NewBundle, NewCampaign, NewEndUser, NewIncomingNumber,
    NewMessagingService, NewSupportingDocument, NumberSearch, SECONDARY_CUSTOMER_PROFILE_POLICY_SID,
};
use common::twilio::open_account;
use common::{Channel, TenantId};
use serde_json::json;

use super::{Fault, Onboarding, Outcome, Step, keys, now};
use crate::business_info::BusinessInfo;

/// Twilio's code for a number already in a Messaging Service (unconfirmed).
const NUMBER_IN_SERVICE: u32 = 21_710;
/// Numbers asked for in one search.
const SEARCH_PAGE: u32 = 20;

fn has(brand: &Brand, key: &str) -> bool {
    brand.twilio_sids.contains_key(key)
}

fn sid<'a>(brand: &'a Brand, key: &str) -> Result<&'a str, Fault> {
    brand
        .twilio_sids
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| Fault::Attention(format!("the workflow lost the twilio {key}; restart onboarding")))
}

impl Onboarding {
    /// One unit of `step`.
    pub(super) async fn unit(&self, brand: &mut Brand, step: Step) -> Result<Outcome, Fault> {
        if let Some(intent) = brand.twilio_sids.get(keys::INTENT).cloned() {
            return self.resolve_intent(brand, &intent).await;
        }
        match step {
            Step::Subaccount => self.subaccount(brand).await,
            Step::CustomerProfile => self.customer_profile(brand).await,
            Step::TrustProduct => self.trust_product(brand).await,
            Step::Brand => self.brand_registration(brand).await,
            Step::AwaitingApproval => self.poll_brand(brand).await,
            Step::PhoneNumber => self.phone_number(brand).await,
            Step::MessagingService => self.messaging_service(brand).await,
            Step::Campaign => self.campaign(brand).await,
            Step::CampaignReview => self.campaign_review(brand).await,
            Step::DemoReview => self.demo_approval(brand).await,
            Step::Ready => self.watch(brand).await,
            Step::Rejected | Step::NeedsAttention => Ok(Outcome::Wait(Duration::ZERO)),
        }
    }

    /// Persists the brand row as it is (progress within a step), keeping the workflow due now.
    async fn save(&self, brand: &mut Brand) -> Result<(), StoreError> {
        brand.updated_at = now();
        self.store.put_workflow(brand, Some(now())).await
    }

    /// Writes the intent to create `key`, then makes the call; the caller records the SID.
    async fn create<T>(
        &self,
        brand: &mut Brand,
        key: &str,
        call: impl Future<Output = Result<T, AccountOpError>>,
    ) -> Result<T, Fault> {
        brand.twilio_sids.insert(keys::INTENT.to_owned(), key.to_owned());
        self.save(brand).await?;
        match call.await {
            Ok(created) => Ok(created),
            Err(AccountOpError::Unknown { reason, .. }) => Err(Fault::Uncertain {
                key: key.to_owned(),
                reason,
            }),
            Err(error) => {
                brand.twilio_sids.remove(keys::INTENT);
                Err(Fault::Twilio(error))
            }
        }
    }

    /// Records a created object's SID and clears the intent.
    async fn record(&self, brand: &mut Brand, key: &str, value: &str) -> Result<(), StoreError> {
        brand.twilio_sids.remove(keys::INTENT);
        brand.twilio_sids.insert(key.to_owned(), value.to_owned());
        self.save(brand).await?;
        tracing::debug!(tenant = %brand.tenant_id, key, sid = value, "onboarding recorded a twilio object");
        Ok(())
    }

    /// An intent found on resumption: resolves it by a lookup where one exists, else stops.
    async fn resolve_intent(&self, brand: &mut Brand, intent: &str) -> Result<Outcome, Fault> {
        let kind = match intent {
            keys::CP_SUBMITTED => Some((BundleKind::CustomerProfile, keys::CUSTOMER_PROFILE)),
            keys::TP_SUBMITTED => Some((BundleKind::TrustProduct, keys::TRUST_PRODUCT)),
            _ => None,
        };
        if let Some((kind, bundle_key)) = kind {
            let account = self.account(&brand.tenant_id).await?;
            let bundle_sid = sid(brand, bundle_key)?.to_owned();
            let bundle = self.twilio.fetch_bundle(&account, kind, &bundle_sid).await?;
            if bundle.status == BundleStatus::Draft {
                brand.twilio_sids.remove(keys::INTENT);
                self.save(brand).await?;
            } else {
                self.record(brand, intent, bundle.status.as_str()).await?;
            }
            return Ok(Outcome::Progress);
        }
        if intent == keys::SUBACCOUNT
            && let Some(row) = self.store.credentials(&brand.tenant_id, Channel::Sms).await?
            && let Some(account_sid) = row.settings.get(ACCOUNT_SID).and_then(|value| value.as_str())
        {
            // The credentials row is written right after the subaccount is created.
            let account_sid = account_sid.to_owned();
            self.record(brand, keys::SUBACCOUNT, &account_sid).await?;
            return Ok(Outcome::Progress);
        }
        Err(Fault::Uncertain {
            key: intent.to_owned(),
            reason: "the process stopped while creating it".to_owned(),
        })
    }

    /// The tenant's Twilio account, from its SMS credentials.
    async fn account(&self, tenant: &TenantId) -> Result<TwilioAccount, Fault> {
        let row = self
            .store
            .credentials(tenant, Channel::Sms)
            .await?
            .ok_or_else(|| Fault::Attention("the SMS credentials were deleted during onboarding".to_owned()))?;
        open_account(&self.keyring, &row)
            .map_err(|error| Fault::Attention(format!("the stored SMS credentials cannot be used: {error}")))
    }

    async fn business_info(&self, tenant: &TenantId) -> Result<BusinessInfo, Fault> {
        let record = self
            .store
            .business_info(tenant)
            .await?
            .ok_or_else(|| Fault::Attention("the business information is missing".to_owned()))?;
        BusinessInfo::from_record(&record)
            .map_err(|error| Fault::Attention(format!("the stored business information is not readable: {error}")))
    }

    fn webhook(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    async fn subaccount(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        let tenant = brand.tenant_id.clone();
        if let Some(mut row) = self.store.credentials(&tenant, Channel::Sms).await? {
            let account = open_account(&self.keyring, &row)
                .map_err(|error| Fault::Attention(format!("the stored SMS credentials cannot be used: {error}")))?;
            if !row.is_verified {
                let info = self.twilio.fetch_account(&account, &account.account_sid).await?;
                if info.status != AccountStatus::Active {
                    return Err(Fault::Attention(format!(
                        "the twilio account {} is {}",
                        account.account_sid, info.status
                    )));
                }
                row.is_verified = true;
                row.verification_error = None;
                row.updated_at = now();
                self.store.put_credentials(&row).await?;
            }
            brand
                .twilio_sids
                .insert(keys::ACCOUNT.to_owned(), account.account_sid.clone());
            return Ok(Outcome::Done(Step::CustomerProfile, None));
        }
        if let Some(subaccount) = brand.twilio_sids.get(keys::SUBACCOUNT) {
            return Err(Fault::Attention(format!(
                "the SMS credentials of the platform subaccount {subaccount} were deleted; an operator must restore them"
            )));
        }
        let Some(master) = self.master() else {
            return Err(Fault::Attention(
                "no twilio account: the platform has no master account configured; save your own twilio account \
                 with POST /v1/channels/sms, then POST /v1/channels/sms/resubmit"
                    .to_owned(),
            ));
        };
        let name = format!("EngageNinja tenant {tenant}");
        let sub = self
            .create(brand, keys::SUBACCOUNT, self.twilio.create_subaccount(&master, &name))
            .await?;
        // The token is handed out once: it is stored (sealed) before anything else.
        let row = seal(
            &self.keyring,
            &tenant,
            Channel::Sms,
            ProviderKind::Twilio,
            json!({ ACCOUNT_SID: sub.sid }),
            &sub.auth_token,
        );
        self.store.put_credentials(&row).await?;
        self.record(brand, keys::SUBACCOUNT, &sub.sid).await?;
        self.audit(
            &tenant,
            "system",
            "channel_credentials.saved",
            json!({ "channel": Channel::Sms, "account": sub.sid, "origin": "platform_subaccount", "key_id": row.key_id }),
        )
        .await?;
        Ok(Outcome::Progress)
    }

    /// Creates, records and answers the SID of a bundle's object if missing; `None` if all exist.
    async fn customer_profile(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        let account = self.account(&brand.tenant_id).await?;
        let info = self.business_info(&brand.tenant_id).await?;
        let kind = BundleKind::CustomerProfile;
        if !has(brand, keys::CUSTOMER_PROFILE) {
            let bundle = NewBundle {
                friendly_name: format!("{} customer profile", info.legal_business_name),
                email: info.owner_email.clone(),
                policy_sid: SECONDARY_CUSTOMER_PROFILE_POLICY_SID.to_owned(),
                status_callback: Some(self.webhook("/webhooks/twilio/brand-status")),
            };
            let created = self
                .create(
                    brand,
                    keys::CUSTOMER_PROFILE,
                    self.twilio.create_bundle(&account, kind, &bundle),
                )
                .await?;
            self.record(brand, keys::CUSTOMER_PROFILE, &created.sid).await?;
            return Ok(Outcome::Progress);
        }
        if !has(brand, keys::CP_BUSINESS) {
            let user = NewEndUser {
                end_user_type: "customer_profile_business_information".to_owned(),
                friendly_name: format!("{} business information", info.legal_business_name),
                attributes: json!({
                    "business_name": info.legal_business_name,
                    "business_type": info.twilio_business_type(),
                    "business_industry": info.industry.to_ascii_uppercase(),
                    "business_registration_identifier": "EIN",
                    "business_registration_number": info.ein,
                    "business_regions_of_operation": "USA_AND_CANADA",
                    "website_url": info.website,
                    "social_media_profile_urls": "",
                }),
            };
            let created = self
                .create(brand, keys::CP_BUSINESS, self.twilio.create_end_user(&account, &user))
                .await?;
            self.record(brand, keys::CP_BUSINESS, &created.sid).await?;
            return Ok(Outcome::Progress);
        }
        if !has(brand, keys::CP_REPRESENTATIVE) {
            let (first_name, last_name) = info.owner_names();
            let user = NewEndUser {
                end_user_type: "authorized_representative_1".to_owned(),
                friendly_name: format!("{} authorized representative", info.legal_business_name),
                attributes: json!({
                    "first_name": first_name,
                    "last_name": last_name,
                    "email": info.owner_email,
                    "phone_number": info.owner_phone,
                    "business_title": info.owner_title,
                    "job_position": "Other",
                }),
            };
            let created = self
                .create(
                    brand,
                    keys::CP_REPRESENTATIVE,
                    self.twilio.create_end_user(&account, &user),
                )
                .await?;
            self.record(brand, keys::CP_REPRESENTATIVE, &created.sid).await?;
            return Ok(Outcome::Progress);
        }
        // Trust Hub's evaluation wants the business address as an Address resource of the
        // account, referenced by the address document, not as free text in the document.
        if !has(brand, keys::ADDRESS) {
            let address = NewAddress {
                customer_name: info.legal_business_name.clone(),
                street: info.address.clone(),
                city: info.city.clone(),
                region: info.state.clone(),
                postal_code: info.zip.clone(),
                iso_country: info.country.clone(),
                friendly_name: format!("{} business address", info.legal_business_name),
            };
            let created = self
                .create(brand, keys::ADDRESS, self.twilio.create_address(&account, &address))
                .await?;
            self.record(brand, keys::ADDRESS, &created.sid).await?;
            return Ok(Outcome::Progress);
        }
        if !has(brand, keys::CP_ADDRESS) {
            let document = NewSupportingDocument {
                document_type: "customer_profile_address".to_owned(),
                friendly_name: format!("{} address", info.legal_business_name),
                attributes: json!({ "address_sids": brand.twilio_sids.get(keys::ADDRESS) }),
            };
            let created = self
                .create(
                    brand,
                    keys::CP_ADDRESS,
                    self.twilio.create_supporting_document(&account, &document),
                )
                .await?;
            self.record(brand, keys::CP_ADDRESS, &created.sid).await?;
            return Ok(Outcome::Progress);
        }
        let assignments = [
            (keys::CP_ASSIGNED_BUSINESS, keys::CP_BUSINESS),
            (keys::CP_ASSIGNED_REPRESENTATIVE, keys::CP_REPRESENTATIVE),
            (keys::CP_ASSIGNED_ADDRESS, keys::CP_ADDRESS),
        ];
        if self
            .assign_next(brand, &account, kind, keys::CUSTOMER_PROFILE, &assignments)
            .await?
        {
            return Ok(Outcome::Progress);
        }
        if !has(brand, keys::CP_SUBMITTED) {
            return self
                .evaluate_and_submit(
                    brand,
                    &account,
                    kind,
                    keys::CUSTOMER_PROFILE,
                    SECONDARY_CUSTOMER_PROFILE_POLICY_SID,
                    keys::CP_SUBMITTED,
                )
                .await;
        }
        Ok(Outcome::Done(Step::TrustProduct, None))
    }

    /// Makes the first missing assignment of `assignments` (assignment key, object key); false
    /// if all exist.
    async fn assign_next(
        &self,
        brand: &mut Brand,
        account: &TwilioAccount,
        kind: BundleKind,
        bundle_key: &str,
        assignments: &[(&str, &str)],
    ) -> Result<bool, Fault> {
        for (assignment_key, object_key) in assignments {
            if has(brand, assignment_key) {
                continue;
            }
            let bundle_sid = sid(brand, bundle_key)?.to_owned();
            let object_sid = sid(brand, object_key)?.to_owned();
            let created = self
                .create(
                    brand,
                    assignment_key,
                    self.twilio.assign_to_bundle(account, kind, &bundle_sid, &object_sid),
                )
                .await?;
            self.record(brand, assignment_key, &created.sid).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Evaluates a bundle (it must be compliant) and submits it; a lost answer to the
    /// submission is resolved on the next unit by fetching the bundle.
    async fn evaluate_and_submit(
        &self,
        brand: &mut Brand,
        account: &TwilioAccount,
        kind: BundleKind,
        bundle_key: &str,
        policy_sid: &str,
        submitted_key: &str,
    ) -> Result<Outcome, Fault> {
        let bundle_sid = sid(brand, bundle_key)?.to_owned();
        let evaluation = self
            .twilio
            .evaluate_bundle(account, kind, &bundle_sid, policy_sid)
            .await?;
        if evaluation.status != EvaluationStatus::Compliant {
            let failures: Vec<String> = evaluation
                .results
                .iter()
                .filter(|result| !result.passed)
                .map(|result| {
                    format!(
                        "{}: {}",
                        result.friendly_name.as_deref().unwrap_or("requirement"),
                        result.failure_reason.as_deref().unwrap_or("not met")
                    )
                })
                .collect();
            return Err(Fault::Attention(format!(
                "twilio found the {} not compliant: {}",
                match kind {
                    BundleKind::CustomerProfile => "customer profile",
                    BundleKind::TrustProduct => "trust product",
                },
                failures.join("; ")
            )));
        }
        brand
            .twilio_sids
            .insert(keys::INTENT.to_owned(), submitted_key.to_owned());
        self.save(brand).await?;
        match self.twilio.submit_bundle(account, kind, &bundle_sid).await {
            Ok(bundle) => {
                self.record(brand, submitted_key, bundle.status.as_str()).await?;
                Ok(Outcome::Progress)
            }
            // Resolved on the next unit by fetching the bundle.
            Err(AccountOpError::Unknown { .. }) => Ok(Outcome::Progress),
            Err(error) => {
                brand.twilio_sids.remove(keys::INTENT);
                Err(Fault::Twilio(error))
            }
        }
    }

    async fn trust_product(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        let account = self.account(&brand.tenant_id).await?;
        let info = self.business_info(&brand.tenant_id).await?;
        let kind = BundleKind::TrustProduct;
        if !has(brand, keys::TRUST_PRODUCT) {
            let bundle = NewBundle {
                friendly_name: format!("{} A2P messaging profile", info.legal_business_name),
                email: info.owner_email.clone(),
                policy_sid: A2P_TRUST_PRODUCT_POLICY_SID.to_owned(),
                status_callback: None,
            };
            let created = self
                .create(
                    brand,
                    keys::TRUST_PRODUCT,
                    self.twilio.create_bundle(&account, kind, &bundle),
                )
                .await?;
            self.record(brand, keys::TRUST_PRODUCT, &created.sid).await?;
            return Ok(Outcome::Progress);
        }
        if !has(brand, keys::TP_PROFILE) {
            let user = NewEndUser {
                end_user_type: "us_a2p_messaging_profile_information".to_owned(),
                friendly_name: format!("{} messaging profile", info.legal_business_name),
                attributes: json!({ "company_type": if info.business_type == "non_profit" { "non-profit" } else { "private" } }),
            };
            let created = self
                .create(brand, keys::TP_PROFILE, self.twilio.create_end_user(&account, &user))
                .await?;
            self.record(brand, keys::TP_PROFILE, &created.sid).await?;
            return Ok(Outcome::Progress);
        }
        let assignments = [
            (keys::TP_ASSIGNED_PROFILE, keys::TP_PROFILE),
            (keys::TP_ASSIGNED_CUSTOMER_PROFILE, keys::CUSTOMER_PROFILE),
        ];
        if self
            .assign_next(brand, &account, kind, keys::TRUST_PRODUCT, &assignments)
            .await?
        {
            return Ok(Outcome::Progress);
        }
        if !has(brand, keys::TP_SUBMITTED) {
            return self
                .evaluate_and_submit(
                    brand,
                    &account,
                    kind,
                    keys::TRUST_PRODUCT,
                    A2P_TRUST_PRODUCT_POLICY_SID,
                    keys::TP_SUBMITTED,
                )
                .await;
        }
        Ok(Outcome::Done(Step::Brand, None))
    }

    async fn brand_registration(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        let account = self.account(&brand.tenant_id).await?;
        let info = self.business_info(&brand.tenant_id).await?;
        if !has(brand, keys::BRAND) {
            let registration = NewBrandRegistration {
                customer_profile_bundle_sid: sid(brand, keys::CUSTOMER_PROFILE)?.to_owned(),
                a2p_profile_bundle_sid: sid(brand, keys::TRUST_PRODUCT)?.to_owned(),
                brand_type: if info.business_type == "sole_proprietor" {
                    BrandType::SoleProprietor
                } else {
                    BrandType::Standard
                },
                mock: false,
                skip_automatic_sec_vet: false,
            };
            let created = self
                .create(
                    brand,
                    keys::BRAND,
                    self.twilio.create_brand_registration(&account, &registration),
                )
                .await?;
            brand.status = BrandStatus::Pending;
            self.record(brand, keys::BRAND, &created.sid).await?;
        }
        Ok(Outcome::Done(
            Step::AwaitingApproval,
            Some(self.settings.poll_interval()),
        ))
    }

    /// The polling fallback of the brand-status webhook.
    async fn poll_brand(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        let account = self.account(&brand.tenant_id).await?;
        let brand_sid = sid(brand, keys::BRAND)?.to_owned();
        let registration = self.twilio.fetch_brand_registration(&account, &brand_sid).await?;
        let reason = registration.failure_reason.clone().or_else(|| {
            (!registration.errors.is_empty()).then(|| serde_json::Value::from(registration.errors.clone()).to_string())
        });
        self.apply_brand_status(brand, &registration.status, registration.brand_score, reason)
    }

    /// Applies a brand status from a poll or the webhook.
    pub(super) fn apply_brand_status(
        &self,
        brand: &mut Brand,
        status: &common::twilio::accounts::BrandStatus,
        score: Option<u32>,
        reason: Option<String>,
    ) -> Result<Outcome, Fault> {
        use common::twilio::accounts::BrandStatus as Twilio;
        match status {
            Twilio::Approved => {
                brand.status = BrandStatus::Approved;
                brand.trust_score = score.map(|score| u8::try_from(score.min(100)).unwrap_or(100));
                brand.approved_at = Some(now());
                Ok(Outcome::Done(Step::PhoneNumber, None))
            }
            Twilio::Failed | Twilio::Suspended => {
                brand.status = if *status == Twilio::Failed {
                    BrandStatus::Failed
                } else {
                    BrandStatus::Suspended
                };
                brand.status_reason = Some(reason.unwrap_or_else(|| format!("twilio reports the brand {status}")));
                Ok(Outcome::Rejected)
            }
            Twilio::Pending => {
                brand.status = BrandStatus::Pending;
                Ok(Outcome::Wait(self.settings.poll_interval()))
            }
            Twilio::InReview => {
                brand.status = BrandStatus::InReview;
                Ok(Outcome::Wait(self.settings.poll_interval()))
            }
            other => Err(Fault::Attention(format!(
                "twilio reports the brand registration {other}"
            ))),
        }
    }

    async fn phone_number(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        let account = self.account(&brand.tenant_id).await?;
        if !has(brand, keys::PHONE_NUMBER) {
            let info = self.business_info(&brand.tenant_id).await?;
            let area_code = self.settings.area_code.or_else(|| area_code_of(&info.owner_phone));
            let mut found = Vec::new();
            if let Some(area_code) = area_code {
                match self
                    .twilio
                    .search_available_numbers(&account, &search(Some(area_code)))
                    .await
                {
                    Ok(numbers) => found = numbers,
                    // An area code Twilio does not know: search anywhere.
                    Err(AccountOpError::Rejected { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            if found.is_empty() {
                found = self.twilio.search_available_numbers(&account, &search(None)).await?;
            }
            let Some(number) = found.into_iter().find(|number| number.capabilities.sms) else {
                return Err(Fault::Attention(
                    "twilio offers no SMS-capable local number to buy".to_owned(),
                ));
            };
            let order = NewIncomingNumber {
                phone_number: number.phone_number.clone(),
                sms_url: Some(self.webhook("/webhooks/twilio/inbound")),
                sms_method: Some("POST".to_owned()),
                status_callback: Some(self.webhook("/webhooks/twilio/status")),
                friendly_name: Some(format!("EngageNinja {}", brand.tenant_id)),
            };
            let bought = self
                .create(brand, keys::PHONE_NUMBER, self.twilio.buy_number(&account, &order))
                .await?;
            brand.twilio_sids.insert(
                keys::PHONE_NUMBER_E164.to_owned(),
                bought.phone_number.as_str().to_owned(),
            );
            self.record(brand, keys::PHONE_NUMBER, &bought.sid).await?;
            return Ok(Outcome::Progress);
        }
        self.put_number(brand, NumberStatus::Provisioning).await?;
        Ok(Outcome::Done(Step::MessagingService, None))
    }

    /// Writes the bought number's sender row with `status`.
    /// A demo tenant's simulated approval: the brand approved with a good score and a
    /// fictional number (`+1 NXX 555 01XX`, reserved for fiction) made its active sender.
    async fn demo_approval(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        let area = self.settings.area_code.unwrap_or(202);
        let start = brand.tenant_id.as_str().bytes().fold(0_usize, |hash, byte| {
            hash.wrapping_mul(31).wrapping_add(usize::from(byte))
        });
        let mut assigned = None;
        for offset in 0..100 {
            let raw = format!("+1{area}55501{:02}", (start + offset) % 100);
            let number = PhoneNumber::parse(&raw)
                .map_err(|error| Fault::Attention(format!("no fictional number in area code {area}: {error}")))?;
            let row = SenderNumber {
                tenant_id: brand.tenant_id.clone(),
                number,
                kind: SenderKind::LongCode,
                status: NumberStatus::Active,
                twilio_sid: None,
                rate_per_second: None,
                created_at: now(),
                registration: None,
            };
            match self.store.put_sender_number(&row).await {
                Ok(()) => {
                    assigned = Some(raw);
                    break;
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        let number =
            assigned.ok_or_else(|| Fault::Attention(format!("every fictional number of area code {area} is taken")))?;
        brand.twilio_sids.insert(keys::PHONE_NUMBER_E164.to_owned(), number);
        brand.status = BrandStatus::Approved;
        brand.trust_score = Some(75);
        brand.approved_at = Some(now());
        Ok(Outcome::Done(Step::Ready, Some(self.settings.watch_interval())))
    }

    async fn put_number(&self, brand: &Brand, status: NumberStatus) -> Result<(), Fault> {
        let raw = sid(brand, keys::PHONE_NUMBER_E164)?;
        let number = PhoneNumber::parse(raw)
            .map_err(|error| Fault::Attention(format!("the bought number {raw} is not usable: {error}")))?;
        let existing = self.store.sender_numbers(&brand.tenant_id).await?;
        let created_at = existing
            .iter()
            .find(|row| row.number == number)
            .map_or_else(now, |row| row.created_at);
        let row = SenderNumber {
            tenant_id: brand.tenant_id.clone(),
            number,
            kind: SenderKind::LongCode,
            status,
            twilio_sid: brand.twilio_sids.get(keys::PHONE_NUMBER).cloned(),
            rate_per_second: None,
            created_at,
            registration: None,
        };
        match self.store.put_sender_number(&row).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(message)) => Err(Fault::Attention(format!(
                "the bought number {raw} is held by another tenant: {message}"
            ))),
            Err(error) => Err(error.into()),
        }
    }

    async fn messaging_service(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        let account = self.account(&brand.tenant_id).await?;
        if !has(brand, keys::MESSAGING_SERVICE) {
            let info = self.business_info(&brand.tenant_id).await?;
            let service = NewMessagingService {
                friendly_name: info.legal_business_name.clone(),
                inbound_request_url: Some(self.webhook("/webhooks/twilio/inbound")),
                status_callback: Some(self.webhook("/webhooks/twilio/status")),
            };
            let created = self
                .create(
                    brand,
                    keys::MESSAGING_SERVICE,
                    self.twilio.create_messaging_service(&account, &service),
                )
                .await?;
            self.record(brand, keys::MESSAGING_SERVICE, &created.sid).await?;
            return Ok(Outcome::Progress);
        }
        if !has(brand, keys::SERVICE_NUMBER) {
            let service_sid = sid(brand, keys::MESSAGING_SERVICE)?.to_owned();
            let number_sid = sid(brand, keys::PHONE_NUMBER)?.to_owned();
            // Adding twice is refused with 21710, so a lost answer is simply retried.
            match self
                .twilio
                .add_service_phone_number(&account, &service_sid, &number_sid)
                .await
            {
                Ok(_) => {}
                Err(error) if error.api_error().and_then(|api| api.code) == Some(NUMBER_IN_SERVICE) => {}
                Err(AccountOpError::Unknown { operation, reason }) => {
                    return Err(Fault::Twilio(AccountOpError::Transient {
                        operation,
                        reason,
                        retry_after: None,
                    }));
                }
                Err(error) => return Err(error.into()),
            }
            self.record(brand, keys::SERVICE_NUMBER, &number_sid).await?;
        }
        Ok(Outcome::Done(Step::Campaign, None))
    }

    async fn campaign(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        if !has(brand, keys::CAMPAIGN) {
            let account = self.account(&brand.tenant_id).await?;
            let info = self.business_info(&brand.tenant_id).await?;
            let service_sid = sid(brand, keys::MESSAGING_SERVICE)?.to_owned();
            let campaign = new_campaign(&info, sid(brand, keys::BRAND)?);
            let created = self
                .create(
                    brand,
                    keys::CAMPAIGN,
                    self.twilio.create_campaign(&account, &service_sid, &campaign),
                )
                .await?;
            self.record(brand, keys::CAMPAIGN, &created.sid).await?;
        }
        Ok(Outcome::Done(Step::CampaignReview, None))
    }

    async fn campaign_review(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        let account = self.account(&brand.tenant_id).await?;
        let service_sid = sid(brand, keys::MESSAGING_SERVICE)?.to_owned();
        let campaign_sid = sid(brand, keys::CAMPAIGN)?.to_owned();
        let campaign = self
            .twilio
            .fetch_campaign(&account, &service_sid, &campaign_sid)
            .await?;
        match campaign.campaign_status {
            CampaignStatus::Verified => {
                self.put_number(brand, NumberStatus::Active).await?;
                Ok(Outcome::Done(Step::Ready, Some(self.settings.watch_interval())))
            }
            CampaignStatus::Failed => Err(Fault::Attention(format!(
                "twilio refused the A2P campaign {campaign_sid}"
            ))),
            _ => Ok(Outcome::Wait(
                self.settings.poll_interval().min(Duration::from_secs(60)),
            )),
        }
    }

    /// A ready tenant's brand and campaign, fetched again: a brand the carriers failed or
    /// suspended after approving it rejects the workflow (its SMS stops at admission with
    /// `BRAND_SUSPENDED` or `UPDATE_BUSINESS_INFO`); a campaign no longer verified suspends the
    /// tenant's SMS numbers (`CAMPAIGN_SUSPENDED`) until it is verified again. A failed fetch
    /// changes nothing and is tried again at the next watch. A tenant with no brand at Twilio
    /// (a demo tenant) has nothing to watch.
    async fn watch(&self, brand: &mut Brand) -> Result<Outcome, Fault> {
        let interval = self.settings.watch_interval();
        let (Some(brand_sid), Some(service_sid), Some(campaign_sid)) = (
            brand.twilio_sids.get(keys::BRAND).cloned(),
            brand.twilio_sids.get(keys::MESSAGING_SERVICE).cloned(),
            brand.twilio_sids.get(keys::CAMPAIGN).cloned(),
        ) else {
            return Ok(Outcome::Idle);
        };
        let tenant = brand.tenant_id.clone();
        let account = match self.account(&tenant).await {
            Ok(account) => account,
            Err(Fault::Store(error)) => return Err(Fault::Store(error)),
            Err(fault) => {
                tracing::warn!(%tenant, ?fault, "ready tenant's twilio account unavailable, watched again later");
                return Ok(Outcome::Watch(interval));
            }
        };
        let registration = match self.twilio.fetch_brand_registration(&account, &brand_sid).await {
            Ok(registration) => registration,
            Err(error) => {
                tracing::warn!(%tenant, %error, "could not fetch a ready tenant's brand, watched again later");
                return Ok(Outcome::Watch(interval));
            }
        };
        use common::twilio::accounts::BrandStatus as Twilio;
        if matches!(registration.status, Twilio::Failed | Twilio::Suspended) {
            let reason = registration.failure_reason.clone().or_else(|| {
                (!registration.errors.is_empty())
                    .then(|| serde_json::Value::from(registration.errors.clone()).to_string())
            });
            return self.apply_brand_status(brand, &registration.status, registration.brand_score, reason);
        }
        let campaign = match self.twilio.fetch_campaign(&account, &service_sid, &campaign_sid).await {
            Ok(campaign) => campaign,
            Err(error) => {
                tracing::warn!(%tenant, %error, "could not fetch a ready tenant's campaign, watched again later");
                return Ok(Outcome::Watch(interval));
            }
        };
        let verified = campaign.campaign_status == CampaignStatus::Verified;
        let numbers = self.store.sender_numbers(&tenant).await?;
        let suspended = numbers.iter().any(|number| number.status == NumberStatus::Suspended);
        if verified && suspended {
            self.put_number(brand, NumberStatus::Active).await?;
            brand.status_reason = None;
            self.audit(
                &tenant,
                "twilio",
                "onboarding.campaign_verified_again",
                json!({ "campaign": campaign_sid }),
            )
            .await?;
            tracing::info!(%tenant, campaign = campaign_sid, "a2p campaign verified again, sms resumes");
        } else if !verified && !suspended {
            self.put_number(brand, NumberStatus::Suspended).await?;
            let status = campaign.campaign_status.as_str();
            brand.status_reason = Some(format!("twilio reports the A2P campaign {campaign_sid} as {status}"));
            self.audit(
                &tenant,
                "twilio",
                "onboarding.campaign_suspended",
                json!({ "campaign": campaign_sid, "status": status }),
            )
            .await?;
            tracing::warn!(%tenant, campaign = campaign_sid, status, "a2p campaign no longer verified, sms held");
        }
        Ok(Outcome::Watch(interval))
    }
}

/// A search for SMS-capable US local numbers, in `area_code` if given.
fn search(area_code: Option<u16>) -> NumberSearch {
    NumberSearch {
        country: "US".to_owned(),
        area_code,
        contains: None,
        sms_enabled: Some(true),
        in_region: None,
        page_size: Some(SEARCH_PAGE),
    }
}

/// The area code of a US number (`+1NXX...`).
fn area_code_of(phone: &str) -> Option<u16> {
    let digits = phone.strip_prefix("+1")?;
    if digits.len() != 10 {
        return None;
    }
    digits.get(..3)?.parse().ok()
}

/// The campaign registered from the business information.
fn new_campaign(info: &BusinessInfo, brand_sid: &str) -> NewCampaign {
    let name = info.dba_name.as_deref().unwrap_or(&info.legal_business_name);
    let message_flow = info.sms_opt_in_language.clone().unwrap_or_else(|| {
        format!(
            "Customers of {name} opt in to text messages by giving their mobile number to {name} and agreeing to \
             receive messages. Reply STOP to opt out, HELP for help."
        )
    });
    let message_samples = info.message_samples.clone().unwrap_or_else(|| {
        vec![
            format!("{name}: your request has been updated. Reply STOP to opt out."),
            format!("{name}: thanks for your message, we will get back to you shortly. Reply HELP for help."),
        ]
    });
    NewCampaign {
        brand_registration_sid: brand_sid.to_owned(),
        description: info.use_case_description.clone(),
        message_flow,
        message_samples,
        us_app_to_person_usecase: info.twilio_use_case().to_owned(),
        has_embedded_links: false,
        has_embedded_phone: false,
        opt_in_message: Some(format!(
            "{name}: you are subscribed to our messages. Reply STOP to opt out."
        )),
        opt_out_message: Some(format!(
            "{name}: you are unsubscribed and will receive no more messages."
        )),
        help_message: Some(format!("{name}: for help, contact {}.", info.owner_email)),
        opt_in_keywords: vec!["START".to_owned()],
        opt_out_keywords: vec!["STOP".to_owned(), "UNSUBSCRIBE".to_owned()],
        help_keywords: vec!["HELP".to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_codes_come_from_us_numbers_only() {
        assert_eq!(area_code_of("+14155550100"), Some(415));
        assert_eq!(area_code_of("+442071838750"), None);
        assert_eq!(area_code_of("+1415555"), None);
    }
}
