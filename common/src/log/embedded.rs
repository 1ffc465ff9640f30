//! The embedded message log: one directory per topic and partition, records in segment files,
//! appends made durable by a writer thread that batches many callers into one `fdatasync`
//! (group commit).
//!
//! Layout: `{dir}/{topic}/{partition}/{base offset:020}.seg`, committed offsets in
//! `{dir}/{topic}/offsets/{group}.json`. A frame is `len u32 | crc32 u32 | offset u64 |
//! timestamp_ms i64 | key_len u32 | key | payload`, little-endian; `len` and the CRC cover
//! everything after the CRC. On open, a torn frame at the end of the newest segment (a crash
//! mid-write) is cut off: it was never acknowledged. A segment is deleted once every group that
//! has committed on the topic has read past it; a topic nobody commits on (dead letters) keeps
//! everything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::private_fs;
use async_trait::async_trait;
use tokio::sync::{Notify, oneshot};

use super::{
    ConsumerEvent, LogConsumer, LogError, MessageLog, Offset, OutgoingRecord, Partition, Record, RecordPosition, Topic,
    partition_for,
};

const HEADER_BYTES: usize = 8;
const FIXED_BODY_BYTES: usize = 8 + 8 + 4;
const MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;
const MAX_REQUESTS_PER_SYNC: usize = 4096;

/// How the embedded log is laid out.
#[derive(Debug, Clone)]
pub struct EmbeddedLogOptions {
    /// Partitions per topic (fixed when the directory is created; a different value later is
    /// ignored in favour of what is on disk).
    pub partitions: u32,
    /// Size at which a segment is rolled.
    pub segment_bytes: u64,
}

/// The durable, file-backed [`MessageLog`].
pub struct EmbeddedLog {
    topics: HashMap<Topic, Arc<TopicShared>>,
    writer: mpsc::Sender<AppendRequest>,
    consumers: Arc<Mutex<HashSet<(Topic, String)>>>,
    /// Why the writer refuses appends, once a write or fsync failed.
    broken: Arc<Mutex<Option<String>>>,
    _lock: File,
}

struct TopicShared {
    topic: Topic,
    dir: PathBuf,
    partitions: Vec<PartitionShared>,
    appended: Notify,
}

struct PartitionShared {
    /// The offset the next record will get: every record below it is durable.
    high_watermark: AtomicU64,
}

struct AppendRequest {
    topic: Topic,
    records: Vec<OutgoingRecord>,
    reply: oneshot::Sender<Result<Vec<RecordPosition>, LogError>>,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `dir`, recovering from an unclean stop.
    pub fn open(dir: &Path, options: &EmbeddedLogOptions) -> Result<Self, LogError> {
        private_fs::create_dir_all(dir)?;
        let lock = private_fs::create(&dir.join("LOCK"))?;
        lock.try_lock()
            .map_err(|_| LogError::Locked(dir.display().to_string()))?;
        let mut topics = HashMap::new();
        let mut writers = HashMap::new();
        for topic in Topic::ALL {
            let (shared, partition_writers) = open_topic(&dir.join(topic.name()), topic, options)?;
            let shared = Arc::new(shared);
            writers.insert(
                topic,
                TopicWriter {
                    shared: Arc::clone(&shared),
                    partitions: partition_writers,
                },
            );
            topics.insert(topic, shared);
        }
        let (sender, receiver) = mpsc::channel();
        let segment_bytes = options.segment_bytes.max(4096);
        let broken: Arc<Mutex<Option<String>>> = Arc::default();
        let broken_by_writer = Arc::clone(&broken);
        std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || run_writer(&receiver, writers, segment_bytes, &broken_by_writer))?;
        Ok(Self {
            topics,
            writer: sender,
            broken,
            consumers: Arc::default(),
            _lock: lock,
        })
    }

    fn shared(&self, topic: Topic) -> &Arc<TopicShared> {
        &self.topics[&topic]
    }
}

#[async_trait]
impl MessageLog for EmbeddedLog {
    fn partitions(&self, topic: Topic) -> u32 {
        self.shared(topic).partitions.len() as u32
    }

    async fn append(&self, topic: Topic, records: Vec<OutgoingRecord>) -> Result<Vec<RecordPosition>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, response) = oneshot::channel();
        self.writer
            .send(AppendRequest { topic, records, reply })
            .map_err(|_| LogError::Closed)?;
        response.await.map_err(|_| LogError::Failed)?
    }

    fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn consumer(&self, topic: Topic, group: &str) -> Result<Box<dyn LogConsumer>, LogError> {
        let member = (topic, group.to_owned());
        if !self.consumers.lock().expect("consumer registry").insert(member.clone()) {
            return Err(LogError::GroupBusy {
                group: group.to_owned(),
                topic,
            });
        }
        let shared = Arc::clone(self.shared(topic));
        let offsets_path = shared.dir.join("offsets").join(format!("{group}.json"));
        let committed = tokio::task::spawn_blocking({
            let path = offsets_path.clone();
            move || read_offsets(&path)
        })
        .await
        .map_err(|err| LogError::Io(std::io::Error::other(err)))??;
        Ok(Box::new(EmbeddedConsumer {
            shared,
            offsets_path,
            committed,
            readers: Some(BTreeMap::new()),
            paused: HashSet::new(),
            assigned: false,
            next_partition: 0,
            registration: Registration {
                registry: Arc::clone(&self.consumers),
                member,
            },
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

struct TopicWriter {
    shared: Arc<TopicShared>,
    partitions: Vec<PartitionWriter>,
}

struct PartitionWriter {
    dir: PathBuf,
    /// Base offsets of the segments on disk, oldest first.
    segments: Vec<Offset>,
    file: BufWriter<File>,
    segment_len: u64,
    next_offset: Offset,
    dirty: bool,
}

fn segment_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

fn list_segments(dir: &Path) -> Result<Vec<Offset>, LogError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = name.strip_suffix(".seg").and_then(|stem| stem.parse().ok()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn open_topic(
    dir: &Path,
    topic: Topic,
    options: &EmbeddedLogOptions,
) -> Result<(TopicShared, Vec<PartitionWriter>), LogError> {
    private_fs::create_dir_all(&dir.join("offsets"))?;
    let mut existing: Vec<Partition> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    existing.sort_unstable();
    let count = if existing.is_empty() {
        options.partitions.max(1)
    } else {
        existing.len() as u32
    };
    let mut shared = Vec::new();
    let mut writers = Vec::new();
    for partition in 0..count {
        let writer = open_partition(&dir.join(partition.to_string()), topic, partition)?;
        shared.push(PartitionShared {
            high_watermark: AtomicU64::new(writer.next_offset),
        });
        writers.push(writer);
    }
    let shared = TopicShared {
        topic,
        dir: dir.to_owned(),
        partitions: shared,
        appended: Notify::new(),
    };
    Ok((shared, writers))
}

/// Opens a partition, scanning its newest segment and cutting off a torn tail.
fn open_partition(dir: &Path, topic: Topic, partition: Partition) -> Result<PartitionWriter, LogError> {
    private_fs::create_dir_all(dir)?;
    let mut segments = list_segments(dir)?;
    if segments.is_empty() {
        private_fs::create(&segment_path(dir, 0))?.sync_all()?;
        sync_dir(dir)?;
        segments.push(0);
    }
    let base = *segments.last().expect("at least one segment");
    let path = segment_path(dir, base);
    let mut reader = FrameReader::new(File::open(&path)?, base, topic, partition);
    let mut valid_len = 0;
    loop {
        match reader.next_frame() {
            Ok(Some(_)) => valid_len = reader.position,
            Ok(None) | Err(LogError::Corrupt { .. }) => break,
            Err(err) => return Err(err),
        }
    }
    let next_offset = reader.next_offset;
    let file = OpenOptions::new().write(true).open(&path)?;
    if file.metadata()?.len() != valid_len {
        tracing::warn!(%topic, partition, offset = next_offset, "cutting off a torn record left by a crash");
        file.set_len(valid_len)?;
        file.sync_all()?;
    }
    let mut file = file;
    file.seek(SeekFrom::Start(valid_len))?;
    Ok(PartitionWriter {
        dir: dir.to_owned(),
        segments,
        file: BufWriter::with_capacity(256 * 1024, file),
        segment_len: valid_len,
        next_offset,
        dirty: false,
    })
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn run_writer(
    receiver: &mpsc::Receiver<AppendRequest>,
    mut topics: HashMap<Topic, TopicWriter>,
    segment_bytes: u64,
    broken: &Mutex<Option<String>>,
) {
    let mut failed = false;
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_REQUESTS_PER_SYNC {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if failed {
            for request in batch {
                let _ = request.reply.send(Err(LogError::Failed));
            }
            continue;
        }
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let written: Result<Vec<Vec<RecordPosition>>, LogError> = batch
            .iter_mut()
            .map(|request| {
                let topic = topics.get_mut(&request.topic).expect("every topic has a writer");
                let records = std::mem::take(&mut request.records);
                topic.write(records, now_ms as i64, segment_bytes)
            })
            .collect();
        let synced = written.and_then(|positions| {
            for topic in topics.values_mut() {
                topic.sync()?;
            }
            Ok(positions)
        });
        match synced {
            Ok(positions) => {
                for topic in topics.values() {
                    topic.publish();
                }
                for (request, positions) in batch.into_iter().zip(positions) {
                    let _ = request.reply.send(Ok(positions));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "message log write failed; refusing further writes until restarted");
                failed = true;
                let reason = err.to_string();
                *broken.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(format!(
                    "the message log failed to write ({reason}); restart once fixed"
                ));
                for request in batch {
                    let _ = request
                        .reply
                        .send(Err(LogError::Io(std::io::Error::other(reason.clone()))));
                }
            }
        }
    }
}

impl TopicWriter {
    fn write(
        &mut self,
        records: Vec<OutgoingRecord>,
        timestamp_ms: i64,
        segment_bytes: u64,
    ) -> Result<Vec<RecordPosition>, LogError> {
        let count = self.partitions.len() as u32;
        let mut positions = Vec::with_capacity(records.len());
        for record in records {
            let partition = partition_for(&record.key, count);
            let writer = &mut self.partitions[partition as usize];
            if writer.segment_len >= segment_bytes {
                writer.roll(&self.shared)?;
            }
            let offset = writer.append(&record, timestamp_ms)?;
            positions.push(RecordPosition { partition, offset });
        }
        Ok(positions)
    }

    fn sync(&mut self) -> Result<(), LogError> {
        for writer in self.partitions.iter_mut().filter(|writer| writer.dirty) {
            writer.file.flush()?;
            writer.file.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn publish(&self) {
        let mut any = false;
        for (writer, shared) in self.partitions.iter().zip(&self.shared.partitions) {
            if shared.high_watermark.swap(writer.next_offset, Ordering::AcqRel) != writer.next_offset {
                any = true;
            }
        }
        if any {
            self.shared.appended.notify_waiters();
        }
    }
}

impl PartitionWriter {
    fn append(&mut self, record: &OutgoingRecord, timestamp_ms: i64) -> Result<Offset, LogError> {
        let offset = self.next_offset;
        let body_len = FIXED_BODY_BYTES + record.key.len() + record.payload.len();
        let mut body = Vec::with_capacity(body_len);
        body.extend_from_slice(&offset.to_le_bytes());
        body.extend_from_slice(&timestamp_ms.to_le_bytes());
        body.extend_from_slice(&(record.key.len() as u32).to_le_bytes());
        body.extend_from_slice(&record.key);
        body.extend_from_slice(&record.payload);
        self.file.write_all(&(body.len() as u32).to_le_bytes())?;
        self.file.write_all(&crc32fast::hash(&body).to_le_bytes())?;
        self.file.write_all(&body)?;
        self.segment_len += (HEADER_BYTES + body.len()) as u64;
        self.next_offset += 1;
        self.dirty = true;
        Ok(offset)
    }

    /// Closes the active segment, starts the next, and deletes segments every group consumed.
    fn roll(&mut self, shared: &TopicShared) -> Result<(), LogError> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        let base = self.next_offset;
        let file = private_fs::options()
            .create_new(true)
            .write(true)
            .open(segment_path(&self.dir, base))?;
        sync_dir(&self.dir)?;
        self.file = BufWriter::with_capacity(256 * 1024, file);
        self.segments.push(base);
        self.segment_len = 0;
        let partition: Partition = self
            .dir
            .file_name()
            .and_then(|name| name.to_str()?.parse().ok())
            .unwrap_or_default();
        if let Some(consumed) = min_committed(&shared.dir, partition)? {
            while self.segments.len() > 1 && self.segments[1] <= consumed {
                let old = self.segments.remove(0);
                fs::remove_file(segment_path(&self.dir, old))?;
                tracing::debug!(topic = %shared.topic, partition, base = old, "deleted a consumed segment");
            }
        }
        Ok(())
    }
}

/// The lowest offset committed for `partition` by any group of the topic, if any group has.
fn min_committed(topic_dir: &Path, partition: Partition) -> Result<Option<Offset>, LogError> {
    let mut lowest: Option<Offset> = None;
    for entry in fs::read_dir(topic_dir.join("offsets"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            let committed = read_offsets(&path)?.get(&partition).copied().unwrap_or(0);
            lowest = Some(lowest.map_or(committed, |low| low.min(committed)));
        }
    }
    Ok(lowest)
}

fn read_offsets(path: &Path) -> Result<HashMap<Partition, Offset>, LogError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|err| LogError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, err))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(err) => Err(err.into()),
    }
}

fn write_offsets(path: &Path, offsets: &HashMap<Partition, Offset>) -> Result<(), LogError> {
    let temporary = path.with_extension("json.tmp");
    let mut file = private_fs::create(&temporary)?;
    file.write_all(&serde_json::to_vec(offsets).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    sync_dir(path.parent().expect("offsets live in a directory"))
}

// ---------------------------------------------------------------------------------------------
// Reading

struct FrameReader {
    file: BufReader<File>,
    /// Byte position of the next frame.
    position: u64,
    next_offset: Offset,
    topic: Topic,
    partition: Partition,
}

impl FrameReader {
    fn new(file: File, base: Offset, topic: Topic, partition: Partition) -> Self {
        Self {
            file: BufReader::with_capacity(256 * 1024, file),
            position: 0,
            next_offset: base,
            topic,
            partition,
        }
    }

    /// The next complete, checksummed frame; `None` at the end of the file or before a torn
    /// frame; `Corrupt` on a checksum mismatch.
    fn next_frame(&mut self) -> Result<Option<Record>, LogError> {
        let corrupt = || LogError::Corrupt {
            topic: self.topic,
            partition: self.partition,
            offset: self.next_offset,
        };
        let mut header = [0u8; HEADER_BYTES];
        if !read_full(&mut self.file, &mut header)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_FRAME_BYTES || (len as usize) < FIXED_BODY_BYTES {
            return Err(corrupt());
        }
        let mut body = vec![0u8; len as usize];
        if !read_full(&mut self.file, &mut body)? {
            return Ok(None);
        }
        if crc32fast::hash(&body) != crc {
            return Err(corrupt());
        }
        let offset = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
        let timestamp_ms = i64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
        let key_len = u32::from_le_bytes(body[16..20].try_into().expect("4 bytes")) as usize;
        if offset != self.next_offset || FIXED_BODY_BYTES + key_len > body.len() {
            return Err(corrupt());
        }
        let payload = body.split_off(FIXED_BODY_BYTES + key_len);
        let key = body[FIXED_BODY_BYTES..].to_vec();
        self.position += (HEADER_BYTES + len as usize) as u64;
        self.next_offset += 1;
        Ok(Some(Record {
            partition: self.partition,
            offset,
            timestamp_ms,
            key,
            payload,
        }))
    }
}

/// Fills `buf`; false if the file ended first (at a frame boundary or inside a torn frame).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<bool, LogError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(read) => filled += read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(true)
}

/// Reads one partition from a starting offset, crossing segment boundaries.
struct PartitionReader {
    dir: PathBuf,
    frames: Option<FrameReader>,
    next_offset: Offset,
    topic: Topic,
    partition: Partition,
}

impl PartitionReader {
    fn new(dir: PathBuf, start: Offset, topic: Topic, partition: Partition) -> Self {
        Self {
            dir,
            frames: None,
            next_offset: start,
            topic,
            partition,
        }
    }

    /// Reads up to `max` records below `high_watermark`.
    fn read(&mut self, high_watermark: Offset, max: usize, out: &mut Vec<Record>) -> Result<(), LogError> {
        let mut taken = 0;
        while taken < max && self.next_offset < high_watermark {
            if self.frames.is_none() {
                self.frames = Some(self.open_at(self.next_offset)?);
            }
            let frames = self.frames.as_mut().expect("just opened");
            match frames.next_frame()? {
                Some(record) if record.offset < self.next_offset => {}
                Some(record) => {
                    self.next_offset = record.offset + 1;
                    out.push(record);
                    taken += 1;
                }
                // The end of this segment: the next record starts the next one.
                None => self.frames = Some(self.open_segment(self.next_offset)?),
            }
        }
        Ok(())
    }

    /// Opens the segment holding `offset` and skips to it.
    fn open_at(&self, offset: Offset) -> Result<FrameReader, LogError> {
        let base = list_segments(&self.dir)?
            .into_iter()
            .rev()
            .find(|base| *base <= offset)
            .ok_or(LogError::Corrupt {
                topic: self.topic,
                partition: self.partition,
                offset,
            })?;
        self.open_segment(base)
    }

    fn open_segment(&self, base: Offset) -> Result<FrameReader, LogError> {
        let file = File::open(segment_path(&self.dir, base)).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => LogError::Corrupt {
                topic: self.topic,
                partition: self.partition,
                offset: base,
            },
            _ => err.into(),
        })?;
        Ok(FrameReader::new(file, base, self.topic, self.partition))
    }
}

/// Reads up to `max` records, giving each partition an equal share first and the room left to
/// whichever partitions still have records.
fn read_fairly(
    readers: &mut BTreeMap<Partition, PartitionReader>,
    order: &[Partition],
    high_watermarks: &[Offset],
    max: usize,
    out: &mut Vec<Record>,
) -> Result<(), LogError> {
    let share = (max / order.len().max(1)).max(1);
    loop {
        let before = out.len();
        for partition in order {
            let room = max.saturating_sub(out.len()).min(share);
            if room == 0 {
                return Ok(());
            }
            let reader = readers.get_mut(partition).expect("assigned partition");
            reader.read(high_watermarks[*partition as usize], room, out)?;
        }
        if out.len() == before {
            return Ok(());
        }
    }
}

/// Frees the group's place when the consumer goes away.
struct Registration {
    registry: Arc<Mutex<HashSet<(Topic, String)>>>,
    member: (Topic, String),
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.remove(&self.member);
        }
    }
}

/// The only member of its group: it is assigned every partition of the topic.
struct EmbeddedConsumer {
    shared: Arc<TopicShared>,
    offsets_path: PathBuf,
    committed: HashMap<Partition, Offset>,
    /// Taken out while a blocking read runs.
    readers: Option<BTreeMap<Partition, PartitionReader>>,
    paused: HashSet<Partition>,
    assigned: bool,
    next_partition: usize,
    registration: Registration,
}

impl EmbeddedConsumer {
    fn has_readable(&self, readers: &BTreeMap<Partition, PartitionReader>) -> bool {
        readers.iter().any(|(partition, reader)| {
            !self.paused.contains(partition)
                && reader.next_offset
                    < self.shared.partitions[*partition as usize]
                        .high_watermark
                        .load(Ordering::Acquire)
        })
    }
}

#[async_trait]
impl LogConsumer for EmbeddedConsumer {
    async fn poll(&mut self, max_records: usize, wait: Duration) -> Result<ConsumerEvent, LogError> {
        let _ = &self.registration;
        if !self.assigned {
            self.assigned = true;
            let partitions: Vec<Partition> = (0..self.shared.partitions.len() as u32).collect();
            let readers = self.readers.as_mut().expect("readers are home between polls");
            for &partition in &partitions {
                let start = self.committed.get(&partition).copied().unwrap_or(0);
                let dir = self.shared.dir.join(partition.to_string());
                readers.insert(
                    partition,
                    PartitionReader::new(dir, start, self.shared.topic, partition),
                );
            }
            return Ok(ConsumerEvent::Assigned(partitions));
        }
        let readers = self.readers.take().expect("readers are home between polls");
        if !self.has_readable(&readers) {
            let appended = self.shared.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if !self.has_readable(&readers) {
                let _ = tokio::time::timeout(wait, appended).await;
            }
        }
        let order: Vec<Partition> = {
            let mut active: Vec<Partition> = readers
                .keys()
                .copied()
                .filter(|partition| !self.paused.contains(partition))
                .collect();
            let rotate = self.next_partition % active.len().max(1);
            active.rotate_left(rotate);
            self.next_partition = self.next_partition.wrapping_add(1);
            active
        };
        let high_watermarks: Vec<Offset> = self
            .shared
            .partitions
            .iter()
            .map(|partition| partition.high_watermark.load(Ordering::Acquire))
            .collect();
        let (readers, result) = tokio::task::spawn_blocking(move || {
            let mut readers = readers;
            let mut records = Vec::new();
            let result = read_fairly(&mut readers, &order, &high_watermarks, max_records, &mut records);
            (readers, result.map(|()| records))
        })
        .await
        .map_err(|err| LogError::Io(std::io::Error::other(err)))?;
        self.readers = Some(readers);
        Ok(ConsumerEvent::Records(result?))
    }

    async fn commit(&mut self, offsets: &[(Partition, Offset)]) -> Result<(), LogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        for &(partition, offset) in offsets {
            if partition as usize >= self.shared.partitions.len() {
                return Err(LogError::NotAssigned(partition));
            }
            self.committed.insert(partition, offset);
        }
        let path = self.offsets_path.clone();
        let committed = self.committed.clone();
        tokio::task::spawn_blocking(move || write_offsets(&path, &committed))
            .await
            .map_err(|err| LogError::Io(std::io::Error::other(err)))?
    }

    async fn end_offsets(&mut self) -> Result<Vec<(Partition, Offset)>, LogError> {
        let partitions = &self.shared.partitions;
        Ok((0..partitions.len() as u32)
            .map(|partition| {
                (
                    partition,
                    partitions[partition as usize].high_watermark.load(Ordering::Acquire),
                )
            })
            .collect())
    }

    fn pause(&mut self, partitions: &[Partition]) {
        self.paused.extend(partitions);
    }

    fn resume(&mut self, partitions: &[Partition]) {
        for partition in partitions {
            self.paused.remove(partition);
        }
    }
}
