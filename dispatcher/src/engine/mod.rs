//! The engine: one task that owns every admitted message until its provider has answered.
//!
//! Each message joins the queue of one sender (chosen from the tenant's pool: the recipient's
//! sticky sender, else the one with the least queued), in its lane (transactional before
//! marketing); one whose `not_before` is still ahead joins it then. A sender is *ready* when
//! its head message may go now, *waiting* on a timer until its next pacing cell or the brand's
//! next day, or *blocked* until its provider account has a free request slot. Ready senders are served tenant by tenant in deficit round-robin (each
//! tenant sends up to `quantum` messages per turn), so one tenant's backlog never holds back
//! another tenant's message for more than one turn. No task sleeps per message: one delay queue
//! holds every waiting sender, every message waiting to be retried and every message waiting
//! for its `not_before`.
//!
//! Provider calls run as tasks, at most `max_in_flight` at once (and `account_concurrency` per
//! account). Their outcomes come back here: transient errors are retried with backoff within
//! the message's validity, everything else is handed to the recorder as finished.
//!
//! A [`Handover`] gives partitions up (a Kafka rebalance revoked them): their queued messages
//! are handed back unsent at once, nothing more of theirs is released or retried, and the
//! handover is answered once their requests in flight have answered and the recorder has
//! recorded every outcome before it. The next owner reads what was handed back from the last
//! commit; a message is sent by at most one owner at a time.
//!
//! One task owns all of it; its jobs live in files of their own, each an `impl Engine` over
//! its part of the state:
//! - `queues`: sender queues, lanes, sticky senders, deficit round-robin between tenants.
//! - `gates`: what a head message must pass: pacing cells, the brand's daily cap, a free
//!   request slot on its account.
//! - `sending`: provider calls as tasks, their outcomes, retries with backoff.
//! - `handover`: partitions given up, their messages handed back, the handover answered.
//! - here: the task's loop, timers, finished messages and the periodic clean-up.

mod gates;
mod handover;
mod queues;
mod sending;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::config::DispatcherSettings;
use common::log::{Offset, Partition};
use common::{Envelope, MessageStatus, TenantId};
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

use self::gates::Gates;
use self::handover::{Handovers, next_handover};
use self::queues::{Queued, Queues};
use self::sending::Completion;
use crate::admission::QuotaHold;
use crate::metrics::TenantCounters;
use crate::pacing::{Rate, SenderKey};
use crate::retry::RetryPolicy;
use crate::route::Route;

/// Inputs of one kind taken at once before a dispatch round.
const EVENTS_PER_ROUND: usize = 1_024;
/// Messages released in one dispatch round before the engine looks at its inputs again.
const ROUND_BUDGET: usize = 4_096;
/// How often idle pacing and stickiness state is dropped.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// How long a recipient keeps its sender after its last message.
const STICKY_FOR: Duration = Duration::from_secs(24 * 3_600);
/// The most recipients whose sender is remembered.
const STICKY_MAX: usize = 1_000_000;

/// Messages released for one account in the current round, by batch key, and the requests
/// they make (a request carries up to `max_batch` messages of one key).
struct RoundRequests {
    by_key: HashMap<Option<String>, usize>,
    max_batch: usize,
    requests: usize,
}

impl RoundRequests {
    fn requests(&self) -> usize {
        self.requests
    }
}

/// Why a head message could not go.
enum Hold {
    Until(Instant),
    Blocked,
}

/// A message that passed admission, ready to be paced and sent.
pub struct Admitted {
    /// The message.
    pub envelope: Envelope,
    /// Its SMS segments (1 for other channels): the cells it costs its sender.
    pub segments: u32,
    /// Where it was read from.
    pub partition: Partition,
    /// Its offset there.
    pub offset: Offset,
    /// How it is sent.
    pub route: Arc<Route>,
    /// The quota reserved for it, released if it is never sent.
    pub quota: Option<QuotaHold>,
    /// When it was admitted.
    pub admitted_at: Instant,
    /// When its claim accepted it (the stored `accepted_at`, which its outcome is written with).
    pub accepted_at: OffsetDateTime,
}

/// A message the engine is done with.
#[derive(Debug)]
pub struct Finished {
    /// The message.
    pub envelope: Envelope,
    /// Where it was read from.
    pub partition: Partition,
    /// Its offset there.
    pub offset: Offset,
    /// The status it reached.
    pub status: MessageStatus,
    /// The reason code or provider code.
    pub reason: Option<String>,
    /// The provider's id for it.
    pub provider_message_id: Option<String>,
    /// Quota to give back because it was never sent.
    pub release: Option<QuotaHold>,
    /// The provider refused it because the recipient opted out: the recipient is suppressed.
    pub opted_out: bool,
    /// When its claim accepted it.
    pub accepted_at: OffsetDateTime,
}

/// What the engine tells the recorder, in order.
#[derive(Debug)]
// Finished messages are nearly every report: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Report {
    /// A message reached an outcome.
    Finished(Finished),
    /// A message given back unsent (its partition was handed over, or the engine stopped):
    /// its quota goes back and its offset stays uncommitted, so the log delivers it again.
    HandedBack {
        /// Its tenant.
        tenant_id: TenantId,
        /// The quota reserved for it.
        quota: Option<QuotaHold>,
    },
    /// Answered once everything reported before it is recorded.
    Barrier(oneshot::Sender<()>),
}

/// Partitions to give up; `done` is answered once nothing of theirs is in the engine or in
/// flight and every outcome of theirs is recorded.
pub struct Handover {
    /// The partitions.
    pub partitions: Vec<Partition>,
    /// Answered when the handover is complete.
    pub done: oneshot::Sender<()>,
}

/// Bookkeeping that travels with a message besides what the provider sees.
struct Meta {
    partition: Partition,
    offset: Offset,
    route: Arc<Route>,
    quota: Option<QuotaHold>,
    sender_key: SenderKey,
    /// The sender's rate, resolved once from the pool.
    rate: Option<Rate>,
    admitted_at: Instant,
    /// Sends so far that failed transiently.
    attempts: u32,
    /// Pacing cells already taken for the next send.
    cells: u32,
    /// The engine's handover count when it was enqueued: it is stale once its partition is
    /// handed over later.
    epoch: u64,
}

enum Timer {
    /// The sender's next cell (or the brand's next day) has come.
    Sender(SenderKey),
    /// A message waited out its backoff.
    Retry(Box<Queued>),
    /// A message's `not_before` has come.
    NotBefore(Box<Queued>),
    /// Time to drop idle state.
    Cleanup,
}

/// The engine task's state: the queues (and fairness between tenants), the gates a head
/// message passes (pacing, daily caps, account slots), the handovers, and what is in flight.
pub struct Engine {
    quantum: u32,
    max_in_flight: usize,
    retry: RetryPolicy,
    queues: Queues,
    gates: Gates,
    handover: Handovers,
    timers: DelayQueue<Timer>,
    in_flight: usize,
    completions_tx: mpsc::UnboundedSender<Completion>,
    completions: mpsc::UnboundedReceiver<Completion>,
    reports: mpsc::UnboundedSender<Report>,
    /// Messages sent per tenant, for the top-tenants panel.
    tenant_counters: TenantCounters,
}

impl Engine {
    /// An engine that reports every finished or handed-back message to `reports`.
    pub fn new(settings: &DispatcherSettings, reports: mpsc::UnboundedSender<Report>) -> Self {
        let (completions_tx, completions) = mpsc::unbounded_channel();
        let mut timers = DelayQueue::new();
        timers.insert(Timer::Cleanup, CLEANUP_EVERY);
        Self {
            quantum: settings.quantum.max(1),
            max_in_flight: settings.max_in_flight.max(1),
            retry: RetryPolicy::new(&settings.retry),
            queues: Queues::default(),
            gates: Gates::default(),
            handover: Handovers::default(),
            timers,
            in_flight: 0,
            completions_tx,
            completions,
            reports,
            tenant_counters: TenantCounters::new(settings.tenant_series),
        }
    }

    /// Takes handovers of partitions from `handovers` (a consumer group's revocations).
    pub fn with_handovers(mut self, handovers: mpsc::UnboundedReceiver<Handover>) -> Self {
        self.handover.handovers = Some(handovers);
        self
    }

    /// Runs until `admitted` closes and every message is finished, or until `drain` fires and
    /// the requests in flight have answered. Messages still queued at a drain are handed
    /// back: their offsets stay uncommitted, so the log hands them out again.
    pub async fn run(mut self, mut admitted: mpsc::Receiver<Admitted>, drain: CancellationToken) {
        let mut accepting = true;
        let mut handovers = self.handover.handovers.take();
        loop {
            tokio::select! {
                () = drain.cancelled() => break,
                Some(completion) = self.completions.recv() => self.on_completion(completion),
                Some(expired) = self.timers.next(), if !self.timers.is_empty() => self.on_timer(expired.into_inner()),
                Some(handover) = next_handover(&mut handovers) => {
                    // Messages admitted before the handover was asked for are in the inbox:
                    // they are handed over with the rest.
                    while let Ok(message) = admitted.try_recv() {
                        self.enqueue(message);
                    }
                    self.hand_over(handover);
                }
                message = admitted.recv(), if accepting => match message {
                    Some(message) => self.enqueue(message),
                    None => accepting = false,
                },
            }
            // Whatever else is already waiting joins this round: new messages and answers
            // alike, so neither waits behind the other.
            for _ in 0..EVENTS_PER_ROUND {
                let Ok(completion) = self.completions.try_recv() else {
                    break;
                };
                self.on_completion(completion);
            }
            for _ in 0..EVENTS_PER_ROUND {
                let Ok(message) = admitted.try_recv() else { break };
                self.enqueue(message);
            }
            self.dispatch_round();
            metrics::gauge!("dispatcher_queued_messages").set(self.queues.queued as f64);
            metrics::gauge!("dispatcher_in_flight_requests").set(self.in_flight as f64);
            if !accepting && self.queues.queued == 0 && self.in_flight == 0 {
                return;
            }
        }
        tracing::info!(
            in_flight = self.in_flight,
            queued = self.queues.queued,
            "engine draining"
        );
        while self.in_flight > 0 {
            match self.completions.recv().await {
                Some(completion) => self.on_completion(completion),
                None => break,
            }
        }
        if self.queues.queued > 0 {
            tracing::info!(queued = self.queues.queued, "queued messages handed back to the log");
            let keys: Vec<SenderKey> = self.queues.senders.keys().cloned().collect();
            for key in keys {
                while let Some(queued) = self.pop(&key) {
                    self.hand_back(queued);
                }
            }
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Sender(key) => self.wake(&key),
            Timer::Retry(queued) => {
                self.queues.queued -= 1;
                if self.is_stale(&queued.meta) {
                    self.hand_back(*queued);
                } else {
                    self.push(*queued, true);
                }
            }
            Timer::NotBefore(mut queued) => {
                self.queues.queued -= 1;
                if self.is_stale(&queued.meta) {
                    self.hand_back(*queued);
                } else {
                    // Its pacing wait starts now.
                    queued.meta.admitted_at = Instant::now();
                    self.push(*queued, false);
                }
            }
            Timer::Cleanup => {
                self.cleanup();
                self.timers.insert(Timer::Cleanup, CLEANUP_EVERY);
            }
        }
    }

    fn finish(
        &mut self,
        queued: Queued,
        status: MessageStatus,
        reason: Option<String>,
        provider_message_id: Option<String>,
        release: bool,
    ) {
        let finished = finished(queued, status, reason, provider_message_id, release);
        let _ = self.reports.send(Report::Finished(finished));
    }

    /// Reports a message its provider refused because the recipient opted out.
    fn finish_opted_out(&mut self, queued: Queued, code: String) {
        let finished = Finished {
            opted_out: true,
            ..finished(queued, MessageStatus::Failed, Some(code), None, true)
        };
        let _ = self.reports.send(Report::Finished(finished));
    }

    /// Drops pacing state of idle senders and stale sticky senders.
    fn cleanup(&mut self) {
        self.gates.pacer.cleanup();
        let now = Instant::now();
        self.queues
            .sticky
            .retain(|_, (_, last_used)| now.duration_since(*last_used) < STICKY_FOR);
        if self.queues.sticky.len() > STICKY_MAX {
            self.queues
                .sticky
                .retain(|_, (_, last_used)| now.duration_since(*last_used) < STICKY_FOR / 24);
        }
        self.queues.sticky.shrink_to_fit();
        let today = OffsetDateTime::now_utc().date();
        self.gates.daily.retain(|_, (day, _)| *day == today);
        self.gates
            .accounts
            .retain(|_, account| account.in_flight > 0 || !account.blocked.is_empty());
        self.queues
            .tenants
            .retain(|_, tenant| tenant.senders > 0 || tenant.in_ring);
        metrics::gauge!("dispatcher_paced_senders").set(self.gates.pacer.tracked() as f64);
    }
}

/// What the recorder is told of a message the engine is done with; its quota is given back
/// when `release` (it was never sent).
fn finished(
    queued: Queued,
    status: MessageStatus,
    reason: Option<String>,
    provider_message_id: Option<String>,
    release: bool,
) -> Finished {
    let Queued { message, meta } = queued;
    Finished {
        accepted_at: message.accepted_at,
        envelope: message.envelope,
        partition: meta.partition,
        offset: meta.offset,
        status,
        reason,
        provider_message_id,
        release: if release { meta.quota } else { None },
        opted_out: false,
    }
}

/// The next midnight UTC, as a tokio instant.
fn next_utc_midnight() -> Instant {
    let now = OffsetDateTime::now_utc();
    let midnight = now
        .date()
        .next_day()
        .map_or(now + Duration::from_secs(86_400), |day| day.midnight().assume_utc());
    let wait = (midnight - now).try_into().unwrap_or(Duration::from_secs(86_400));
    Instant::now() + wait
}
