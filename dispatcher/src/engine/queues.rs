//! Queues and fairness: each admitted message joins one sender's queue in its lane; ready
//! senders are served tenant by tenant in deficit round-robin.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use common::{Channel, Priority, TenantId};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::{Admitted, Engine, Hold, Meta, ROUND_BUDGET, RoundRequests, Timer};
use crate::pacing::{Rate, SenderKey};
use common::provider::OutboundMessage;

pub(super) struct Queued {
    pub(super) message: OutboundMessage,
    pub(super) meta: Meta,
}

impl Queued {
    pub(super) fn lane(&self) -> usize {
        lane(self.message.envelope.priority)
    }
}

pub(super) fn lane(priority: Priority) -> usize {
    match priority {
        Priority::Transactional => 0,
        Priority::Marketing => 1,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SenderState {
    /// Its head may be tried now.
    Ready,
    /// A timer wakes it.
    Waiting,
    /// Its account has no free request slot.
    Blocked,
}

pub(super) struct SenderQueue {
    pub(super) tenant: TenantId,
    pub(super) rate: Option<Rate>,
    pub(super) lanes: [VecDeque<Queued>; 2],
    pub(super) state: SenderState,
    /// Cells of everything queued, to choose the least loaded sender of a pool.
    pub(super) queued_cells: u64,
    /// Whether it has an entry in its tenant's ready list of each lane.
    pub(super) listed: [bool; 2],
}

impl SenderQueue {
    pub(super) fn is_empty(&self) -> bool {
        self.lanes.iter().all(VecDeque::is_empty)
    }

    pub(super) fn head_mut(&mut self) -> Option<&mut Queued> {
        let [transactional, marketing] = &mut self.lanes;
        transactional.front_mut().or(marketing.front_mut())
    }

    pub(super) fn pop_head(&mut self) -> Option<Queued> {
        let [transactional, marketing] = &mut self.lanes;
        transactional.pop_front().or_else(|| marketing.pop_front())
    }
}

#[derive(Default)]
pub(super) struct TenantQueue {
    /// Ready senders by the lane of a message they hold (may hold stale entries, skipped).
    pub(super) ready: [VecDeque<SenderKey>; 2],
    pub(super) in_ring: bool,
    pub(super) senders: usize,
}

/// Every sender's queue, each tenant's ready senders, and the ring tenants are served in.
#[derive(Default)]
pub(super) struct Queues {
    pub(super) senders: HashMap<SenderKey, SenderQueue>,
    pub(super) tenants: HashMap<TenantId, TenantQueue>,
    pub(super) ring: VecDeque<TenantId>,
    /// The sender each recipient last got, and when.
    pub(super) sticky: HashMap<(TenantId, String), (SenderKey, Instant)>,
    /// Messages queued, all senders.
    pub(super) queued: usize,
}

impl Engine {
    pub(super) fn enqueue(&mut self, admitted: Admitted) {
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
                epoch: self.handover.epoch,
            },
        };
        let wait = queued
            .message
            .envelope
            .not_before
            .and_then(|due| Duration::try_from(due - OffsetDateTime::now_utc()).ok())
            .filter(|wait| !wait.is_zero());
        match wait {
            Some(wait) => {
                self.queues.queued += 1;
                self.timers.insert(Timer::NotBefore(Box::new(queued)), wait);
            }
            None => self.push(queued, false),
        }
    }

    /// Picks the sender: the one named by the envelope, else the recipient's sticky sender,
    /// else the pool sender with the least queued work.
    pub(super) fn choose_sender(&mut self, admitted: &Admitted) -> SenderKey {
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
        if let Some((key, last_used)) = self.queues.sticky.get_mut(&sticky_key)
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
        self.queues.sticky.insert(sticky_key, (key.clone(), now));
        key
    }

    /// Seconds of queued work ahead of a new message on `key`.
    pub(super) fn load(&self, key: &str, rate: Option<Rate>) -> f64 {
        let queued = self.queues.senders.get(key).map_or(0, |sender| sender.queued_cells) as f64;
        rate.map_or(queued, |rate| queued / rate.value())
    }

    /// Adds a message to its sender's queue (at the front of its lane for a retry).
    pub(super) fn push(&mut self, queued: Queued, front: bool) {
        let key = queued.meta.sender_key.clone();
        let tenant = queued.message.envelope.tenant_id.clone();
        let lane = queued.lane();
        let cells = u64::from(queued.message.segments);
        let rate = queued.meta.rate;
        let sender = self.queues.senders.entry(key.clone()).or_insert_with(|| {
            self.queues.tenants.entry(tenant.clone()).or_default().senders += 1;
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
        self.queues.queued += 1;
        if sender.state == SenderState::Ready {
            self.list_ready(&key, lane);
        }
    }

    /// Puts a ready sender in its tenant's ready list for `lane`, and the tenant in the ring.
    pub(super) fn list_ready(&mut self, key: &SenderKey, lane: usize) {
        let Some(sender) = self.queues.senders.get_mut(key) else {
            return;
        };
        if sender.listed[lane] {
            return;
        }
        sender.listed[lane] = true;
        let tenant = self
            .queues
            .tenants
            .get_mut(&sender.tenant)
            .expect("a sender's tenant is tracked");
        tenant.ready[lane].push_back(key.clone());
        if !tenant.in_ring {
            tenant.in_ring = true;
            self.queues.ring.push_back(sender.tenant.clone());
        }
    }

    /// Marks a sender ready again and lists it under every lane it holds messages in.
    pub(super) fn wake(&mut self, key: &SenderKey) {
        let Some(sender) = self.queues.senders.get_mut(key) else {
            return;
        };
        sender.state = SenderState::Ready;
        let lanes: Vec<usize> = (0..2).filter(|lane| !sender.lanes[*lane].is_empty()).collect();
        for lane in lanes {
            self.list_ready(key, lane);
        }
    }

    /// The next ready sender of a tenant: one with a transactional message first.
    pub(super) fn next_ready_sender(&mut self, tenant_id: &TenantId) -> Option<SenderKey> {
        for lane in 0..2 {
            loop {
                let tenant = self.queues.tenants.get_mut(tenant_id)?;
                let Some(key) = tenant.ready[lane].pop_front() else {
                    break;
                };
                let Some(sender) = self.queues.senders.get_mut(&key) else {
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
    pub(super) fn dispatch_round(&mut self) {
        let mut released: Vec<Queued> = Vec::new();
        let mut requests_this_round: HashMap<Arc<str>, RoundRequests> = HashMap::new();
        while released.len() < ROUND_BUDGET
            && self.in_flight + requests_this_round.values().map(RoundRequests::requests).sum::<usize>()
                < self.max_in_flight
        {
            let Some(tenant_id) = self.queues.ring.pop_front() else {
                break;
            };
            if let Some(tenant) = self.queues.tenants.get_mut(&tenant_id) {
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
                        if let Some(sender) = self.queues.senders.get_mut(&key) {
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
                    .queues
                    .senders
                    .get(&key)
                    .is_some_and(|sender| sender.state == SenderState::Ready);
                if still_ready {
                    self.wake(&key);
                }
            }
            // Senders woken during the turn may have put the tenant back in the ring already.
            if let Some(tenant) = self.queues.tenants.get_mut(&tenant_id)
                && !tenant.in_ring
                && tenant.ready.iter().any(|list| !list.is_empty())
            {
                tenant.in_ring = true;
                self.queues.ring.push_back(tenant_id);
            }
        }
        if !released.is_empty() {
            self.send(released);
        }
    }

    /// Pops a sender's head message, forgetting the sender once it holds nothing.
    pub(super) fn pop(&mut self, key: &SenderKey) -> Option<Queued> {
        let sender = self.queues.senders.get_mut(key)?;
        let queued = sender.pop_head()?;
        sender.queued_cells -= u64::from(queued.message.segments);
        self.queues.queued -= 1;
        if sender.is_empty() && sender.state != SenderState::Blocked {
            self.forget_sender(key);
        }
        Some(queued)
    }

    /// Drops an empty sender, and its tenant once it has no senders left.
    pub(super) fn forget_sender(&mut self, key: &SenderKey) {
        let Some(sender) = self.queues.senders.remove(key) else {
            return;
        };
        if let Some(tenant) = self.queues.tenants.get_mut(&sender.tenant) {
            tenant.senders -= 1;
            if tenant.senders == 0 && !tenant.in_ring {
                self.queues.tenants.remove(&sender.tenant);
            }
        }
    }
}
