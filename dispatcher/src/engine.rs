//! The engine: one task that owns every admitted message until its provider has answered.
//!
//! Each message joins the queue of one sender (chosen from the tenant's pool: the recipient's
//! sticky sender, else the one with the least queued), in its lane (transactional before
//! marketing). A sender is *ready* when its head message may go now, *waiting* on a timer until
//! its next pacing cell or the brand's next day, or *blocked* until its provider account has a
//! free request slot. Ready senders are served tenant by tenant in deficit round-robin (each
//! tenant sends up to `quantum` messages per turn), so one tenant's backlog never holds back
//! another tenant's message for more than one turn. No task sleeps per message: one delay queue
//! holds every waiting sender and every message waiting to be retried.
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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use common::config::DispatcherSettings;
use common::log::{Offset, Partition};
use common::{Channel, Envelope, MessageStatus, Priority, TenantId};
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

use crate::admission::QuotaHold;
use crate::metrics::TenantCounters;
use crate::pacing::{Pacer, Rate, SenderKey};
use crate::provider::{OutboundMessage, SendOutcome};
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

struct Queued {
    message: OutboundMessage,
    meta: Meta,
}

impl Queued {
    fn lane(&self) -> usize {
        lane(self.message.envelope.priority)
    }
}

fn lane(priority: Priority) -> usize {
    match priority {
        Priority::Transactional => 0,
        Priority::Marketing => 1,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SenderState {
    /// Its head may be tried now.
    Ready,
    /// A timer wakes it.
    Waiting,
    /// Its account has no free request slot.
    Blocked,
}

struct SenderQueue {
    tenant: TenantId,
    rate: Option<Rate>,
    lanes: [VecDeque<Queued>; 2],
    state: SenderState,
    /// Cells of everything queued, to choose the least loaded sender of a pool.
    queued_cells: u64,
    /// Whether it has an entry in its tenant's ready list of each lane.
    listed: [bool; 2],
}

impl SenderQueue {
    fn is_empty(&self) -> bool {
        self.lanes.iter().all(VecDeque::is_empty)
    }

    fn head_mut(&mut self) -> Option<&mut Queued> {
        let [transactional, marketing] = &mut self.lanes;
        transactional.front_mut().or(marketing.front_mut())
    }

    fn pop_head(&mut self) -> Option<Queued> {
        let [transactional, marketing] = &mut self.lanes;
        transactional.pop_front().or_else(|| marketing.pop_front())
    }
}

#[derive(Default)]
struct TenantQueue {
    /// Ready senders by the lane of a message they hold (may hold stale entries, skipped).
    ready: [VecDeque<SenderKey>; 2],
    in_ring: bool,
    senders: usize,
}

#[derive(Default)]
struct Account {
    in_flight: usize,
    blocked: Vec<SenderKey>,
}

enum Timer {
    /// The sender's next cell (or the brand's next day) has come.
    Sender(SenderKey),
    /// A message waited out its backoff.
    Retry(Box<Queued>),
    /// Time to drop idle state.
    Cleanup,
}

/// A provider call's result, back from its task.
struct Completion {
    account: Arc<str>,
    provider: &'static str,
    channel: Channel,
    messages: Vec<OutboundMessage>,
    metas: Vec<Meta>,
    outcomes: Vec<SendOutcome>,
}

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

/// The engine task's state.
pub struct Engine {
    quantum: u32,
    max_in_flight: usize,
    retry: RetryPolicy,
    pacer: Pacer,
    senders: HashMap<SenderKey, SenderQueue>,
    tenants: HashMap<TenantId, TenantQueue>,
    ring: VecDeque<TenantId>,
    accounts: HashMap<Arc<str>, Account>,
    sticky: HashMap<(TenantId, String), (SenderKey, Instant)>,
    daily: HashMap<Arc<str>, (time::Date, u64)>,
    timers: DelayQueue<Timer>,
    in_flight: usize,
    queued: usize,
    completions_tx: mpsc::UnboundedSender<Completion>,
    completions: mpsc::UnboundedReceiver<Completion>,
    reports: mpsc::UnboundedSender<Report>,
    handovers: Option<mpsc::UnboundedReceiver<Handover>>,
    /// Handovers so far.
    epoch: u64,
    /// Per partition, the epoch it was last handed over at.
    handed_over: HashMap<Partition, u64>,
    /// Messages in flight per partition.
    in_flight_by_partition: HashMap<Partition, usize>,
    /// Handovers waiting for their partitions' requests in flight.
    pending_handovers: Vec<Handover>,
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
            pacer: Pacer::new(),
            senders: HashMap::new(),
            tenants: HashMap::new(),
            ring: VecDeque::new(),
            accounts: HashMap::new(),
            sticky: HashMap::new(),
            daily: HashMap::new(),
            timers,
            in_flight: 0,
            queued: 0,
            completions_tx,
            completions,
            reports,
            handovers: None,
            epoch: 0,
            handed_over: HashMap::new(),
            in_flight_by_partition: HashMap::new(),
            pending_handovers: Vec::new(),
            tenant_counters: TenantCounters::new(settings.tenant_series),
        }
    }

    /// Takes handovers of partitions from `handovers` (a consumer group's revocations).
    pub fn with_handovers(mut self, handovers: mpsc::UnboundedReceiver<Handover>) -> Self {
        self.handovers = Some(handovers);
        self
    }

    /// Runs until `admitted` closes and every message is finished, or until `drain` fires and
    /// the requests in flight have answered. Messages still queued at a drain are handed
    /// back: their offsets stay uncommitted, so the log hands them out again.
    pub async fn run(mut self, mut admitted: mpsc::Receiver<Admitted>, drain: CancellationToken) {
        let mut accepting = true;
        let mut handovers = self.handovers.take();
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
            metrics::gauge!("dispatcher_queued_messages").set(self.queued as f64);
            metrics::gauge!("dispatcher_in_flight_requests").set(self.in_flight as f64);
            if !accepting && self.queued == 0 && self.in_flight == 0 {
                return;
            }
        }
        tracing::info!(in_flight = self.in_flight, queued = self.queued, "engine draining");
        while self.in_flight > 0 {
            match self.completions.recv().await {
                Some(completion) => self.on_completion(completion),
                None => break,
            }
        }
        if self.queued > 0 {
            tracing::info!(queued = self.queued, "queued messages handed back to the log");
            let keys: Vec<SenderKey> = self.senders.keys().cloned().collect();
            for key in keys {
                while let Some(queued) = self.pop(&key) {
                    self.hand_back(queued);
                }
            }
        }
    }

    /// Gives partitions up: hands back their queued messages now, and answers the handover once
    /// their requests in flight have answered.
    fn hand_over(&mut self, handover: Handover) {
        self.epoch += 1;
        for &partition in &handover.partitions {
            self.handed_over.insert(partition, self.epoch);
        }
        let mut handed_back = Vec::new();
        let mut emptied = Vec::new();
        for (key, sender) in &mut self.senders {
            for lane in &mut sender.lanes {
                let (keep, give): (VecDeque<Queued>, VecDeque<Queued>) = std::mem::take(lane)
                    .into_iter()
                    .partition(|queued| !handover.partitions.contains(&queued.meta.partition));
                *lane = keep;
                handed_back.extend(give);
            }
            if sender.is_empty() && sender.state != SenderState::Blocked {
                emptied.push(key.clone());
            }
        }
        for queued in &handed_back {
            if let Some(sender) = self.senders.get_mut(&queued.meta.sender_key) {
                sender.queued_cells -= u64::from(queued.message.segments);
            }
        }
        for key in emptied {
            self.forget_sender(&key);
        }
        tracing::info!(
            partitions = ?handover.partitions,
            handed_back = handed_back.len(),
            "partitions handed over"
        );
        self.queued -= handed_back.len();
        for queued in handed_back {
            self.hand_back(queued);
        }
        self.pending_handovers.push(handover);
        self.complete_handovers();
    }

    /// Answers every handover none of whose partitions has a message in flight, after the
    /// recorder has recorded what came before.
    fn complete_handovers(&mut self) {
        let in_flight = &self.in_flight_by_partition;
        let (done, waiting): (Vec<Handover>, Vec<Handover>) = std::mem::take(&mut self.pending_handovers)
            .into_iter()
            .partition(|handover| {
                handover
                    .partitions
                    .iter()
                    .all(|partition| in_flight.get(partition).is_none_or(|count| *count == 0))
            });
        self.pending_handovers = waiting;
        for handover in done {
            let _ = self.reports.send(Report::Barrier(handover.done));
        }
    }

    /// Whether the message's partition was handed over after it was enqueued.
    fn is_stale(&self, meta: &Meta) -> bool {
        self.handed_over
            .get(&meta.partition)
            .is_some_and(|epoch| *epoch > meta.epoch)
    }

    /// Reports a message given back unsent.
    fn hand_back(&mut self, queued: Queued) {
        let _ = self.reports.send(Report::HandedBack {
            tenant_id: queued.message.envelope.tenant_id,
            quota: queued.meta.quota,
        });
    }

    fn enqueue(&mut self, admitted: Admitted) {
        let sender = self.choose_sender(&admitted);
        let pool_sender = admitted.route.sender(&sender).expect("chosen from the pool");
        let rate = pool_sender.rate;
        let outbound_sender = match (&admitted.envelope.from, admitted.envelope.channel) {
            (Some(from), Channel::Email) => from.clone(),
            _ => pool_sender.sender.clone(),
        };
        let queued = Queued {
            message: OutboundMessage {
                envelope: admitted.envelope,
                sender: outbound_sender,
                segments: admitted.segments,
                paced_at: admitted.admitted_at,
                accepted_at: admitted.accepted_at,
            },
            meta: Meta {
                partition: admitted.partition,
                offset: admitted.offset,
                route: admitted.route,
                quota: admitted.quota,
                sender_key: sender,
                rate,
                admitted_at: admitted.admitted_at,
                attempts: 0,
                cells: 0,
                epoch: self.epoch,
            },
        };
        self.push(queued, false);
    }

    /// Picks the sender: the one named by the envelope, else the recipient's sticky sender,
    /// else the pool sender with the least queued work.
    fn choose_sender(&mut self, admitted: &Admitted) -> SenderKey {
        let route = &admitted.route;
        let envelope = &admitted.envelope;
        if route.senders.len() == 1 {
            return route.senders[0].key.clone();
        }
        if let Some(from) = &envelope.from
            && let Some(named) = route.senders.iter().find(|sender| sender.sender == *from)
        {
            return named.key.clone();
        }
        let now = Instant::now();
        let sticky_key = (envelope.tenant_id.clone(), envelope.to.to_string());
        if let Some((key, last_used)) = self.sticky.get_mut(&sticky_key)
            && route.sender(key).is_some()
        {
            *last_used = now;
            return key.clone();
        }
        let least_loaded = route
            .senders
            .iter()
            .min_by(|a, b| {
                self.load(a.key.as_ref(), a.rate)
                    .total_cmp(&self.load(b.key.as_ref(), b.rate))
            })
            .expect("a pool is never empty");
        let key = least_loaded.key.clone();
        self.sticky.insert(sticky_key, (key.clone(), now));
        key
    }

    /// Seconds of queued work ahead of a new message on `key`.
    fn load(&self, key: &str, rate: Option<Rate>) -> f64 {
        let queued = self.senders.get(key).map_or(0, |sender| sender.queued_cells) as f64;
        rate.map_or(queued, |rate| queued / rate.value())
    }

    /// Adds a message to its sender's queue (at the front of its lane for a retry).
    fn push(&mut self, queued: Queued, front: bool) {
        let key = queued.meta.sender_key.clone();
        let tenant = queued.message.envelope.tenant_id.clone();
        let lane = queued.lane();
        let cells = u64::from(queued.message.segments);
        let rate = queued.meta.rate;
        let sender = self.senders.entry(key.clone()).or_insert_with(|| {
            self.tenants.entry(tenant.clone()).or_default().senders += 1;
            SenderQueue {
                tenant,
                rate,
                lanes: [VecDeque::new(), VecDeque::new()],
                state: SenderState::Ready,
                queued_cells: 0,
                listed: [false, false],
            }
        });
        if front {
            sender.lanes[lane].push_front(queued);
        } else {
            sender.lanes[lane].push_back(queued);
        }
        sender.queued_cells += cells;
        self.queued += 1;
        if sender.state == SenderState::Ready {
            self.list_ready(&key, lane);
        }
    }

    /// Puts a ready sender in its tenant's ready list for `lane`, and the tenant in the ring.
    fn list_ready(&mut self, key: &SenderKey, lane: usize) {
        let Some(sender) = self.senders.get_mut(key) else {
            return;
        };
        if sender.listed[lane] {
            return;
        }
        sender.listed[lane] = true;
        let tenant = self
            .tenants
            .get_mut(&sender.tenant)
            .expect("a sender's tenant is tracked");
        tenant.ready[lane].push_back(key.clone());
        if !tenant.in_ring {
            tenant.in_ring = true;
            self.ring.push_back(sender.tenant.clone());
        }
    }

    /// Marks a sender ready again and lists it under every lane it holds messages in.
    fn wake(&mut self, key: &SenderKey) {
        let Some(sender) = self.senders.get_mut(key) else {
            return;
        };
        sender.state = SenderState::Ready;
        let lanes: Vec<usize> = (0..2).filter(|lane| !sender.lanes[*lane].is_empty()).collect();
        for lane in lanes {
            self.list_ready(key, lane);
        }
    }

    /// The next ready sender of a tenant: one with a transactional message first.
    fn next_ready_sender(&mut self, tenant_id: &TenantId) -> Option<SenderKey> {
        for lane in 0..2 {
            loop {
                let tenant = self.tenants.get_mut(tenant_id)?;
                let Some(key) = tenant.ready[lane].pop_front() else {
                    break;
                };
                let Some(sender) = self.senders.get_mut(&key) else {
                    continue;
                };
                sender.listed[lane] = false;
                if sender.state == SenderState::Ready && !sender.lanes[lane].is_empty() {
                    return Some(key);
                }
            }
        }
        None
    }

    /// Serves ready senders tenant by tenant, then sends what was released.
    fn dispatch_round(&mut self) {
        let mut released: Vec<Queued> = Vec::new();
        let mut requests_this_round: HashMap<Arc<str>, RoundRequests> = HashMap::new();
        while released.len() < ROUND_BUDGET
            && self.in_flight + requests_this_round.values().map(RoundRequests::requests).sum::<usize>()
                < self.max_in_flight
        {
            let Some(tenant_id) = self.ring.pop_front() else { break };
            if let Some(tenant) = self.tenants.get_mut(&tenant_id) {
                tenant.in_ring = false;
            }
            let mut allowance = self.quantum;
            while allowance > 0
                && self.in_flight + requests_this_round.values().map(RoundRequests::requests).sum::<usize>()
                    < self.max_in_flight
            {
                let Some(key) = self.next_ready_sender(&tenant_id) else {
                    break;
                };
                match self.release_head(&key, &mut requests_this_round) {
                    Ok(Some(queued)) => {
                        released.push(queued);
                        allowance -= 1;
                    }
                    Ok(None) => {}
                    Err(Hold::Until(until)) => {
                        if let Some(sender) = self.senders.get_mut(&key) {
                            sender.state = SenderState::Waiting;
                        }
                        self.timers.insert_at(Timer::Sender(key.clone()), until);
                        continue;
                    }
                    Err(Hold::Blocked) => {
                        continue;
                    }
                }
                let still_ready = self
                    .senders
                    .get(&key)
                    .is_some_and(|sender| sender.state == SenderState::Ready);
                if still_ready {
                    self.wake(&key);
                }
            }
            // Senders woken during the turn may have put the tenant back in the ring already.
            if let Some(tenant) = self.tenants.get_mut(&tenant_id)
                && !tenant.in_ring
                && tenant.ready.iter().any(|list| !list.is_empty())
            {
                tenant.in_ring = true;
                self.ring.push_back(tenant_id);
            }
        }
        if !released.is_empty() {
            self.send(released);
        }
    }

    /// Takes the pacing cells, the daily cap and the account slot for the sender's head message
    /// and pops it; an expired head is finished instead (`Ok(None)`).
    fn release_head(
        &mut self,
        key: &SenderKey,
        requests_this_round: &mut HashMap<Arc<str>, RoundRequests>,
    ) -> Result<Option<Queued>, Hold> {
        let sender = self.senders.get_mut(key).expect("listed senders exist");
        let rate = sender.rate;
        let head = sender.head_mut().expect("ready senders hold a message");
        if head.message.envelope.is_expired(OffsetDateTime::now_utc()) {
            let expired = self.pop(key).expect("the head exists");
            self.finish(expired, MessageStatus::Expired, Some("EXPIRED".to_owned()), None, true);
            return Ok(None);
        }
        if let Some(rate) = rate {
            if head.meta.cells == 0 {
                self.pacer.after_previous_call(key, rate).map_err(Hold::Until)?;
            }
            while head.meta.cells < head.message.segments {
                self.pacer.try_take(key, rate).map_err(Hold::Until)?;
                head.meta.cells += 1;
            }
        }
        let segments = u64::from(head.message.segments);
        if let Some(cap) = &head.meta.route.daily_cap {
            let today = OffsetDateTime::now_utc().date();
            let used = match self.daily.get(&cap.brand) {
                Some((day, used)) if *day == today => *used,
                _ => 0,
            };
            if used + segments > cap.segments {
                return Err(Hold::Until(next_utc_midnight()));
            }
        }
        let route = Arc::clone(&head.meta.route);
        let batch_key = route.provider.batch_key(&head.message);
        let account = self.accounts.entry(Arc::clone(&route.account)).or_default();
        let round = requests_this_round
            .entry(Arc::clone(&route.account))
            .or_insert(RoundRequests {
                by_key: HashMap::new(),
                max_batch: route.provider.max_batch().max(1),
                requests: 0,
            });
        let in_key = round.by_key.get(&batch_key).copied().unwrap_or(0);
        let opens_a_request = in_key.is_multiple_of(round.max_batch);
        if opens_a_request && account.in_flight + round.requests >= route.account_concurrency {
            account.blocked.push(key.clone());
            self.senders.get_mut(key).expect("exists").state = SenderState::Blocked;
            return Err(Hold::Blocked);
        }
        if opens_a_request {
            round.requests += 1;
        }
        *round.by_key.entry(batch_key).or_default() += 1;
        if let Some(cap) = &route.daily_cap {
            let today = OffsetDateTime::now_utc().date();
            let entry = self.daily.entry(Arc::clone(&cap.brand)).or_insert((today, 0));
            if entry.0 != today {
                *entry = (today, 0);
            }
            entry.1 += segments;
        }
        if let Some(rate) = rate {
            self.pacer.released(key, rate);
        }
        let mut released = self.pop(key).expect("the head exists");
        released.message.paced_at = Instant::now();
        metrics::histogram!("dispatcher_pacing_wait_seconds").record(
            released
                .message
                .paced_at
                .duration_since(released.meta.admitted_at)
                .as_secs_f64(),
        );
        Ok(Some(released))
    }

    /// Pops a sender's head message, forgetting the sender once it holds nothing.
    fn pop(&mut self, key: &SenderKey) -> Option<Queued> {
        let sender = self.senders.get_mut(key)?;
        let queued = sender.pop_head()?;
        sender.queued_cells -= u64::from(queued.message.segments);
        self.queued -= 1;
        if sender.is_empty() && sender.state != SenderState::Blocked {
            self.forget_sender(key);
        }
        Some(queued)
    }

    /// Drops an empty sender, and its tenant once it has no senders left.
    fn forget_sender(&mut self, key: &SenderKey) {
        let Some(sender) = self.senders.remove(key) else {
            return;
        };
        if let Some(tenant) = self.tenants.get_mut(&sender.tenant) {
            tenant.senders -= 1;
            if tenant.senders == 0 && !tenant.in_ring {
                self.tenants.remove(&sender.tenant);
            }
        }
    }

    /// Groups released messages into provider requests and starts them.
    fn send(&mut self, released: Vec<Queued>) {
        type GroupKey = (Arc<str>, &'static str, Channel, Option<String>);
        let mut groups: HashMap<GroupKey, Vec<Queued>> = HashMap::new();
        for queued in released {
            let provider = &queued.meta.route.provider;
            let key = (
                Arc::clone(&queued.meta.route.account),
                provider.name(),
                queued.message.envelope.channel,
                provider.batch_key(&queued.message),
            );
            groups.entry(key).or_default().push(queued);
        }
        for ((account, provider_name, channel, _), mut group) in groups {
            let provider = Arc::clone(&group[0].meta.route.provider);
            let max_batch = provider.max_batch().max(1);
            while !group.is_empty() {
                let rest = group.split_off(group.len().min(max_batch));
                let batch = std::mem::replace(&mut group, rest);
                let (messages, metas): (Vec<OutboundMessage>, Vec<Meta>) =
                    batch.into_iter().map(|queued| (queued.message, queued.meta)).unzip();
                self.in_flight += 1;
                self.accounts.entry(Arc::clone(&account)).or_default().in_flight += 1;
                for meta in &metas {
                    *self.in_flight_by_partition.entry(meta.partition).or_default() += 1;
                }
                let provider = Arc::clone(&provider);
                let completions = self.completions_tx.clone();
                let account = Arc::clone(&account);
                let call_starts = self.pacer.call_starts();
                tokio::spawn(async move {
                    for meta in metas.iter().filter(|meta| meta.rate.is_some()) {
                        call_starts.started(&meta.sender_key);
                    }
                    let started = Instant::now();
                    let outcomes = provider.send(&messages).await;
                    metrics::histogram!("dispatcher_provider_request_duration_seconds", "provider" => provider_name)
                        .record(started.elapsed().as_secs_f64());
                    let _ = completions.send(Completion {
                        account,
                        provider: provider_name,
                        channel,
                        messages,
                        metas,
                        outcomes,
                    });
                });
            }
        }
    }

    fn on_completion(&mut self, completion: Completion) {
        self.in_flight -= 1;
        if let Some(account) = self.accounts.get_mut(&completion.account) {
            account.in_flight -= 1;
            let blocked = std::mem::take(&mut account.blocked);
            for key in blocked {
                self.wake(&key);
            }
        }
        let Completion {
            provider,
            channel,
            messages,
            metas,
            mut outcomes,
            ..
        } = completion;
        if outcomes.len() != messages.len() {
            tracing::error!(
                provider,
                expected = messages.len(),
                got = outcomes.len(),
                "provider answered the wrong number of outcomes"
            );
            outcomes.resize(
                messages.len(),
                SendOutcome::Unknown {
                    reason: "PROVIDER_ANSWER_MISSING".to_owned(),
                },
            );
        }
        for ((message, meta), outcome) in messages.into_iter().zip(metas).zip(outcomes) {
            let label = match &outcome {
                SendOutcome::Accepted { .. } => "sent",
                SendOutcome::Transient { .. } => "transient",
                SendOutcome::Failed { .. } => "failed",
                SendOutcome::Unknown { .. } => "unknown",
            };
            metrics::counter!("dispatcher_messages_total", "channel" => channel.as_str(), "provider" => provider, "outcome" => label)
                .increment(1);
            if label == "sent" {
                self.tenant_counters.sent(&message.envelope.tenant_id);
            }
            if let Some(count) = self.in_flight_by_partition.get_mut(&meta.partition) {
                *count -= 1;
                if *count == 0 {
                    self.in_flight_by_partition.remove(&meta.partition);
                }
            }
            let queued = Queued { message, meta };
            match outcome {
                SendOutcome::Accepted { provider_message_id } => {
                    self.finish(queued, MessageStatus::Sent, None, Some(provider_message_id), false);
                }
                SendOutcome::Failed { code } => self.finish(queued, MessageStatus::Failed, Some(code), None, true),
                SendOutcome::Unknown { reason } => {
                    self.finish(queued, MessageStatus::Unknown, Some(reason), None, false)
                }
                SendOutcome::Transient { .. } if self.is_stale(&queued.meta) => self.hand_back(queued),
                SendOutcome::Transient { reason, retry_after } => self.retry(queued, &reason, retry_after),
            }
        }
        if !self.pending_handovers.is_empty() {
            self.complete_handovers();
        }
    }

    fn retry(&mut self, mut queued: Queued, reason: &str, retry_after: Option<Duration>) {
        queued.meta.attempts += 1;
        let Some(delay) = self.retry.delay(queued.meta.attempts, retry_after, &mut rand::rng()) else {
            self.finish(
                queued,
                MessageStatus::Failed,
                Some(format!("RETRIES_EXHAUSTED: {reason}")),
                None,
                true,
            );
            return;
        };
        let retry_at = OffsetDateTime::now_utc() + delay;
        if queued
            .message
            .envelope
            .expires_at
            .is_some_and(|expires_at| expires_at <= retry_at)
        {
            self.finish(queued, MessageStatus::Expired, Some("EXPIRED".to_owned()), None, true);
            return;
        }
        metrics::counter!("dispatcher_retries_total", "reason" => reason.to_owned()).increment(1);
        queued.meta.cells = 0;
        self.queued += 1;
        self.timers.insert(Timer::Retry(Box::new(queued)), delay);
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Sender(key) => self.wake(&key),
            Timer::Retry(queued) => {
                self.queued -= 1;
                if self.is_stale(&queued.meta) {
                    self.hand_back(*queued);
                } else {
                    self.push(*queued, true);
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
        let Queued { message, meta } = queued;
        let _ = self.reports.send(Report::Finished(Finished {
            accepted_at: message.accepted_at,
            envelope: message.envelope,
            partition: meta.partition,
            offset: meta.offset,
            status,
            reason,
            provider_message_id,
            release: if release { meta.quota } else { None },
        }));
    }

    /// Drops pacing state of idle senders and stale sticky senders.
    fn cleanup(&mut self) {
        self.pacer.cleanup();
        let now = Instant::now();
        self.sticky
            .retain(|_, (_, last_used)| now.duration_since(*last_used) < STICKY_FOR);
        if self.sticky.len() > STICKY_MAX {
            self.sticky
                .retain(|_, (_, last_used)| now.duration_since(*last_used) < STICKY_FOR / 24);
        }
        self.sticky.shrink_to_fit();
        let today = OffsetDateTime::now_utc().date();
        self.daily.retain(|_, (day, _)| *day == today);
        self.accounts
            .retain(|_, account| account.in_flight > 0 || !account.blocked.is_empty());
        self.tenants.retain(|_, tenant| tenant.senders > 0 || tenant.in_ring);
        metrics::gauge!("dispatcher_paced_senders").set(self.pacer.tracked() as f64);
    }
}

/// The next handover, or never when the engine takes none.
async fn next_handover(handovers: &mut Option<mpsc::UnboundedReceiver<Handover>>) -> Option<Handover> {
    match handovers {
        Some(handovers) => handovers.recv().await,
        None => std::future::pending().await,
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
