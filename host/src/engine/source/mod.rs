//! The Kafka source: one consumer in the pipeline's group, polled by one
//! thread that checks each record's size, builds a batch per shard and
//! hands it over when it is full or has waited long enough. (A `json`
//! source's values are checked by the shard's one parse of each record:
//! `chain.rs`.)
//!
//! A busy shard's batches wait here (a few) while the other shards keep
//! getting theirs; past that the source waits for it, and after a second
//! pauses the consumer's partitions (still polling, so it stays in its
//! group): a slow stage or sink slows reading down instead of filling
//! memory. librdkafka's prefetch queue is bounded too
//! (`queued.max.messages.kbytes`).
//!
//! `rebalance.rs` is the consumer's context: assignments, restores and
//! revocations.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TrySendError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedHeaders, OwnedMessage};
use rdkafka::{Message, TopicPartitionList};

mod rebalance;

pub use rebalance::SourceContext;
use rebalance::{Done, RESTORE_TIMEOUT, Request};

use super::changelog;
use super::shard::{Chunk, Input};
use crate::plugin::{BatchBuilder, RecordRef};
use crate::sink::DeadLetter;

/// How the source checks and batches records.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Records per batch at most.
    pub max_records: usize,
    /// How long a batch waits to fill.
    pub max_wait: Duration,
    /// Values larger than this are dead-lettered.
    pub max_record_bytes: usize,
    /// Kafka, to read the changelog from.
    pub kafka: crate::kafka::Connection,
    /// The source topic.
    pub topic: String,
    /// The aggregator's changelog topic.
    pub changelog: String,
}

/// The shard that owns `partition`.
fn shard_of(partition: i32, shards: usize) -> usize {
    partition.unsigned_abs() as usize % shards
}

/// A batch being filled for one shard.
#[derive(Default)]
struct Open {
    builder: BatchBuilder,
    dead: Vec<DeadLetter>,
    offsets: Vec<(i32, i64)>,
    since: Option<Instant>,
}

impl Open {
    fn records(&self) -> usize {
        self.builder.len() + self.dead.len()
    }

    fn take(&mut self) -> Chunk {
        let open = std::mem::take(self);
        // The next batch is likely the size of this one: room for it up
        // front, not grown (and copied) record by record.
        self.builder = BatchBuilder::with_capacity(open.builder.len(), open.builder.bytes());
        Chunk {
            batch: open.builder.build(),
            dead: open.dead,
            offsets: open.offsets,
        }
    }

    /// Drops the records of `partitions` (revoked: their new owner reads them).
    fn drop_partitions(&mut self, partitions: &[i32]) {
        if !self.offsets.iter().any(|(p, _)| partitions.contains(p)) {
            return;
        }
        let kept = self.take().retain(|p| !partitions.contains(&p));
        *self = Self {
            builder: BatchBuilder::from(kept.batch),
            dead: kept.dead,
            offsets: kept.offsets,
            since: None,
        };
        if self.records() > 0 {
            self.since = Some(Instant::now());
        }
    }
}

/// The source thread's working set.
struct Source<'a> {
    consumer: &'a BaseConsumer<SourceContext>,
    settings: &'a SourceSettings,
    shards: usize,
    open: Vec<Open>,
    /// Chunks made for each shard and not yet taken by its queue: while
    /// one shard is busy, the others keep getting their records.
    pending: Vec<VecDeque<Chunk>>,
    /// Records of partitions still restoring, kept until their state is there.
    held: HashMap<i32, Vec<OwnedMessage>>,
    /// Partitions whose records go to the shards (assigned and restored);
    /// a copy of the router's view, refreshed when the assignment changes.
    flowing: HashSet<i32>,
    /// Partitions being restored (the router's view, copied likewise).
    restoring: HashSet<i32>,
    restores: (Sender<Done>, Receiver<Done>),
    waiting: Vec<Request>,
}

/// Polls `consumer` until `stop` is raised, feeding the shards; then hands
/// over what it holds and returns (closing the shards' inputs tells them to finish).
pub fn run(consumer: &BaseConsumer<SourceContext>, settings: &SourceSettings, stop: &AtomicBool) {
    let shards = consumer.context().router().shards.len();
    let mut source = Source {
        consumer,
        settings,
        shards,
        open: (0..shards).map(|_| Open::default()).collect(),
        pending: (0..shards).map(|_| VecDeque::new()).collect(),
        held: HashMap::new(),
        flowing: HashSet::new(),
        restoring: HashSet::new(),
        restores: std::sync::mpsc::channel(),
        waiting: Vec::new(),
    };
    source.run(stop);
    consumer.context().close();
}

impl Source<'_> {
    fn run(&mut self, stop: &AtomicBool) {
        let mut last_error: Option<(String, Instant)> = None;
        // The clock is read once per record (reading it is a tenth of this
        // thread's time when every record reads it several times).
        let mut now = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let wait = self
                .open
                .iter()
                .filter_map(|o| o.since)
                .map(|since| (since + self.settings.max_wait).saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_millis(100))
                .min(Duration::from_millis(100));
            let consumer = self.consumer;
            let polled = consumer.poll(wait);
            now = Instant::now();
            self.after_rebalance();
            match polled {
                Some(Ok(message)) => {
                    let shard = shard_of(message.partition(), self.shards);
                    self.accept(&message);
                    if self.open[shard].records() >= self.settings.max_records
                        && !self.hand_over(shard)
                    {
                        return;
                    }
                }
                Some(Err(error)) => {
                    // librdkafka retries by itself; say so once per kind of error and minute.
                    let text = error.to_string();
                    let repeat = last_error.as_ref().is_some_and(|(last, at)| {
                        *last == text && at.elapsed() < Duration::from_secs(60)
                    });
                    if !repeat {
                        tracing::warn!(error = %text, "Kafka consumer error; retrying.");
                        last_error = Some((text, Instant::now()));
                    }
                }
                None => {}
            }
            if !self.finish_restores() {
                return;
            }
            if !self.send_pending() {
                return;
            }
            for shard in 0..self.shards {
                if self.open[shard]
                    .since
                    .is_some_and(|since| now.duration_since(since) >= self.settings.max_wait)
                    && !self.hand_over(shard)
                {
                    return;
                }
            }
        }
        // Stopping: everything read goes to its shard before the queues close.
        for shard in 0..self.shards {
            if (self.open[shard].records() > 0 || !self.pending[shard].is_empty())
                && !self.hand_over_all(shard)
            {
                return;
            }
        }
    }

    /// Takes what the rebalance callbacks left: revoked partitions' records
    /// are dropped, new assignments' restores started.
    fn after_rebalance(&mut self) {
        let (revoked, requests) = {
            let mut router = self.consumer.context().router();
            if router.changed {
                router.changed = false;
                self.restoring.clone_from(&router.restoring);
                self.flowing = router
                    .epochs
                    .keys()
                    .filter(|p| !router.restoring.contains(p))
                    .copied()
                    .collect();
            }
            (
                std::mem::take(&mut router.revoked),
                std::mem::take(&mut router.requests),
            )
        };
        if !revoked.is_empty() {
            for open in &mut self.open {
                open.drop_partitions(&revoked);
            }
            for pending in &mut self.pending {
                for chunk in std::mem::take(pending) {
                    pending.push_back(chunk.retain(|partition| !revoked.contains(&partition)));
                }
            }
            for partition in &revoked {
                self.held.remove(partition);
            }
        }
        self.waiting.extend(requests);
        if self.waiting.is_empty() {
            return;
        }
        let now = Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|request| request.not_before <= now);
        self.waiting = later;
        for request in ready {
            let done = self.restores.0.clone();
            let kafka = self.settings.kafka.clone();
            let topic = self.settings.changelog.clone();
            let span = tracing::error_span!("restore");
            let spawned = std::thread::Builder::new()
                .name("weir-restore".into())
                .spawn(move || {
                    let _span = span.entered();
                    let started = Instant::now();
                    let numbers: Vec<i32> = request.partitions.iter().map(|(p, _)| *p).collect();
                    let result = changelog::restore(&kafka, &topic, &numbers, RESTORE_TIMEOUT);
                    drop(done.send(Done {
                        request,
                        result,
                        took: started.elapsed(),
                    }));
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "Cannot start a restore thread.");
            }
        }
    }

    /// Hands finished restores to their shards and resumes their partitions;
    /// false when a shard has stopped.
    fn finish_restores(&mut self) -> bool {
        while let Ok(done) = self.restores.1.try_recv() {
            let mut restored = match done.result {
                Ok(restored) => restored,
                Err(error) => {
                    tracing::warn!(%error, "Restoring state failed; trying again in 1 s (the partitions stay paused).");
                    self.waiting.push(Request {
                        not_before: Instant::now() + Duration::from_secs(1),
                        ..done.request
                    });
                    continue;
                }
            };
            let keys = restored.keys();
            let mut resume = TopicPartitionList::new();
            let mut ready = Vec::new();
            for (partition, epoch) in done.request.partitions {
                let sender = {
                    let mut router = self.consumer.context().router();
                    if router.epochs.get(&partition) != Some(&epoch) || router.shards.is_empty() {
                        continue; // revoked meanwhile
                    }
                    router.restoring.remove(&partition);
                    router.shards[shard_of(partition, self.shards)].clone()
                };
                self.restoring.remove(&partition);
                self.flowing.insert(partition);
                let entries = restored.partitions.remove(&partition).unwrap_or_default();
                if sender.send(Input::Restore { partition, entries }).is_err() {
                    return false;
                }
                resume.add_partition(&self.settings.topic, partition);
                ready.push(partition);
            }
            tracing::info!(
                partitions = ?ready,
                keys,
                changelog_records = restored.records,
                took = ?done.took,
                keys_per_s = (keys as f64 / done.took.as_secs_f64().max(1e-9)).round(),
                "State restored; the partitions flow."
            );
            for partition in ready {
                for message in self.held.remove(&partition).unwrap_or_default() {
                    self.accept(&message);
                }
            }
            if resume.count() > 0
                && let Err(error) = self.consumer.resume(&resume)
            {
                tracing::error!(%error, "Could not resume restored partitions.");
            }
        }
        true
    }

    /// Takes one record: into its shard's batch, or held while its
    /// partition's state is restored, or dropped if the partition is not ours.
    fn accept(&mut self, message: &impl Message) {
        let partition = message.partition();
        if self.flowing.contains(&partition) {
            add(
                &mut self.open[shard_of(partition, self.shards)],
                message,
                self.settings,
            );
        } else if self.restoring.contains(&partition) {
            self.held.entry(partition).or_default().push(owned(message));
        }
    }

    /// Queues shard `shard`'s open chunk and sends what its queue takes;
    /// false when the shard has stopped.
    ///
    /// A shard whose queue is full does not hold up the others: its chunks
    /// wait here, up to [`PENDING_CHUNKS`], while the source keeps reading
    /// (librdkafka hands out runs of one partition's records, so waiting on
    /// one shard would starve the rest). Past that bound the source waits
    /// for the shard ([`Self::hand_over_all`]).
    fn hand_over(&mut self, shard: usize) -> bool {
        let chunk = self.open[shard].take();
        self.pending[shard].push_back(chunk);
        if self.pending[shard].len() <= PENDING_CHUNKS {
            return self.send_pending();
        }
        self.hand_over_all(shard)
    }

    /// Sends the chunks waiting for each shard, as many as its queue takes;
    /// false when a shard has stopped.
    fn send_pending(&mut self) -> bool {
        // Called after every record: nothing waiting is the common case.
        if self.pending.iter().all(VecDeque::is_empty) {
            return true;
        }
        let router = self.consumer.context().router();
        for (shard, pending) in self.pending.iter_mut().enumerate() {
            let Some(sender) = router.shards.get(shard) else {
                return pending.is_empty();
            };
            while let Some(chunk) = pending.pop_front() {
                match sender.try_send(Input::Chunk(chunk)) {
                    Ok(()) => {}
                    Err(TrySendError::Disconnected(_)) => return false,
                    Err(TrySendError::Full(Input::Chunk(back))) => {
                        pending.push_front(back);
                        break;
                    }
                    Err(TrySendError::Full(_)) => unreachable!("a chunk was sent"),
                }
            }
        }
        true
    }

    /// Sends shard `shard`'s open chunk and every chunk waiting for it,
    /// waiting as long as its queue is full; false when the shard has stopped.
    ///
    /// While the shard is busy the consumer's partitions are paused and it
    /// keeps being polled: it stays in its group however long a sink stalls
    /// (a consumer that stops polling for `max.poll.interval.ms` is put out
    /// of the group). Pausing drops what librdkafka prefetched; fetching
    /// resumes from the next offset.
    fn hand_over_all(&mut self, shard: usize) -> bool {
        if self.open[shard].records() > 0 {
            let chunk = self.open[shard].take();
            self.pending[shard].push_back(chunk);
        }
        let mut paused = false;
        let since = Instant::now();
        let delivered = loop {
            if !self.send_pending() {
                break false;
            }
            if self.pending[shard].is_empty() {
                break true;
            }
            // A busy shard is the normal pace at full speed: wait a little
            // first, since pausing throws away what was prefetched.
            if since.elapsed() < PAUSE_AFTER {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if !paused && let Ok(assignment) = self.consumer.assignment() {
                if let Err(error) = self.consumer.pause(&assignment) {
                    tracing::warn!(%error, "Could not pause the consumer's partitions.");
                }
                paused = true;
            }
            // Serves the group's events; paused partitions yield no records,
            // but one that arrives anyway is kept, not lost.
            let consumer = self.consumer;
            let polled = consumer.poll(Duration::from_millis(50));
            self.after_rebalance();
            if let Some(Ok(message)) = polled {
                self.accept(&message);
            }
        };
        if paused {
            self.resume_all();
        }
        delivered
    }

    /// Resumes every assigned partition but those still restoring.
    fn resume_all(&self) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for element in assignment.elements() {
            if !self.restoring.contains(&element.partition()) {
                list.add_partition(element.topic(), element.partition());
            }
        }
        if let Err(error) = self.consumer.resume(&list) {
            tracing::error!(%error, "Could not resume the consumer's partitions.");
        }
    }
}

/// Chunks that may wait in the source for a busy shard (each up to the
/// pipeline's `max_records`) before the source waits for that shard.
const PENDING_CHUNKS: usize = 16;

/// How long a hand-over waits on a busy shard before pausing the consumer.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// A copy of `message` that outlives the poll.
fn owned(message: &impl Message) -> OwnedMessage {
    OwnedMessage::new(
        message.payload().map(<[u8]>::to_vec),
        message.key().map(<[u8]>::to_vec),
        message.topic().to_owned(),
        message.timestamp(),
        message.partition(),
        message.offset(),
        message.headers().map(|headers| {
            headers.iter().fold(
                OwnedHeaders::new_with_capacity(headers.count()),
                |owned, header| owned.insert(header),
            )
        }),
    )
}

/// Checks one record and adds it to the batch, or to the dead letters.
fn add(slot: &mut Open, message: &impl Message, settings: &SourceSettings) {
    let partition = message.partition();
    let offset = message.offset();
    let record = RecordRef {
        key: message.key(),
        value: message.payload().unwrap_or_default(),
        timestamp: message.timestamp().to_millis().unwrap_or_default(),
        partition,
        offset,
    };
    slot.since.get_or_insert_with(Instant::now);
    match slot.offsets.iter_mut().find(|(p, _)| *p == partition) {
        Some(next) => next.1 = offset + 1,
        None => slot.offsets.push((partition, offset + 1)),
    }
    if let Some(letter) = refuse(record, settings) {
        slot.dead.push(letter);
        return;
    }
    slot.builder.push(record);
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            slot.builder
                .header(header.key, header.value.unwrap_or_default());
        }
    }
}

/// The source's own check: the dead letter of a value too big to pass on.
fn refuse(record: RecordRef<'_>, settings: &SourceSettings) -> Option<DeadLetter> {
    let size = record.value.len();
    if size <= settings.max_record_bytes {
        return None;
    }
    // The dead letter says where the value is instead of carrying it (the
    // dead-letter topic takes no larger messages either).
    let reason = format!(
        "the value is {size} bytes; the source takes at most {} (`max_record_bytes`); \
         it is left out of the dead letter: read it from the source topic at the \
         partition and offset in the headers",
        settings.max_record_bytes
    );
    let record = RecordRef {
        value: &[],
        ..record
    };
    Some(DeadLetter::malformed(record, "source", "oversized", reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_refuses_what_is_too_big() {
        let settings = SourceSettings {
            max_records: 10,
            max_wait: Duration::from_millis(10),
            max_record_bytes: 64,
            kafka: crate::kafka::Connection::new(""),
            topic: String::new(),
            changelog: String::new(),
        };
        let refused = |value: &[u8]| {
            let record = RecordRef {
                key: Some(b"k"),
                value,
                timestamp: 1,
                partition: 2,
                offset: 3,
            };
            refuse(record, &settings).map(|letter| (letter.code, letter.value))
        };
        assert_eq!(refused(&[b' '; 64]), None);
        assert_eq!(
            refused(b"\xff\x00"),
            None,
            "the format is the shard's to check"
        );
        let (code, value) = refused(&[b' '; 65]).expect("refused");
        assert_eq!(code, "oversized");
        assert!(value.is_empty(), "an oversized value is left out");
    }
}
