//! Which log offsets may be committed: per partition, everything below the oldest message whose
//! outcome is not durable yet. Messages finish out of order; a slow one holds the commit point
//! back (it must not be skipped) but later ones are remembered as done, so the commit point
//! jumps forward as soon as it finishes.

use std::collections::{BTreeMap, BTreeSet};

use common::log::{Offset, Partition};

/// Pending offsets of every assigned partition.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    partitions: BTreeMap<Partition, PartitionOffsets>,
}

#[derive(Debug, Default)]
struct PartitionOffsets {
    /// Offsets read but not yet durable downstream.
    pending: BTreeSet<Offset>,
    /// The offset after the highest one read.
    next: Offset,
    /// The last commit point handed out.
    committed: Option<Offset>,
}

impl OffsetTracker {
    /// Records that `offset` of `partition` was read and is now in progress.
    pub(crate) fn start(&mut self, partition: Partition, offset: Offset) {
        let entry = self.partitions.entry(partition).or_default();
        entry.pending.insert(offset);
        entry.next = entry.next.max(offset + 1);
    }

    /// Records that the outcome of `offset` is durable.
    pub(crate) fn finish(&mut self, partition: Partition, offset: Offset) {
        if let Some(entry) = self.partitions.get_mut(&partition) {
            entry.pending.remove(&offset);
        }
    }

    /// How many offsets of `partition` are in progress.
    pub(crate) fn in_progress(&self, partition: Partition) -> usize {
        self.partitions.get(&partition).map_or(0, |entry| entry.pending.len())
    }

    /// How many offsets are in progress in all partitions.
    pub(crate) fn total_in_progress(&self) -> usize {
        self.partitions.values().map(|entry| entry.pending.len()).sum()
    }

    /// The commit points that moved since the last call: per partition, the oldest offset in
    /// progress, or the offset after the highest one read when none is.
    pub(crate) fn take_commits(&mut self) -> Vec<(Partition, Offset)> {
        let mut commits = Vec::new();
        for (partition, entry) in &mut self.partitions {
            let point = entry.pending.first().copied().unwrap_or(entry.next);
            if entry.committed != Some(point) && point > 0 {
                entry.committed = Some(point);
                commits.push((*partition, point));
            }
        }
        commits
    }

    /// The last commit point handed out for `partition`.
    pub(crate) fn commit_point(&self, partition: Partition) -> Offset {
        self.partitions
            .get(&partition)
            .and_then(|entry| entry.committed)
            .unwrap_or(0)
    }

    /// Forgets partitions this consumer no longer owns.
    pub(crate) fn forget(&mut self, partitions: &[Partition]) {
        for partition in partitions {
            self.partitions.remove(partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_offset_holds_the_commit_point_and_later_ones_are_not_lost() {
        let mut tracker = OffsetTracker::default();
        for offset in 0..5 {
            tracker.start(0, offset);
        }
        tracker.finish(0, 0);
        tracker.finish(0, 2);
        tracker.finish(0, 3);
        assert_eq!(tracker.take_commits(), [(0, 1)], "1 is still in progress");
        assert_eq!(tracker.take_commits(), [], "nothing moved");
        tracker.finish(0, 1);
        assert_eq!(tracker.take_commits(), [(0, 4)], "jumps past everything already done");
        tracker.finish(0, 4);
        assert_eq!(tracker.take_commits(), [(0, 5)]);
        assert_eq!(tracker.in_progress(0), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = OffsetTracker::default();
        tracker.start(0, 10);
        tracker.start(1, 3);
        tracker.start(1, 4);
        tracker.finish(1, 3);
        tracker.finish(1, 4);
        assert_eq!(tracker.take_commits(), [(0, 10), (1, 5)]);
        assert_eq!(tracker.total_in_progress(), 1);
        tracker.forget(&[0]);
        assert_eq!(tracker.total_in_progress(), 0);
    }
}
