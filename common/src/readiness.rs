//! Whether a live tenant's channel can send, and if not what the tenant must do: one answer
//! for the dispatcher's admission and for the admin API's status and preflight routes.
//!
//! A channel is ready when its credentials are saved and verified; SMS also needs an approved
//! 10DLC brand, email a sender address; SMS and WhatsApp need an active number of their kind
//! (an SMS number is suspended while its A2P campaign is not verified).
//! Demo tenants are always ready (their traffic is simulated) and are not checked here.

use serde::Serialize;

use crate::Channel;
use crate::credentials::{FROM_ADDRESS, setting};
use crate::store::{
    Brand, BrandStatus, ChannelCredentials, NumberStatus, SenderKind, SenderNumber, Store, StoreError, Tenant,
};

/// Why a channel cannot send, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotReady {
    /// No credentials for the channel (or, for email, no sender address).
    ChannelNotConfigured,
    /// The credentials were refused by the provider or not checked yet.
    CredentialsUnverified,
    /// SMS: no business info and brand yet.
    ConfigureBusinessInfo,
    /// SMS: the 10DLC brand is under review.
    WaitForApproval,
    /// SMS: the 10DLC brand was rejected.
    UpdateBusinessInfo,
    /// SMS: the carriers suspended the 10DLC brand after approving it.
    BrandSuspended,
    /// SMS: the A2P campaign is no longer verified (failed or suspended after approval).
    CampaignSuspended,
    /// No active number for the channel.
    NoActiveNumber,
    /// WhatsApp: no sender registered.
    RegisterWhatsappSender,
    /// WhatsApp: a sender is registered but not online (being created, waiting for its
    /// verification code, or offline).
    WhatsappSenderNotOnline,
}

impl NotReady {
    /// The stable code (also the reason of a message refused for it).
    pub fn code(self) -> &'static str {
        match self {
            NotReady::ChannelNotConfigured => "CHANNEL_NOT_CONFIGURED",
            NotReady::CredentialsUnverified => "CREDENTIALS_UNVERIFIED",
            NotReady::ConfigureBusinessInfo => "CONFIGURE_BUSINESS_INFO",
            NotReady::WaitForApproval => "WAIT_FOR_APPROVAL",
            NotReady::UpdateBusinessInfo => "UPDATE_BUSINESS_INFO",
            NotReady::BrandSuspended => "BRAND_SUSPENDED",
            NotReady::CampaignSuspended => "CAMPAIGN_SUSPENDED",
            NotReady::NoActiveNumber => "NO_ACTIVE_NUMBER",
            NotReady::RegisterWhatsappSender => "REGISTER_WHATSAPP_SENDER",
            NotReady::WhatsappSenderNotOnline => "WHATSAPP_SENDER_NOT_ONLINE",
        }
    }

    /// What the tenant should do about it.
    pub fn next_step(self) -> &'static str {
        match self {
            NotReady::ChannelNotConfigured => "save the channel's credentials with POST /v1/channels/{channel}",
            NotReady::CredentialsUnverified => {
                "the provider refused the saved credentials: save correct ones with POST /v1/channels/{channel}"
            }
            NotReady::ConfigureBusinessInfo => "submit your business information with POST /v1/business-info",
            NotReady::WaitForApproval => "your 10DLC brand is under review; sending starts once it is approved",
            NotReady::UpdateBusinessInfo => {
                "your 10DLC brand was rejected: correct your business information and resubmit"
            }
            NotReady::BrandSuspended => {
                "the carriers suspended your 10DLC brand (its status_reason says why): correct your business \
                 information and resubmit with POST /v1/channels/sms/resubmit"
            }
            NotReady::CampaignSuspended => {
                "your A2P campaign is no longer verified (its status_reason says why); SMS resumes by itself once \
                 twilio verifies it again"
            }
            NotReady::NoActiveNumber => "no active sender number yet; onboarding buys one once the brand is approved",
            NotReady::RegisterWhatsappSender => "register a whatsapp sender with POST /v1/channels/whatsapp/senders",
            NotReady::WhatsappSenderNotOnline => {
                "your whatsapp sender is not online yet: GET /v1/channels/whatsapp/senders shows its next_action"
            }
        }
    }
}

/// What a ready channel sends with.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    /// The verified credentials.
    pub credentials: ChannelCredentials,
    /// SMS: the approved brand.
    pub brand: Option<Brand>,
    /// SMS and WhatsApp: the active numbers of the channel's kind.
    pub numbers: Vec<SenderNumber>,
}

/// Whether `kind` of number sends on `channel`.
pub fn serves(kind: SenderKind, channel: Channel) -> bool {
    match channel {
        Channel::Sms => kind != SenderKind::Whatsapp,
        Channel::Whatsapp => kind == SenderKind::Whatsapp,
        Channel::Email => false,
    }
}

/// Checks a live tenant's channel.
pub async fn check(
    store: &dyn Store,
    tenant: &Tenant,
    channel: Channel,
) -> Result<Result<Ready, NotReady>, StoreError> {
    let Some(credentials) = store.credentials(&tenant.id, channel).await? else {
        return Ok(Err(NotReady::ChannelNotConfigured));
    };
    if !credentials.is_verified {
        return Ok(Err(NotReady::CredentialsUnverified));
    }
    let brand = match channel {
        Channel::Sms => match store.brand(&tenant.id).await? {
            None => return Ok(Err(NotReady::ConfigureBusinessInfo)),
            Some(brand) => match brand.status {
                BrandStatus::Approved => Some(brand),
                BrandStatus::Draft | BrandStatus::Pending | BrandStatus::InReview => {
                    return Ok(Err(NotReady::WaitForApproval));
                }
                BrandStatus::Failed => return Ok(Err(NotReady::UpdateBusinessInfo)),
                BrandStatus::Suspended => return Ok(Err(NotReady::BrandSuspended)),
            },
        },
        Channel::Whatsapp | Channel::Email => None,
    };
    let numbers: Vec<SenderNumber> = match channel {
        Channel::Email => {
            if setting(&credentials, FROM_ADDRESS).is_none() {
                return Ok(Err(NotReady::ChannelNotConfigured));
            }
            Vec::new()
        }
        Channel::Sms | Channel::Whatsapp => {
            let (numbers, others): (Vec<SenderNumber>, Vec<SenderNumber>) = store
                .sender_numbers(&tenant.id)
                .await?
                .into_iter()
                .filter(|number| serves(number.kind, channel))
                .partition(|number| number.status == NumberStatus::Active);
            if numbers.is_empty() {
                let waiting = |status| others.iter().any(|number| number.status == status);
                return Ok(Err(match channel {
                    Channel::Whatsapp if waiting(NumberStatus::Provisioning) || waiting(NumberStatus::Suspended) => {
                        NotReady::WhatsappSenderNotOnline
                    }
                    Channel::Whatsapp => NotReady::RegisterWhatsappSender,
                    _ if waiting(NumberStatus::Suspended) => NotReady::CampaignSuspended,
                    _ => NotReady::NoActiveNumber,
                }));
            }
            numbers
        }
    };
    Ok(Ok(Ready {
        credentials,
        brand,
        numbers,
    }))
}
