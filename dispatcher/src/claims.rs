//! One claim per (tenant, message id): which records of a log partition are new messages, which
//! are a record read again, and which are duplicates, without a store read for a new id.
//!
//! A tenant lives on one log partition and the partition has one owning dispatcher, so the
//! question "was this id claimed before?" concerns the records of one partition only, and the
//! owner can keep the answer in memory:
//!
//! - **Recent ids**, exactly: the last `recent_ids` ids claimed on the partition with the record
//!   (offset) that claimed each. A later record with one of them is a duplicate, no read needed
//!   (a batch resubmitted while its first copies wait for their sender).
//! - **Every id within the window**, as Bloom filters in generations of `generation_ids`: a
//!   filter that says "never seen" is certain, so a new id costs nothing but the filter's probe;
//!   "maybe seen" (a duplicate, or a false positive at `false_positive_rate`) costs one read of
//!   the stored claim, which names the record that made it: this record (a redelivery: sent again
//!   only while still `queued`), or another (a duplicate).
//! - **The claim journal** makes the filters survive the owner: before claims are written, the
//!   hashes of their ids are appended to the partition's journal in the store, so the next owner
//!   (after a rebalance, a crash, a restart) rebuilds the same filters when it is assigned the
//!   partition. The journal is written once per batch, not per message.
//!
//! Past the window (`generation_ids × generations` ids of one partition, 4,000,000 by default)
//! an id is forgotten: SQLite's unique key still refuses the second claim; on Cassandra a
//! resubmission that late is taken as new.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::f64::consts::LN_2;

use hashbrown::HashTable;

use common::config::ClaimSettings;
use common::log::{Offset, Partition, RecordPosition};
use common::store::{JournalEntry, Store, StoreError, StoredClaim};
use common::{MessageId, MessageStatus, TenantId};
use time::OffsetDateTime;

/// What a record is, as far as claims go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its id was never claimed: claim it, then dispatch it.
    New,
    /// This very record claimed its id before and the message is still `queued` (read again
    /// after a crash or a handover): dispatch it; its claim, accepted then, stands.
    Unfinished {
        /// When the claim accepted it.
        accepted_at: OffsetDateTime,
    },
    /// Nothing to do: another record claimed the id (`duplicate`), or this record's message is
    /// already past `queued` (a redelivery).
    Skip {
        /// Whether another record holds the id.
        duplicate: bool,
    },
}

/// The dispatcher's memory of claimed ids, per assigned partition.
pub struct ClaimBook {
    settings: ClaimSettings,
    partitions: HashMap<Partition, PartitionClaims>,
}

/// One record to sort: where it is and the id it carries.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The record's position.
    pub position: RecordPosition,
    /// Its tenant.
    pub tenant_id: &'a TenantId,
    /// Its message id.
    pub message_id: &'a MessageId,
}

impl ClaimBook {
    /// An empty book.
    pub fn new(settings: ClaimSettings) -> Self {
        Self {
            settings,
            partitions: HashMap::new(),
        }
    }

    /// Rebuilds a newly assigned partition's filters from its journal.
    pub async fn assign(&mut self, store: &dyn Store, partition: Partition) -> Result<(), StoreError> {
        let entries = store.claim_journal(partition).await?;
        let mut generations: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for entry in entries {
            generations.entry(entry.generation).or_default().extend(entry.hashes);
        }
        let keep = self.settings.generations.max(1);
        while generations.len() > keep {
            generations.pop_first();
        }
        let mut claims = PartitionClaims::default();
        for (number, hashes) in generations {
            let mut generation = Generation::new(number, &self.settings, hashes.len() as u64);
            for hash in hashes {
                generation.insert(hash);
            }
            claims.generations.push_back(generation);
        }
        if let Some(oldest) = claims.generations.front().map(|generation| generation.number) {
            store.trim_claim_journal(partition, oldest).await?;
        }
        let ids: u64 = claims.generations.iter().map(|generation| generation.ids).sum();
        tracing::info!(
            partition,
            ids,
            generations = claims.generations.len(),
            "claim filters rebuilt from the journal"
        );
        self.partitions.insert(partition, claims);
        Ok(())
    }

    /// Forgets partitions this dispatcher no longer owns.
    pub fn revoke(&mut self, partitions: &[Partition]) {
        for partition in partitions {
            self.partitions.remove(partition);
        }
    }

    /// Sorts a batch of records (in offset order within each partition): one verdict per
    /// record, in order. Reads the store only for the ids a filter may have seen. Changes
    /// nothing in the book: call [`ClaimBook::remember`] once the new claims are journaled.
    pub async fn sort(&mut self, store: &dyn Store, batch: &[Candidate<'_>]) -> Result<Vec<Verdict>, StoreError> {
        let unloaded: HashSet<Partition> = batch
            .iter()
            .map(|candidate| candidate.position.partition)
            .filter(|partition| !self.partitions.contains_key(partition))
            .collect();
        for partition in unloaded {
            self.assign(store, partition).await?;
        }
        let mut verdicts = vec![Verdict::New; batch.len()];
        let mut first_in_batch: HashSet<(&TenantId, &MessageId)> = HashSet::with_capacity(batch.len());
        let mut to_read = Vec::new();
        for (index, candidate) in batch.iter().enumerate() {
            let key = (candidate.tenant_id, candidate.message_id);
            if !first_in_batch.insert(key) {
                verdicts[index] = Verdict::Skip { duplicate: true };
                continue;
            }
            let claims = &self.partitions[&candidate.position.partition];
            let hash = id_hash(key.0, key.1);
            match claims.recent_offset(hash, key.0, key.1) {
                Some(offset) if offset != candidate.position.offset => {
                    verdicts[index] = Verdict::Skip { duplicate: true };
                }
                Some(_) => to_read.push(index),
                None if claims.may_contain(hash) => to_read.push(index),
                None => {}
            }
        }
        if to_read.is_empty() {
            return Ok(verdicts);
        }
        metrics::counter!("dispatcher_claim_reads_total").increment(to_read.len() as u64);
        let ids: Vec<(TenantId, MessageId)> = to_read
            .iter()
            .map(|&index| (batch[index].tenant_id.clone(), batch[index].message_id.clone()))
            .collect();
        let stored = store.claims(&ids).await?;
        for (index, claim) in to_read.into_iter().zip(stored) {
            verdicts[index] = verdict_of(batch[index].position, claim);
        }
        Ok(verdicts)
    }

    /// Journals the ids of records found [`Verdict::New`], before their claims are written;
    /// safe to call again after a failure (an append that went through is then repeated,
    /// which only repeats hashes). Once they are journaled the book remembers them.
    pub async fn remember(&mut self, store: &dyn Store, new: &[Candidate<'_>]) -> Result<(), StoreError> {
        let mut by_partition: BTreeMap<Partition, Vec<&Candidate<'_>>> = BTreeMap::new();
        for candidate in new {
            by_partition
                .entry(candidate.position.partition)
                .or_default()
                .push(candidate);
        }
        for (partition, candidates) in by_partition {
            let hashes: Vec<u64> = candidates
                .iter()
                .map(|candidate| id_hash(candidate.tenant_id, candidate.message_id))
                .collect();
            let claims = self.partitions.entry(partition).or_default();
            let generation = claims.generation_for(hashes.len() as u64, self.settings.generation_ids);
            let entry = JournalEntry {
                partition,
                generation,
                entry: rand::random(),
                hashes,
            };
            store.append_claim_journal(&entry).await?;
            let hashes = entry.hashes;
            if let Some(keep_from) = claims.add(generation, &hashes, &self.settings)
                && let Err(error) = store.trim_claim_journal(partition, keep_from).await
            {
                // Only space: the next owner keeps the newest generations anyway.
                tracing::warn!(partition, %error, "could not trim the claim journal");
            }
            for (candidate, hash) in candidates.iter().zip(hashes) {
                claims.remember_recent(
                    hash,
                    candidate.tenant_id,
                    candidate.message_id,
                    candidate.position.offset,
                    self.settings.recent_ids,
                );
            }
        }
        Ok(())
    }

    /// Bytes the filters of every partition take.
    pub fn filter_bytes(&self) -> usize {
        self.partitions
            .values()
            .flat_map(|claims| &claims.generations)
            .map(|generation| generation.filter.bytes())
            .sum()
    }
}

/// The verdict on a record whose id a filter may have seen, from its stored claim.
fn verdict_of(position: RecordPosition, claim: Option<StoredClaim>) -> Verdict {
    let Some(claim) = claim else {
        return Verdict::New;
    };
    // A claim made before positions were kept counts as this record's own.
    let own = claim.position.is_none_or(|claimed| claimed == position);
    match (own, claim.status) {
        (true, MessageStatus::Queued) => Verdict::Unfinished {
            accepted_at: claim.accepted_at,
        },
        (true, _) => Verdict::Skip { duplicate: false },
        (false, _) => Verdict::Skip { duplicate: true },
    }
}

/// The stable 64-bit hash of a message's key that the filters and the journal hold (xxh3; a
/// byte no id may contain separates tenant and message id).
pub fn id_hash(tenant: &TenantId, message: &MessageId) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(tenant.as_str().as_bytes());
    hasher.update(&[0xff]);
    hasher.update(message.as_str().as_bytes());
    hasher.digest()
}

/// What one partition's owner knows of its claims.
#[derive(Default)]
struct PartitionClaims {
    /// The filters, oldest first.
    generations: VecDeque<Generation>,
    /// The record that claimed each recent id, found by the id's hash without allocating.
    recent: HashTable<RecentClaim>,
    /// The recent ids' hashes and offsets, oldest first (the next to forget).
    recent_order: VecDeque<(u64, Offset)>,
}

/// A recently claimed id and the record that claimed it.
struct RecentClaim {
    hash: u64,
    tenant_id: TenantId,
    message_id: MessageId,
    offset: Offset,
}

impl PartitionClaims {
    fn may_contain(&self, hash: u64) -> bool {
        self.generations
            .iter()
            .any(|generation| generation.filter.contains(hash))
    }

    /// The generation `count` more ids go to: the newest while they fit, else a new one.
    fn generation_for(&self, count: u64, capacity: u64) -> u64 {
        match self.generations.back() {
            Some(newest) if newest.ids == 0 || newest.ids + count <= capacity => newest.number,
            Some(newest) => newest.number + 1,
            None => 0,
        }
    }

    /// Adds journaled hashes to `number`, starting it if it is new; the generation to keep the
    /// journal from when the oldest was dropped.
    fn add(&mut self, number: u64, hashes: &[u64], settings: &ClaimSettings) -> Option<u64> {
        if self.generations.back().is_none_or(|newest| newest.number < number) {
            self.generations
                .push_back(Generation::new(number, settings, hashes.len() as u64));
        }
        let generation = self
            .generations
            .iter_mut()
            .rev()
            .find(|generation| generation.number == number)
            .expect("the generation was just found or started");
        for &hash in hashes {
            generation.insert(hash);
        }
        let mut dropped = false;
        while self.generations.len() > settings.generations.max(1) {
            self.generations.pop_front();
            dropped = true;
        }
        dropped
            .then(|| self.generations.front().map(|oldest| oldest.number))
            .flatten()
    }

    /// The record that claimed a recent id.
    fn recent_offset(&self, hash: u64, tenant: &TenantId, message: &MessageId) -> Option<Offset> {
        self.recent
            .find(hash, |claim| claim.tenant_id == *tenant && claim.message_id == *message)
            .map(|claim| claim.offset)
    }

    fn remember_recent(&mut self, hash: u64, tenant: &TenantId, message: &MessageId, offset: Offset, capacity: usize) {
        if capacity == 0 || self.recent_offset(hash, tenant, message).is_some() {
            return;
        }
        self.recent.insert_unique(
            hash,
            RecentClaim {
                hash,
                tenant_id: tenant.clone(),
                message_id: message.clone(),
                offset,
            },
            |claim| claim.hash,
        );
        self.recent_order.push_back((hash, offset));
        while self.recent_order.len() > capacity {
            if let Some((hash, offset)) = self.recent_order.pop_front()
                && let Ok(entry) = self.recent.find_entry(hash, |claim| claim.offset == offset)
            {
                entry.remove();
            }
        }
    }
}

/// One generation of a partition's claimed ids.
struct Generation {
    number: u64,
    ids: u64,
    filter: IdFilter,
}

impl Generation {
    /// An empty generation sized for its capacity (or for `at_least` ids, if more).
    fn new(number: u64, settings: &ClaimSettings, at_least: u64) -> Self {
        Self {
            number,
            ids: 0,
            filter: IdFilter::new(settings.generation_ids.max(at_least), settings.false_positive_rate),
        }
    }

    fn insert(&mut self, hash: u64) {
        self.filter.insert(hash);
        self.ids += 1;
    }
}

/// A Bloom filter over 64-bit hashes: `probes` bit positions per hash by double hashing.
/// Written here rather than taken from a crate because its input is a hash the journal
/// persists: the bit positions must depend on that hash alone, not on a hasher a crate picks.
struct IdFilter {
    words: Vec<u64>,
    bits: u64,
    probes: u64,
}

impl IdFilter {
    /// A filter for `capacity` hashes at `false_positive_rate`.
    fn new(capacity: u64, false_positive_rate: f64) -> Self {
        let n = capacity.max(1) as f64;
        let rate = false_positive_rate.clamp(1e-9, 0.5);
        let bits = (-(n * rate.ln()) / (LN_2 * LN_2)).ceil().max(64.0) as u64;
        let probes = ((bits as f64 / n) * LN_2).round().clamp(1.0, 32.0) as u64;
        Self {
            words: vec![0; bits.div_ceil(64) as usize],
            bits,
            probes,
        }
    }

    /// The bit positions of `hash`.
    fn positions(&self, hash: u64) -> impl Iterator<Item = u64> + use<> {
        let bits = self.bits;
        let step = hash.rotate_left(32).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..self.probes).map(move |i| hash.wrapping_add(i.wrapping_mul(step)) % bits)
    }

    fn insert(&mut self, hash: u64) {
        for bit in self.positions(hash) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    fn contains(&self, hash: u64) -> bool {
        self.positions(hash)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_never_forgets_and_errs_near_its_rate() {
        let mut filter = IdFilter::new(100_000, 0.01);
        let hash = |i: u64| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
        for i in 0..100_000 {
            filter.insert(hash(i));
        }
        assert!((0..100_000).all(|i| filter.contains(hash(i))), "no false negatives");
        let false_positives = (100_000..200_000).filter(|i| filter.contains(hash(*i))).count();
        assert!(
            (200..2_000).contains(&false_positives),
            "{false_positives} false positives in 100,000 (1% expected)"
        );
        assert!(filter.bytes() < 130_000, "about 1.2 bytes per id: {}", filter.bytes());
    }

    fn key(tenant: &str, id: &str) -> (TenantId, MessageId) {
        (TenantId::parse(tenant).unwrap(), MessageId::parse(id).unwrap())
    }

    #[test]
    fn the_hash_separates_tenant_from_message_id() {
        let (a, b) = key("ab", "c");
        let (c, d) = key("a", "bc");
        assert_ne!(id_hash(&a, &b), id_hash(&c, &d));
    }

    #[test]
    fn generations_fill_then_roll_and_the_oldest_is_dropped() {
        let settings = ClaimSettings {
            generation_ids: 10,
            generations: 2,
            ..ClaimSettings::default()
        };
        let mut claims = PartitionClaims::default();
        assert_eq!(claims.generation_for(6, 10), 0);
        assert_eq!(claims.add(0, &[1, 2, 3, 4, 5, 6], &settings), None);
        assert_eq!(claims.generation_for(4, 10), 0, "fits");
        assert_eq!(claims.generation_for(5, 10), 1, "does not fit");
        assert_eq!(claims.add(1, &[7, 8, 9, 10, 11], &settings), None);
        assert_eq!(claims.generation_for(5, 10), 1);
        assert_eq!(claims.add(2, &[12; 6], &settings), Some(1), "generation 0 dropped");
        assert!(!claims.may_contain(1) || claims.may_contain(1) == claims.generations[0].filter.contains(1));
        assert!(claims.may_contain(7) && claims.may_contain(12));
        let numbers: Vec<u64> = claims.generations.iter().map(|generation| generation.number).collect();
        assert_eq!(numbers, [1, 2]);
    }

    #[test]
    fn recent_ids_are_bounded_oldest_first() {
        let mut claims = PartitionClaims::default();
        let keys: Vec<_> = (0..5).map(|i| key("t", &format!("m{i}"))).collect();
        let offset_of = |claims: &PartitionClaims, (tenant, id): &(TenantId, MessageId)| {
            claims.recent_offset(id_hash(tenant, id), tenant, id)
        };
        for (offset, (tenant, id)) in keys.iter().enumerate() {
            claims.remember_recent(id_hash(tenant, id), tenant, id, offset as u64, 3);
        }
        assert_eq!(claims.recent.len(), 3);
        assert_eq!(offset_of(&claims, &keys[1]), None);
        assert_eq!(offset_of(&claims, &keys[4]), Some(4));
        let (tenant, id) = &keys[4];
        claims.remember_recent(id_hash(tenant, id), tenant, id, 99, 3);
        assert_eq!(
            offset_of(&claims, &keys[4]),
            Some(4),
            "the first record keeps its claim"
        );
    }

    #[test]
    fn a_stored_claim_tells_a_redelivery_from_a_duplicate() {
        let at = |partition, offset| RecordPosition { partition, offset };
        let claim = |position, status| StoredClaim {
            position,
            status,
            accepted_at: OffsetDateTime::UNIX_EPOCH,
        };
        let unfinished = Verdict::Unfinished {
            accepted_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(verdict_of(at(1, 5), None), Verdict::New);
        assert_eq!(
            verdict_of(at(1, 5), Some(claim(Some(at(1, 5)), MessageStatus::Queued))),
            unfinished
        );
        assert_eq!(
            verdict_of(at(1, 5), Some(claim(Some(at(1, 5)), MessageStatus::Sent))),
            Verdict::Skip { duplicate: false }
        );
        assert_eq!(
            verdict_of(at(1, 9), Some(claim(Some(at(1, 5)), MessageStatus::Queued))),
            Verdict::Skip { duplicate: true },
            "resubmitted while the first copy waits"
        );
        assert_eq!(
            verdict_of(at(1, 9), Some(claim(None, MessageStatus::Queued))),
            unfinished
        );
        assert_eq!(
            verdict_of(at(1, 9), Some(claim(None, MessageStatus::Delivered))),
            Verdict::Skip { duplicate: false }
        );
    }
}
