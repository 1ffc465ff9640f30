//! The message log on Apache Kafka, through librdkafka (`rdkafka`).
//!
//! Topics are `{prefix}messages`, `{prefix}dead-letters` and `{prefix}status-events`, created at
//! open when absent; existing topics keep their partition count, which is then the one used.
//!
//! **Producer**: one idempotent `FutureProducer` (`enable.idempotence`, `acks=all`); `append`
//! enqueues every record in order, each to an explicit partition, `partition_for(key)` (Kafka's
//! default murmur2 of the tenant), so the embedded log, this producer and any client producing
//! with its defaults place a tenant on the same partition, and returns once every record is
//! acknowledged.
//!
//! **Consumer**: a `BaseConsumer` owned by one OS thread per consumer, driven by commands from
//! the async [`LogConsumer`] handle. librdkafka runs rebalance callbacks on the thread that
//! polls, and a revocation must wait until the dispatcher has committed what is durable: the
//! callback answers the pending poll with [`ConsumerEvent::Revoked`], then keeps serving the
//! handle's commands (commit, end offsets, pause, resume) from inside the callback until the
//! next poll, and only then lets librdkafka give the partitions up. Blocking there is fine on
//! a dedicated thread, never on a tokio worker. Assignments come back as
//! [`ConsumerEvent::Assigned`] before any of their records. Offsets are never stored or
//! committed automatically (`enable.auto.commit=false`, `enable.auto.offset.store=false`):
//! `commit` is a synchronous commit of exactly the offsets given. The assignment strategy is
//! `cooperative-sticky`, so a member joining or leaving moves only the partitions that change
//! owner. Paused partitions stay paused across a revocation and a new assignment.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};
use secrecy::ExposeSecret;
use tokio::sync::oneshot;

use super::{
    ConsumerEvent, LogConsumer, LogError, MessageLog, Offset, OutgoingRecord, Partition, Record, RecordPosition, Topic,
    partition_for,
};
use crate::config::KafkaSettings;

/// How long an append waits before retrying when librdkafka's local queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);
/// How often `open` asks again for a just-created topic's metadata.
const METADATA_RETRY: Duration = Duration::from_millis(100);

/// The [`MessageLog`] on a Kafka cluster.
pub struct KafkaLog {
    producer: FutureProducer,
    topics: HashMap<Topic, TopicInfo>,
    settings: KafkaSettings,
}

#[derive(Debug, Clone)]
struct TopicInfo {
    name: String,
    partitions: u32,
}

impl KafkaLog {
    /// Connects to the cluster, creates the topics that are absent with `partitions`
    /// partitions, and learns every topic's partition count.
    pub async fn open(settings: &KafkaSettings, partitions: u32) -> Result<Self, LogError> {
        let partitions = partitions.max(1);
        let producer: FutureProducer = client_config(
            settings,
            &[
                ("enable.idempotence", "true".to_owned()),
                ("acks", "all".to_owned()),
                ("linger.ms", settings.linger_ms.to_string()),
                ("batch.size", settings.batch_bytes.to_string()),
                ("compression.type", settings.compression.clone()),
                ("message.timeout.ms", settings.delivery_timeout_ms.to_string()),
            ],
        )
        .create()?;
        let admin: AdminClient<DefaultClientContext> = client_config(settings, &[]).create()?;
        let names: Vec<String> = Topic::ALL
            .iter()
            .map(|topic| format!("{}{}", settings.topic_prefix, topic.name()))
            .collect();
        let new_topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    partitions as i32,
                    TopicReplication::Fixed(settings.replication_factor),
                )
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(settings.request_timeout()))
            .operation_timeout(Some(settings.request_timeout()));
        for result in admin.create_topics(&new_topics, &options).await? {
            match result {
                Ok(name) => tracing::info!(topic = %name, partitions, "created kafka topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(LogError::KafkaTopic {
                        topic,
                        reason: code.to_string(),
                    });
                }
            }
        }
        let mut topics = HashMap::new();
        for (topic, name) in Topic::ALL.into_iter().zip(names) {
            let count = topic_partitions(&producer, &name, settings.request_timeout()).await?;
            if count != partitions {
                tracing::info!(topic = %name, partitions = count, configured = partitions, "kafka topic keeps its partitions");
            }
            topics.insert(
                topic,
                TopicInfo {
                    name,
                    partitions: count,
                },
            );
        }
        Ok(Self {
            producer,
            topics,
            settings: settings.clone(),
        })
    }

    fn topic(&self, topic: Topic) -> &TopicInfo {
        // Invariant: `open` fills the map with every topic of `Topic::ALL`.
        &self.topics[&topic]
    }

    /// The full Kafka name of `topic`.
    pub fn topic_name(&self, topic: Topic) -> &str {
        &self.topic(topic).name
    }
}

/// A client configuration: bootstrap servers, then `role` settings, then the operator's
/// overrides (which win).
fn client_config(settings: &KafkaSettings, role: &[(&str, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.bootstrap_servers);
    for (key, value) in role {
        config.set(*key, value);
    }
    for (key, value) in &settings.client {
        config.set(key, value.expose_secret());
    }
    config
}

/// The partition count of `name` from the cluster's metadata, waiting up to `timeout` for a
/// just-created topic to appear.
async fn topic_partitions(producer: &FutureProducer, name: &str, timeout: Duration) -> Result<u32, LogError> {
    let mut last = String::from("not in the cluster's metadata");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let client = producer.clone();
        let topic = name.to_owned();
        let left = deadline.saturating_duration_since(Instant::now());
        let metadata = tokio::task::spawn_blocking(move || {
            let metadata = client.client().fetch_metadata(Some(&topic), left)?;
            let found = metadata
                .topics()
                .iter()
                .find(|candidate| candidate.name() == topic)
                .map(|candidate| (candidate.error(), candidate.partitions().len() as u32));
            Ok::<_, KafkaError>(found)
        })
        .await
        .map_err(|err| LogError::Io(std::io::Error::other(err)))??;
        match metadata {
            Some((None, count)) if count > 0 => return Ok(count),
            Some((Some(error), _)) => last = RDKafkaErrorCode::from(error).to_string(),
            _ => {}
        }
        tokio::time::sleep(METADATA_RETRY).await;
    }
    Err(LogError::KafkaTopic {
        topic: name.to_owned(),
        reason: last,
    })
}

#[async_trait]
impl MessageLog for KafkaLog {
    fn partitions(&self, topic: Topic) -> u32 {
        self.topic(topic).partitions
    }

    async fn append(&self, topic: Topic, records: Vec<OutgoingRecord>) -> Result<Vec<RecordPosition>, LogError> {
        let info = self.topic(topic);
        let mut deliveries = Vec::with_capacity(records.len());
        // Enqueued one after the other, so each partition keeps the callers' order (the
        // idempotent producer keeps it on the wire, retries included).
        for record in &records {
            let partition = partition_for(&record.key, info.partitions);
            let mut pending = FutureRecord::to(&info.name)
                .partition(partition as i32)
                .key(&record.key)
                .payload(&record.payload);
            loop {
                match self.producer.send_result(pending) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        pending = returned;
                        tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                    }
                    Err((err, _)) => return Err(err.into()),
                }
            }
        }
        let mut positions = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(delivered)) => positions.push(RecordPosition {
                    partition: delivered.partition as Partition,
                    offset: delivered.offset as Offset,
                }),
                Ok(Err((err, _))) => {
                    tracing::warn!(topic = %info.name, error = %err, "kafka append failed");
                    return Err(err.into());
                }
                Err(_canceled) => return Err(LogError::Closed),
            }
        }
        Ok(positions)
    }

    async fn consumer(&self, topic: Topic, group: &str) -> Result<Box<dyn LogConsumer>, LogError> {
        let name = self.topic(topic).name.clone();
        let config = client_config(
            &self.settings,
            &[
                ("group.id", group.to_owned()),
                ("enable.auto.commit", "false".to_owned()),
                ("enable.auto.offset.store", "false".to_owned()),
                ("auto.offset.reset", "earliest".to_owned()),
                ("enable.partition.eof", "false".to_owned()),
                ("partition.assignment.strategy", "cooperative-sticky".to_owned()),
                ("fetch.wait.max.ms", self.settings.fetch_wait_max_ms.to_string()),
                ("fetch.min.bytes", self.settings.fetch_min_bytes.to_string()),
                (
                    "max.partition.fetch.bytes",
                    self.settings.max_partition_fetch_bytes.to_string(),
                ),
            ],
        );
        let (commands, receiver) = mpsc::channel();
        let context = GroupContext {
            topic: name.clone(),
            commands: Mutex::new(receiver),
            state: Mutex::default(),
            timeout: self.settings.request_timeout(),
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let group_name = group.to_owned();
        std::thread::Builder::new()
            .name("kafka-consumer".to_owned())
            .spawn(move || {
                let consumer: BaseConsumer<GroupContext> = match config.create_with_context(context) {
                    Ok(consumer) => consumer,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                if let Err(err) = consumer.subscribe(&[&name]) {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
                tracing::info!(topic = %name, group = %group_name, "kafka consumer joined its group");
                let _ = ready_tx.send(Ok(()));
                run_consumer(&consumer);
                tracing::debug!(topic = %name, group = %group_name, "kafka consumer leaving its group");
            })?;
        ready_rx.await.map_err(|_| LogError::Closed)??;
        Ok(Box::new(KafkaConsumer { commands }))
    }
}

// ---------------------------------------------------------------------------------------------
// The consumer

type Reply<T> = oneshot::Sender<Result<T, LogError>>;

/// What the async handle asks of the consumer thread.
enum Command {
    Poll {
        max: usize,
        wait: Duration,
        reply: Reply<ConsumerEvent>,
    },
    Commit {
        offsets: Vec<(Partition, Offset)>,
        reply: Reply<()>,
    },
    EndOffsets {
        reply: Reply<Vec<(Partition, Offset)>>,
    },
    Pause(Vec<Partition>),
    Resume(Vec<Partition>),
}

/// The async side of a Kafka consumer: dropping it stops the thread, which leaves the group.
struct KafkaConsumer {
    commands: mpsc::Sender<Command>,
}

impl KafkaConsumer {
    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, LogError> {
        let (reply, response) = oneshot::channel();
        self.commands.send(command(reply)).map_err(|_| LogError::Closed)?;
        response.await.map_err(|_| LogError::Closed)?
    }
}

#[async_trait]
impl LogConsumer for KafkaConsumer {
    async fn poll(&mut self, max_records: usize, wait: Duration) -> Result<ConsumerEvent, LogError> {
        self.ask(|reply| Command::Poll {
            max: max_records.max(1),
            wait,
            reply,
        })
        .await
    }

    async fn commit(&mut self, offsets: &[(Partition, Offset)]) -> Result<(), LogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let offsets = offsets.to_vec();
        self.ask(|reply| Command::Commit { offsets, reply }).await
    }

    async fn end_offsets(&mut self) -> Result<Vec<(Partition, Offset)>, LogError> {
        self.ask(|reply| Command::EndOffsets { reply }).await
    }

    fn pause(&mut self, partitions: &[Partition]) {
        // A send fails only once the thread is gone; the next poll reports it.
        let _ = self.commands.send(Command::Pause(partitions.to_vec()));
    }

    fn resume(&mut self, partitions: &[Partition]) {
        let _ = self.commands.send(Command::Resume(partitions.to_vec()));
    }
}

/// The consumer thread's state, shared between its loop and librdkafka's rebalance callbacks
/// (both on the same thread; the locks are never held across a librdkafka poll).
struct GroupContext {
    topic: String,
    commands: Mutex<mpsc::Receiver<Command>>,
    state: Mutex<State>,
    timeout: Duration,
}

#[derive(Default)]
struct State {
    /// Assignments not yet handed to the application.
    events: VecDeque<ConsumerEvent>,
    /// Records read but not yet handed over, in order.
    buffer: VecDeque<Record>,
    /// The poll being served, until it is answered.
    polling: Option<Reply<ConsumerEvent>>,
    /// A poll that arrived while a revocation was being handled, served next.
    stashed: Option<Command>,
    assigned: BTreeSet<Partition>,
    paused: BTreeSet<Partition>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let partitions = self.partitions_of(list);
                self.revoke(consumer, partitions);
            }
            Rebalance::Error(err) => {
                tracing::warn!(topic = %self.topic, error = %err, "kafka rebalance failed; giving up every partition");
                let partitions = lock(&self.state).assigned.iter().copied().collect();
                self.revoke(consumer, partitions);
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut state = lock(&self.state);
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = self.partitions_of(list);
                if partitions.is_empty() {
                    return;
                }
                state.assigned.extend(&partitions);
                let paused: Vec<Partition> = partitions
                    .iter()
                    .copied()
                    .filter(|partition| state.paused.contains(partition))
                    .collect();
                self.set_paused(consumer, &paused, true);
                tracing::info!(topic = %self.topic, ?partitions, "kafka partitions assigned");
                state.events.push_back(ConsumerEvent::Assigned(partitions));
            }
            Rebalance::Revoke(list) => {
                for partition in self.partitions_of(list) {
                    state.assigned.remove(&partition);
                }
            }
            Rebalance::Error(_) => state.assigned.clear(),
        }
    }
}

impl GroupContext {
    fn partitions_of(&self, list: &TopicPartitionList) -> Vec<Partition> {
        let mut partitions: Vec<Partition> = list
            .elements()
            .iter()
            .filter(|element| element.topic() == self.topic)
            .map(|element| element.partition() as Partition)
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        partitions
    }

    fn list_of(&self, partitions: &[Partition]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            list.add_partition(&self.topic, partition as i32);
        }
        list
    }

    /// Hands `Revoked` to the application and serves its commands until it polls again, so it
    /// can commit what is durable while the partitions are still this consumer's.
    fn revoke(&self, consumer: &BaseConsumer<Self>, partitions: Vec<Partition>) {
        if partitions.is_empty() {
            return;
        }
        let lost = consumer.assignment_lost();
        tracing::info!(topic = %self.topic, ?partitions, lost, "kafka partitions revoked");
        let mut delivered = {
            let mut state = lock(&self.state);
            // Records read but not handed over stay uncommitted: the next owner reads them.
            state.buffer.retain(|record| !partitions.contains(&record.partition));
            match state.polling.take() {
                Some(reply) => reply.send(Ok(ConsumerEvent::Revoked(partitions.clone()))).is_ok(),
                None => false,
            }
        };
        let commands = lock(&self.commands);
        // Ends when the application polls again after seeing `Revoked`, or is gone (closing).
        while let Ok(command) = commands.recv() {
            match command {
                Command::Poll { reply, .. } if !delivered => {
                    delivered = reply.send(Ok(ConsumerEvent::Revoked(partitions.clone()))).is_ok();
                }
                poll @ Command::Poll { .. } => {
                    lock(&self.state).stashed = Some(poll);
                    break;
                }
                other => self.serve(consumer, other, if lost { &partitions } else { &[] }),
            }
        }
    }

    /// Serves every command but a poll. Commits of `lost` partitions are skipped: the group
    /// has already moved them.
    fn serve(&self, consumer: &BaseConsumer<Self>, command: Command, lost: &[Partition]) {
        match command {
            Command::Poll { reply, .. } => {
                // Invariant: polls are served by `poll`; answer rather than drop if one strays.
                let _ = reply.send(Ok(ConsumerEvent::Records(Vec::new())));
            }
            Command::Commit { offsets, reply } => {
                let _ = reply.send(self.commit(consumer, &offsets, lost));
            }
            Command::EndOffsets { reply } => {
                let _ = reply.send(self.end_offsets(consumer));
            }
            Command::Pause(partitions) => {
                let active = {
                    let mut state = lock(&self.state);
                    state.paused.extend(&partitions);
                    active(&state, &partitions)
                };
                self.set_paused(consumer, &active, true);
            }
            Command::Resume(partitions) => {
                let active = {
                    let mut state = lock(&self.state);
                    for partition in &partitions {
                        state.paused.remove(partition);
                    }
                    active(&state, &partitions)
                };
                self.set_paused(consumer, &active, false);
            }
        }
    }

    fn set_paused(&self, consumer: &BaseConsumer<Self>, partitions: &[Partition], pause: bool) {
        if partitions.is_empty() {
            return;
        }
        let list = self.list_of(partitions);
        let result = if pause {
            consumer.pause(&list)
        } else {
            consumer.resume(&list)
        };
        if let Err(err) = result {
            tracing::warn!(topic = %self.topic, ?partitions, pause, error = %err, "kafka pause or resume failed");
        }
    }

    fn commit(
        &self,
        consumer: &BaseConsumer<Self>,
        offsets: &[(Partition, Offset)],
        lost: &[Partition],
    ) -> Result<(), LogError> {
        let assigned = lock(&self.state).assigned.clone();
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in offsets {
            if !assigned.contains(&partition) {
                return Err(LogError::NotAssigned(partition));
            }
            if lost.contains(&partition) {
                tracing::warn!(topic = %self.topic, partition, offset, "assignment lost; offset not committed, the new owner reads from the last commit");
                continue;
            }
            list.add_partition_offset(&self.topic, partition as i32, KafkaOffset::Offset(offset as i64))?;
        }
        if list.count() > 0 {
            match consumer.commit(&list, CommitMode::Sync) {
                Ok(()) => {}
                // The group has moved on under this member (a rebalance after a member left or
                // timed out): the broker refuses the commit, and the partitions' next owner reads
                // from the last commit, as for an assignment lost. Not a failure of this consumer.
                Err(KafkaError::ConsumerCommit(code)) if group_moved_on(code) => {
                    tracing::warn!(topic = %self.topic, error = %code, "the group rebalanced under this commit; offsets not committed, the new owner reads from the last commit");
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    fn end_offsets(&self, consumer: &BaseConsumer<Self>) -> Result<Vec<(Partition, Offset)>, LogError> {
        let assigned: Vec<Partition> = lock(&self.state).assigned.iter().copied().collect();
        assigned
            .into_iter()
            .map(|partition| {
                let (_, high) = consumer.fetch_watermarks(&self.topic, partition as i32, self.timeout)?;
                Ok((partition, high.max(0) as Offset))
            })
            .collect()
    }

    /// Answers one poll: a pending assignment, else records (waiting up to `wait` for the
    /// first, then taking what is at hand up to `max`), else an empty batch. A revocation
    /// during the wait answers it instead.
    fn poll(&self, consumer: &BaseConsumer<Self>, max: usize, wait: Duration, reply: Reply<ConsumerEvent>) {
        {
            let mut state = lock(&self.state);
            if let Some(event) = state.events.pop_front() {
                answer(&mut state, reply, event);
                return;
            }
            if !state.buffer.is_empty() {
                let records = take(&mut state.buffer, max);
                answer(&mut state, reply, ConsumerEvent::Records(records));
                return;
            }
            state.polling = Some(reply);
        }
        let deadline = Instant::now() + wait;
        loop {
            let gathered = !lock(&self.state).buffer.is_empty();
            let timeout = if gathered {
                Duration::ZERO
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            let polled = consumer.poll(timeout);
            let mut state = lock(&self.state);
            if state.polling.is_none() {
                return; // answered by a revocation
            }
            let mut done = match polled {
                Some(Ok(message)) => {
                    state.buffer.push_back(record_of(&message));
                    false
                }
                Some(Err(err @ KafkaError::MessageConsumptionFatal(_))) => {
                    if let Some(reply) = state.polling.take() {
                        let _ = reply.send(Err(err.into()));
                    }
                    return;
                }
                Some(Err(err)) => {
                    tracing::warn!(topic = %self.topic, error = %err, "kafka consumer error; librdkafka retries");
                    false
                }
                None => gathered || Instant::now() >= deadline,
            };
            done |= !state.events.is_empty() || state.buffer.len() >= max;
            if done {
                let event = if state.buffer.is_empty() {
                    state.events.pop_front().unwrap_or(ConsumerEvent::Records(Vec::new()))
                } else {
                    ConsumerEvent::Records(take(&mut state.buffer, max))
                };
                if let Some(reply) = state.polling.take() {
                    answer(&mut state, reply, event);
                }
                return;
            }
        }
    }
}

/// The partitions of `partitions` currently assigned.
fn active(state: &State, partitions: &[Partition]) -> Vec<Partition> {
    partitions
        .iter()
        .copied()
        .filter(|partition| state.assigned.contains(partition))
        .collect()
}

fn take(buffer: &mut VecDeque<Record>, max: usize) -> Vec<Record> {
    let count = buffer.len().min(max);
    buffer.drain(..count).collect()
}

/// Sends `event`; if the application stopped waiting, keeps it for the next poll.
fn answer(state: &mut State, reply: Reply<ConsumerEvent>, event: ConsumerEvent) {
    if let Err(Ok(event)) = reply.send(Ok(event)) {
        match event {
            ConsumerEvent::Records(records) => {
                for record in records.into_iter().rev() {
                    state.buffer.push_front(record);
                }
            }
            other => state.events.push_front(other),
        }
    }
}

fn record_of(message: &BorrowedMessage<'_>) -> Record {
    Record {
        partition: message.partition() as Partition,
        offset: message.offset() as Offset,
        timestamp_ms: message.timestamp().to_millis().unwrap_or_default(),
        key: message.key().map(<[u8]>::to_vec).unwrap_or_default(),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

/// The consumer thread: serves the handle's commands until it is dropped; the consumer is
/// then closed (a last revocation, with nobody left to tell) and leaves its group.
fn run_consumer(consumer: &BaseConsumer<GroupContext>) {
    let context = consumer.context();
    loop {
        let stashed = lock(&context.state).stashed.take();
        let command = match stashed {
            Some(command) => command,
            None => match lock(&context.commands).recv() {
                Ok(command) => command,
                Err(_) => return,
            },
        };
        match command {
            Command::Poll { max, wait, reply } => context.poll(consumer, max, wait, reply),
            other => context.serve(consumer, other, &[]),
        }
    }
}

/// Whether a commit was refused because the group's membership changed under the consumer.
fn group_moved_on(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::IllegalGeneration | RDKafkaErrorCode::UnknownMemberId | RDKafkaErrorCode::RebalanceInProgress
    )
}
