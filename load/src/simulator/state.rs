//! What the simulator remembers: created messages, counters, every accepted send per sender,
//! and the rate-violation detector over those sends.
//!
//! # The violation rule
//!
//! A sender with rate `r` sends per second may send at most `ceil(r)` messages in any half-open
//! one-second window `[t, t + 1 s)` ([`allowed_per_window`]); for integer rates this is exactly
//! `r`, for fractional ones it is lenient (0.5/s allows 1 per window, not 1 every 2 s). Each
//! send is stamped with the instant its create request *arrived* (before injected latency).
//! Only windows starting at a send matter (the fullest window always starts at one), and
//! [`find_violations`] reports them without overlap: after a violating window it continues with
//! the first send at or after that window's end. Loopback jitter is not forgiven: a client
//! pacing at exactly 1 s intervals can show a violation when two requests arrive 999 ms apart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::twilio::status::TwilioStatus;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::config::SimulatorConfig;
use super::registry::{Onboarding, OnboardingStats};

/// One window in which a sender went over its rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The `From` or `MessagingServiceSid` exactly as sent.
    pub sender: String,
    /// Where the window starts, in ms since the simulator started.
    pub window_start_ms: u64,
    /// Sends in the window.
    pub count: u32,
    /// Sends the window allows.
    pub allowed: u32,
}

/// What the simulator saw, as `GET /stats` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SimulatorStats {
    /// Create requests received (any answer).
    pub received: u64,
    /// Messages created (201, including those whose answer was held back for a timeout).
    pub accepted: u64,
    /// Create requests refused, by Twilio error code (401, 400s, 429, 503).
    pub rejected_by_code: BTreeMap<String, u64>,
    /// Create requests refused with 429 (also counted under code 20429).
    pub too_many_requests: u64,
    /// Messages created whose answer never reached the client (held past its timeout, or a 500).
    pub timeouts: u64,
    /// Fetch requests answered (found or not).
    pub fetches: u64,
    /// Status callbacks answered with a 2xx.
    pub callbacks_sent: u64,
    /// Callback attempts that failed (non-2xx or no answer); each retry counts again.
    pub callbacks_failed: u64,
    /// Callbacks given up after their last attempt.
    pub callbacks_dropped: u64,
    /// Messages created per sender.
    pub per_sender: BTreeMap<String, u64>,
    /// Windows in which a sender went over its rate; see the module docs.
    pub violations: Vec<Violation>,
    /// The onboarding endpoints' counters.
    #[serde(default)]
    pub onboarding: OnboardingStats,
    /// The SES routes' counters.
    #[serde(default)]
    pub ses: SesStats,
}

/// The most sends a half-open one-second window allows at `rate` sends per second: `ceil(rate)`,
/// at least 1.
pub fn allowed_per_window(rate: f64) -> u32 {
    // The config check keeps rates finite and positive; the cast saturates anyway.
    (rate.ceil() as u32).max(1)
}

/// The violating windows of one sender's sends (offsets from any fixed origin, in any order):
/// `(window start, sends in it)` for each window `[start, start + 1 s)` holding more than
/// `allowed` sends, without overlap; see the module docs.
pub fn find_violations(sends: &[Duration], allowed: u32) -> Vec<(Duration, u32)> {
    const WINDOW: Duration = Duration::from_secs(1);
    let mut sorted = sends.to_vec();
    sorted.sort_unstable();
    let mut violations = Vec::new();
    let mut start = 0;
    while start < sorted.len() {
        let window_start = sorted[start];
        let end = sorted[start..].partition_point(|send| *send < window_start + WINDOW) + start;
        let count = u32::try_from(end - start).unwrap_or(u32::MAX);
        if count > allowed {
            violations.push((window_start, count));
            start = end;
        } else {
            start += 1;
        }
    }
    violations
}

/// A created message.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub sid: String,
    pub account_sid: String,
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: String,
    pub num_segments: u32,
    pub status: TwilioStatus,
    pub error_code: Option<u32>,
    /// The code it is fated to fail with (an injected fault).
    pub failure: Option<u32>,
    pub whatsapp: bool,
    pub status_callback: Option<String>,
    pub date_created: OffsetDateTime,
    pub date_sent: Option<OffsetDateTime>,
    pub date_updated: OffsetDateTime,
}

impl StoredMessage {
    /// Twilio's explanation of its error code.
    pub(crate) fn error_message(&self) -> Option<&'static str> {
        self.error_code.map(|code| match code {
            30003 => "Unreachable destination handset",
            30007 => "Message filtered",
            _ => "Unknown error",
        })
    }
}

/// An injected fault, drawn once per create request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// No fault.
    None,
    /// Answer 503.
    ServerError,
    /// Create, then hold the answer.
    Timeout,
    /// Create, then answer 500.
    LostAnswer,
    /// Create; it ends `undelivered` with this code.
    Undelivered(u32),
}

#[derive(Debug, Default)]
struct Inner {
    stats: SimulatorStats,
    sends: HashMap<String, Vec<Duration>>,
    messages: HashMap<String, StoredMessage>,
}

/// The simulator's shared state; every lock is held briefly and never across an await.
#[derive(Debug)]
pub(crate) struct State {
    pub config: SimulatorConfig,
    pub started: Instant,
    /// Subaccounts, bundles, brands, services, campaigns and numbers.
    pub onboarding: Onboarding,
    inner: Mutex<Inner>,
    rng: Mutex<StdRng>,
}

impl State {
    /// Fresh state for `config`.
    pub(crate) fn new(config: SimulatorConfig) -> Self {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            onboarding: Onboarding::new(config.onboarding.clone(), config.concurrency),
            config,
            started: Instant::now(),
            inner: Mutex::new(Inner::default()),
            rng: Mutex::new(rng),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The auth token of a configured account or of a subaccount created since.
    pub(crate) fn token_of(&self, account_sid: &str) -> Option<String> {
        match self.config.accounts.get(account_sid) {
            Some(token) => Some(token.clone()),
            None => self.onboarding.subaccount_token(account_sid),
        }
    }

    /// Changes the SES counters.
    pub(crate) fn count_ses(&self, change: impl FnOnce(&mut SesStats)) {
        change(&mut self.inner().stats.ses);
    }

    /// A new message SID: `SM` and 32 hex digits.
    pub(crate) fn new_sid(&self) -> String {
        let value: u128 = self.rng.lock().unwrap_or_else(PoisonError::into_inner).random();
        format!("SM{value:032x}")
    }

    /// Draws the fault of one create request.
    pub(crate) fn draw_fault(&self) -> Fault {
        let roll: f64 = self.rng.lock().unwrap_or_else(PoisonError::into_inner).random();
        let faults = &self.config.faults;
        let bands = [
            (faults.server_error_rate, Fault::ServerError),
            (faults.timeout_rate, Fault::Timeout),
            (faults.lost_answer_rate, Fault::LostAnswer),
            (faults.unreachable_rate, Fault::Undelivered(30003)),
            (faults.filtered_rate, Fault::Undelivered(30007)),
        ];
        let mut upper = 0.0;
        for (rate, fault) in bands {
            upper += rate;
            if roll < upper {
                return fault;
            }
        }
        Fault::None
    }

    /// Counts a create request received.
    pub(crate) fn count_received(&self) {
        self.inner().stats.received += 1;
    }

    /// Counts a refused create request.
    pub(crate) fn count_rejected(&self, code: u32) {
        let mut inner = self.inner();
        *inner.stats.rejected_by_code.entry(code.to_string()).or_default() += 1;
        if code == 20429 {
            inner.stats.too_many_requests += 1;
        }
    }

    /// Counts a create whose answer is held back.
    pub(crate) fn count_timeout(&self) {
        self.inner().stats.timeouts += 1;
    }

    /// Counts a fetch.
    pub(crate) fn count_fetch(&self) {
        self.inner().stats.fetches += 1;
    }

    /// Counts a callback answered with a 2xx.
    pub(crate) fn count_callback_sent(&self) {
        self.inner().stats.callbacks_sent += 1;
    }

    /// Counts a failed callback attempt, and a dropped callback when it was the last.
    pub(crate) fn count_callback_failed(&self, dropped: bool) {
        let mut inner = self.inner();
        inner.stats.callbacks_failed += 1;
        if dropped {
            inner.stats.callbacks_dropped += 1;
        }
    }

    /// Stores a created message and records its sender's send, arrived at `arrived`.
    pub(crate) fn insert(&self, message: StoredMessage, sender: &str, arrived: Instant) {
        let offset = arrived.saturating_duration_since(self.started);
        let mut inner = self.inner();
        inner.stats.accepted += 1;
        *inner.stats.per_sender.entry(sender.to_owned()).or_default() += 1;
        inner.sends.entry(sender.to_owned()).or_default().push(offset);
        inner.messages.insert(message.sid.clone(), message);
    }

    /// A copy of a message.
    pub(crate) fn message(&self, sid: &str) -> Option<StoredMessage> {
        self.inner().messages.get(sid).cloned()
    }

    /// The account's messages that `keep` selects, newest first.
    pub(crate) fn messages_of(&self, account_sid: &str, keep: impl Fn(&StoredMessage) -> bool) -> Vec<StoredMessage> {
        let mut found: Vec<StoredMessage> = self
            .inner()
            .messages
            .values()
            .filter(|message| message.account_sid == account_sid && keep(message))
            .cloned()
            .collect();
        found.sort_by(|a, b| b.date_created.cmp(&a.date_created).then_with(|| b.sid.cmp(&a.sid)));
        found
    }

    /// How many messages were created with each body (a resend shows as a count above 1).
    pub(crate) fn creates_by_body(&self) -> HashMap<String, u64> {
        let mut counts = HashMap::new();
        for message in self.inner().messages.values() {
            *counts.entry(message.body.clone()).or_default() += 1;
        }
        counts
    }

    /// Changes a message and returns a copy of it afterwards.
    pub(crate) fn update<F: FnOnce(&mut StoredMessage)>(&self, sid: &str, change: F) -> Option<StoredMessage> {
        let mut inner = self.inner();
        let message = inner.messages.get_mut(sid)?;
        change(message);
        Some(message.clone())
    }

    /// The statistics now, violations included.
    pub(crate) fn stats(&self) -> SimulatorStats {
        let (mut stats, sends) = {
            let inner = self.inner();
            (inner.stats.clone(), inner.sends.clone())
        };
        let mut violations: Vec<Violation> = sends
            .iter()
            .flat_map(|(sender, sends)| {
                let allowed = allowed_per_window(self.config.rate_of(sender));
                find_violations(sends, allowed)
                    .into_iter()
                    .map(move |(start, count)| Violation {
                        sender: sender.clone(),
                        window_start_ms: u64::try_from(start.as_millis()).unwrap_or(u64::MAX),
                        count,
                        allowed,
                    })
            })
            .collect();
        violations.sort_by(|a, b| (a.window_start_ms, &a.sender).cmp(&(b.window_start_ms, &b.sender)));
        stats.violations = violations;
        stats.onboarding = self.onboarding.stats();
        stats
    }
}

/// What the SES routes saw, in `GET /stats` under `ses`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SesStats {
    /// `SendEmail` requests received (any answer).
    pub send_email_requests: u64,
    /// `SendBulkEmail` requests received (any answer).
    pub bulk_requests: u64,
    /// Emails accepted (one per `SendEmail`, one per successful bulk entry).
    pub accepted: u64,
    /// Bulk entries answered `MESSAGE_REJECTED`.
    pub entries_rejected: u64,
    /// Bulk entries answered `TRANSIENT_FAILURE`.
    pub entries_transient: u64,
    /// Requests refused as a whole, by AWS error type.
    pub errors_by_type: BTreeMap<String, u64>,
    /// SNS notifications answered with a 2xx.
    pub notifications_sent: u64,
    /// SNS notification attempts that failed (each retry counts again).
    pub notifications_failed: u64,
    /// SNS notifications given up after their last attempt.
    pub notifications_dropped: u64,
}

/// The SES accounts' email templates: (access key id, name) to content and creation time.
#[derive(Debug, Default)]
pub(crate) struct Templates(Mutex<BTreeMap<(String, String), (serde_json::Value, OffsetDateTime)>>);

/// One account's template book, keyed by (access key id, name).
pub(crate) type TemplateBook = BTreeMap<(String, String), (serde_json::Value, OffsetDateTime)>;

impl Templates {
    /// Runs `change` on the book, under its lock.
    pub(crate) fn with<T>(&self, change: impl FnOnce(&mut TemplateBook) -> T) -> T {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|value| Duration::from_millis(*value)).collect()
    }

    #[test]
    fn allowed_is_the_rate_rounded_up() {
        assert_eq!(allowed_per_window(1.0), 1);
        assert_eq!(allowed_per_window(3.0), 3);
        assert_eq!(allowed_per_window(2.5), 3);
        assert_eq!(allowed_per_window(0.5), 1);
    }

    #[test]
    fn sends_one_second_apart_are_compliant() {
        assert!(find_violations(&ms(&[0, 1000, 2000, 3000]), 1).is_empty());
        assert!(find_violations(&ms(&[]), 1).is_empty());
        assert!(find_violations(&ms(&[0, 500, 1000, 1500]), 2).is_empty());
    }

    #[test]
    fn sends_inside_one_window_are_caught_without_overlap() {
        assert_eq!(find_violations(&ms(&[0, 999]), 1), vec![(Duration::ZERO, 2)]);
        // Unsorted input, three in one window, then a compliant gap, then another pair.
        assert_eq!(
            find_violations(&ms(&[300, 0, 600, 5000, 5001]), 1),
            vec![(Duration::ZERO, 3), (Duration::from_millis(5000), 2)]
        );
        assert_eq!(find_violations(&ms(&[0, 100, 200, 1100]), 2), vec![(Duration::ZERO, 3)]);
        // A window starting after the first send: 0 | 900, 1000, 1100.
        assert_eq!(
            find_violations(&ms(&[0, 900, 1000, 1100]), 2),
            vec![(Duration::from_millis(900), 3)]
        );
    }
}
