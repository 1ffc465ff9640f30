//! What a [`Simulator`](super::Simulator) accepts and how it misbehaves.

use std::collections::HashMap;
use std::time::Duration;

/// An invalid simulator configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// No account is configured, so every request would get a 401.
    #[error("at least one account (sid and auth token) is required")]
    NoAccounts,
    /// The per-account concurrency is zero.
    #[error("the concurrency per account must be at least 1")]
    ZeroConcurrency,
    /// A rate is not a finite number in 0..=1, or the injected rates add up to more than 1.
    #[error("invalid fault rate {name}: {value} (each must be in 0..=1 and together at most 1)")]
    InvalidFaultRate {
        /// Which rate.
        name: &'static str,
        /// Its value (or the sum of all of them).
        value: f64,
    },
    /// A sender rate is not a finite number above zero.
    #[error("invalid sender rate for {sender:?}: {rate}")]
    InvalidSenderRate {
        /// The sender (`*` for the default rate).
        sender: String,
        /// The rate given.
        rate: f64,
    },
}

/// Injected faults: shares of accepted-for-processing create requests (each in 0..=1, together at
/// most 1). One random draw per request picks at most one of them, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Answer 503 (code 20503) without creating the message: safe for the client to retry.
    pub server_error_rate: f64,
    /// Create the message but hold the answer for [`SimulatorConfig::timeout_hold`], so the
    /// client times out and must treat the outcome as unknown (the message does exist); the
    /// request keeps its account concurrency slot meanwhile.
    pub timeout_rate: f64,
    /// Create the message, then answer 500 (code 20500) as if nothing happened: Twilio's 500
    /// is an unknown outcome, and the message does exist (found by listing the recipient's
    /// messages).
    pub lost_answer_rate: f64,
    /// Create the message; it later ends `undelivered` with code 30003 (unreachable handset).
    pub unreachable_rate: f64,
    /// Create the message; it later ends `undelivered` with code 30007 (carrier filtering).
    pub filtered_rate: f64,
}

impl Faults {
    fn validate(&self) -> Result<(), ConfigError> {
        let rates = [
            ("server_error_rate", self.server_error_rate),
            ("timeout_rate", self.timeout_rate),
            ("lost_answer_rate", self.lost_answer_rate),
            ("unreachable_rate", self.unreachable_rate),
            ("filtered_rate", self.filtered_rate),
        ];
        for (name, value) in rates {
            if !value.is_finite() || !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::InvalidFaultRate { name, value });
            }
        }
        let sum: f64 = rates.iter().map(|(_, value)| value).sum();
        if sum > 1.0 + 1e-9 {
            return Err(ConfigError::InvalidFaultRate {
                name: "sum",
                value: sum,
            });
        }
        Ok(())
    }
}

/// When a created message moves on: each delay counts from the previous step (or from its
/// creation). A step's callback is sent before the next step is scheduled, so callbacks of one
/// message arrive in order unless one is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusTimings {
    /// From creation to `sent`.
    pub sent_after: Duration,
    /// From `sent` to `delivered` / `undelivered`.
    pub delivered_after: Duration,
    /// From `delivered` to `read` (WhatsApp only).
    pub read_after: Duration,
}

impl Default for StatusTimings {
    fn default() -> Self {
        Self {
            sent_after: Duration::from_millis(50),
            delivered_after: Duration::from_millis(100),
            read_after: Duration::from_millis(100),
        }
    }
}

/// How status callbacks are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackSettings {
    /// Attempts per callback (the first included) before it is dropped.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each later one.
    pub retry_after: Duration,
    /// The longest wait for one callback request.
    pub request_timeout: Duration,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            retry_after: Duration::from_millis(200),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything a [`Simulator`](super::Simulator) needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatorConfig {
    /// The port to listen on (on 127.0.0.1 only); 0 picks a free one.
    pub port: u16,
    /// Accepted accounts: account SID to auth token.
    pub accounts: HashMap<String, String>,
    /// Fixed delay before each create request is processed (its slot is held meanwhile).
    pub latency: Duration,
    /// Create requests in progress per account; one more gets a 429 (code 20429).
    pub concurrency: usize,
    /// Injected faults.
    pub faults: Faults,
    /// How long a request picked for a timeout is held before it is answered.
    pub timeout_hold: Duration,
    /// Seed of the random draws (faults, SIDs); `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Sends per second allowed to a sender not listed in `sender_rates`.
    pub rate_per_sender: f64,
    /// Sends per second allowed per sender (the `From` or `MessagingServiceSid` exactly as sent).
    pub sender_rates: HashMap<String, f64>,
    /// When statuses move on.
    pub timings: StatusTimings,
    /// How callbacks are delivered.
    pub callbacks: CallbackSettings,
    /// How the onboarding endpoints (subaccounts, Trust Hub, brands, numbers) behave.
    pub onboarding: OnboardingSimConfig,
    /// How the SES routes behave.
    pub ses: SesSimConfig,
}

/// The account SID of [`SimulatorConfig::default`].
pub const DEFAULT_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
/// The auth token of [`SimulatorConfig::default`]'s account.
pub const DEFAULT_AUTH_TOKEN: &str = "simulator-auth-token";

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            accounts: HashMap::from([(DEFAULT_ACCOUNT_SID.to_owned(), DEFAULT_AUTH_TOKEN.to_owned())]),
            latency: Duration::ZERO,
            concurrency: 100,
            faults: Faults::default(),
            timeout_hold: Duration::from_secs(120),
            seed: None,
            rate_per_sender: 1.0,
            sender_rates: HashMap::new(),
            timings: StatusTimings::default(),
            callbacks: CallbackSettings::default(),
            onboarding: OnboardingSimConfig::default(),
            ses: SesSimConfig::default(),
        }
    }
}

impl SimulatorConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.accounts.is_empty() {
            return Err(ConfigError::NoAccounts);
        }
        if self.concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        self.faults.validate()?;
        self.ses.validate()?;
        let rates = std::iter::once(("*", self.rate_per_sender))
            .chain(self.sender_rates.iter().map(|(sender, rate)| (sender.as_str(), *rate)));
        for (sender, rate) in rates {
            if !rate.is_finite() || rate <= 0.0 {
                return Err(ConfigError::InvalidSenderRate {
                    sender: sender.to_owned(),
                    rate,
                });
            }
        }
        Ok(())
    }

    /// The sends per second allowed to `sender`.
    pub fn rate_of(&self, sender: &str) -> f64 {
        self.sender_rates.get(sender).copied().unwrap_or(self.rate_per_sender)
    }
}

/// What becomes of a brand registration once reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BrandOutcome {
    /// `APPROVED`, with the configured score.
    #[default]
    Approve,
    /// `FAILED`, with this reason.
    Fail {
        /// The `failure_reason` reported.
        reason: String,
    },
}

/// How the onboarding endpoints behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardingSimConfig {
    /// What a brand registration ends as.
    pub brand_outcome: BrandOutcome,
    /// From registration to the brand's final status.
    pub brand_review_delay: Duration,
    /// The `brand_score` of an approved brand (values above 100 are reported as 100).
    pub brand_score: u8,
    /// From a bundle's submission to `twilio-approved`.
    pub bundle_review_delay: Duration,
    /// From a campaign's registration to `VERIFIED`.
    pub campaign_review_delay: Duration,
    /// Where brand status callbacks go; `None` uses the customer profile's `StatusCallback`.
    pub brand_status_callback: Option<String>,
    /// The first this many onboarding requests are answered 503 (code 20503), to test retries.
    pub unavailable_for_first: u32,
    /// From a WhatsApp sender's creation (or verification) to its next status, and from a
    /// template's submission to its approval or rejection.
    pub whatsapp_review_delay: Duration,
    /// Where WhatsApp sender and template callbacks go (a base URL: the admin API's public
    /// URL); `None` uses the base of the account's senders' `status_callback_url`.
    pub whatsapp_callback_base: Option<String>,
}

impl Default for OnboardingSimConfig {
    fn default() -> Self {
        Self {
            brand_outcome: BrandOutcome::Approve,
            brand_review_delay: Duration::from_millis(500),
            brand_score: 75,
            bundle_review_delay: Duration::ZERO,
            campaign_review_delay: Duration::ZERO,
            brand_status_callback: None,
            unavailable_for_first: 0,
            whatsapp_review_delay: Duration::from_millis(500),
            whatsapp_callback_base: None,
        }
    }
}

/// The access key id of [`SesSimConfig::default`].
pub const DEFAULT_ACCESS_KEY_ID: &str = "AKIASIMULATOR0000000";
/// The topic ARN of [`SesSimConfig::default`].
pub const DEFAULT_TOPIC_ARN: &str = "arn:aws:sns:us-east-1:123456789012:engageninja-ses-events";

/// How the SES routes behave.
#[derive(Debug, Clone, PartialEq)]
pub struct SesSimConfig {
    /// Accepted access key ids (any secret: signatures are not verified).
    pub access_key_ids: Vec<String>,
    /// Share of send requests (either call) answered 429 `TooManyRequestsException`.
    pub throttle_rate: f64,
    /// Share of bulk entries answered `MESSAGE_REJECTED`.
    pub entry_rejected_rate: f64,
    /// Share of bulk entries answered `TRANSIENT_FAILURE`.
    pub entry_transient_rate: f64,
    /// Where SES events go as SNS notifications; `None` sends none.
    pub sns_endpoint: Option<reqwest::Url>,
    /// The `TopicArn` of the notifications.
    pub topic_arn: String,
    /// The delay before each event of an email (counted from the previous one).
    pub event_delay: Duration,
}

impl Default for SesSimConfig {
    fn default() -> Self {
        Self {
            access_key_ids: vec![DEFAULT_ACCESS_KEY_ID.to_owned()],
            throttle_rate: 0.0,
            entry_rejected_rate: 0.0,
            entry_transient_rate: 0.0,
            sns_endpoint: None,
            topic_arn: DEFAULT_TOPIC_ARN.to_owned(),
            event_delay: Duration::from_millis(20),
        }
    }
}

impl SesSimConfig {
    /// Checks the rates (each in 0..=1, the two entry rates together at most 1).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rates = [
            ("ses.throttle_rate", self.throttle_rate),
            ("ses.entry_rejected_rate", self.entry_rejected_rate),
            ("ses.entry_transient_rate", self.entry_transient_rate),
        ];
        for (name, value) in rates {
            if !value.is_finite() || !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::InvalidFaultRate { name, value });
            }
        }
        let sum = self.entry_rejected_rate + self.entry_transient_rate;
        if sum > 1.0 + 1e-9 {
            return Err(ConfigError::InvalidFaultRate {
                name: "ses entry rates sum",
                value: sum,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_bad_values_are_refused() {
        assert_eq!(SimulatorConfig::default().validate(), Ok(()));
        let mut config = SimulatorConfig {
            concurrency: 0,
            ..SimulatorConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::ZeroConcurrency));
        config.concurrency = 1;
        config.faults.server_error_rate = 0.7;
        config.faults.filtered_rate = 0.7;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::InvalidFaultRate { name: "sum", .. })
        ));
        config.faults = Faults::default();
        config.sender_rates.insert("+14155550100".into(), 0.0);
        assert!(matches!(config.validate(), Err(ConfigError::InvalidSenderRate { .. })));
        config.accounts.clear();
        assert_eq!(config.validate(), Err(ConfigError::NoAccounts));
    }
}
