//! The gates a sender's head message passes before it is released: its sender's pacing cells,
//! its brand's daily cap, a free request slot on its provider account.

use std::collections::HashMap;
use std::sync::Arc;

use common::MessageStatus;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::queues::{Queued, SenderState};
use super::{Engine, Hold, RoundRequests, next_utc_midnight};
use crate::pacing::{Pacer, SenderKey};

#[derive(Default)]
pub(super) struct Account {
    pub(super) in_flight: usize,
    pub(super) blocked: Vec<SenderKey>,
}

/// What a head message must pass besides its place in the queue: its sender's pacing cells,
/// its brand's daily cap, a free request slot on its provider account.
#[derive(Default)]
pub(super) struct Gates {
    pub(super) pacer: Pacer,
    pub(super) accounts: HashMap<Arc<str>, Account>,
    /// Segments sent today per brand.
    pub(super) daily: HashMap<Arc<str>, (time::Date, u64)>,
}

impl Engine {
    /// Takes the pacing cells, the daily cap and the account slot for the sender's head message
    /// and pops it; an expired head is finished instead (`Ok(None)`).
    pub(super) fn release_head(
        &mut self,
        key: &SenderKey,
        requests_this_round: &mut HashMap<Arc<str>, RoundRequests>,
    ) -> Result<Option<Queued>, Hold> {
        let sender = self.queues.senders.get_mut(key).expect("listed senders exist");
        let rate = sender.rate;
        let head = sender.head_mut().expect("ready senders hold a message");
        if head.message.envelope.is_expired(OffsetDateTime::now_utc()) {
            let expired = self.pop(key).expect("the head exists");
            self.finish(expired, MessageStatus::Expired, Some("EXPIRED".to_owned()), None, true);
            return Ok(None);
        }
        if let Some(rate) = rate {
            if head.meta.cells == 0 {
                self.gates.pacer.after_previous_call(key, rate).map_err(Hold::Until)?;
            }
            while head.meta.cells < head.message.segments {
                self.gates.pacer.try_take(key, rate).map_err(Hold::Until)?;
                head.meta.cells += 1;
            }
        }
        let segments = u64::from(head.message.segments);
        if let Some(cap) = &head.meta.route.daily_cap {
            let today = OffsetDateTime::now_utc().date();
            let used = match self.gates.daily.get(&cap.brand) {
                Some((day, used)) if *day == today => *used,
                _ => 0,
            };
            if used + segments > cap.segments {
                return Err(Hold::Until(next_utc_midnight()));
            }
        }
        let route = Arc::clone(&head.meta.route);
        let batch_key = route.provider.batch_key(&head.message);
        let account = self.gates.accounts.entry(Arc::clone(&route.account)).or_default();
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
            self.queues.senders.get_mut(key).expect("exists").state = SenderState::Blocked;
            return Err(Hold::Blocked);
        }
        if opens_a_request {
            round.requests += 1;
        }
        *round.by_key.entry(batch_key).or_default() += 1;
        if let Some(cap) = &route.daily_cap {
            let today = OffsetDateTime::now_utc().date();
            let entry = self.gates.daily.entry(Arc::clone(&cap.brand)).or_insert((today, 0));
            if entry.0 != today {
                *entry = (today, 0);
            }
            entry.1 += segments;
        }
        if let Some(rate) = rate {
            self.gates.pacer.released(key, rate);
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
}
