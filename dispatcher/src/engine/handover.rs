//! Handovers: partitions given up (a rebalance revoked them) have their queued messages handed
//! back unsent, and the handover is answered once their requests in flight have answered.

use std::collections::{HashMap, VecDeque};

use common::log::Partition;
use tokio::sync::mpsc;

use super::queues::{Queued, SenderState};
use super::{Engine, Handover, Meta, Report};

/// Partitions given up: their epochs, their messages in flight, the handovers not yet answered.
#[derive(Default)]
pub(super) struct Handovers {
    pub(super) handovers: Option<mpsc::UnboundedReceiver<Handover>>,
    /// Handovers so far.
    pub(super) epoch: u64,
    /// Per partition, the epoch it was last handed over at.
    pub(super) handed_over: HashMap<Partition, u64>,
    /// Messages in flight per partition.
    pub(super) in_flight_by_partition: HashMap<Partition, usize>,
    /// Handovers waiting for their partitions' requests in flight.
    pub(super) pending_handovers: Vec<Handover>,
}

/// The next handover, or never when the engine takes none.
pub(super) async fn next_handover(handovers: &mut Option<mpsc::UnboundedReceiver<Handover>>) -> Option<Handover> {
    match handovers {
        Some(handovers) => handovers.recv().await,
        None => std::future::pending().await,
    }
}

impl Engine {
    /// Gives partitions up: hands back their queued messages now, and answers the handover once
    /// their requests in flight have answered.
    pub(super) fn hand_over(&mut self, handover: Handover) {
        self.handover.epoch += 1;
        for &partition in &handover.partitions {
            self.handover.handed_over.insert(partition, self.handover.epoch);
        }
        let mut handed_back = Vec::new();
        let mut emptied = Vec::new();
        for (key, sender) in &mut self.queues.senders {
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
            if let Some(sender) = self.queues.senders.get_mut(&queued.meta.sender_key) {
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
        self.queues.queued -= handed_back.len();
        for queued in handed_back {
            self.hand_back(queued);
        }
        self.handover.pending_handovers.push(handover);
        self.complete_handovers();
    }

    /// Answers every handover none of whose partitions has a message in flight, after the
    /// recorder has recorded what came before.
    pub(super) fn complete_handovers(&mut self) {
        let in_flight = &self.handover.in_flight_by_partition;
        let (done, waiting): (Vec<Handover>, Vec<Handover>) = std::mem::take(&mut self.handover.pending_handovers)
            .into_iter()
            .partition(|handover| {
                handover
                    .partitions
                    .iter()
                    .all(|partition| in_flight.get(partition).is_none_or(|count| *count == 0))
            });
        self.handover.pending_handovers = waiting;
        for handover in done {
            let _ = self.reports.send(Report::Barrier(handover.done));
        }
    }

    /// Whether the message's partition was handed over after it was enqueued.
    pub(super) fn is_stale(&self, meta: &Meta) -> bool {
        self.handover
            .handed_over
            .get(&meta.partition)
            .is_some_and(|epoch| *epoch > meta.epoch)
    }

    /// Reports a message given back unsent.
    pub(super) fn hand_back(&mut self, queued: Queued) {
        let _ = self.reports.send(Report::HandedBack {
            tenant_id: queued.message.envelope.tenant_id,
            quota: queued.meta.quota,
        });
    }
}
