//! The Kafka source: one consumer in the pipeline's group, polled by one
//! thread that checks each record's size, builds a batch per shard and
//! hands it over when it is full or has waited long enough. (A `json`
//! source's values are checked by the shard's one parse of each record:
//! `chain/flight.rs`.)
//!
//! A busy shard's batches wait here (a few) while the other shards keep
//! getting theirs; past that the source waits for it, and after a second
//! pauses the consumer's partitions (still polling, so it stays in its
//! group): a slow stage or sink slows reading down instead of filling
//! memory. librdkafka's prefetch queue is bounded too
//! (`queued.max.messages.kbytes`).
//!
//! - `batch.rs`: a shard's open batch and the check of each record.
//! - `hand_over.rs`: giving chunks to the shards, waiting for busy ones.
//! - `rebalance.rs`: the consumer's context: assignments, restores and
//!   revocations.
//! - `restore.rs`: the source thread's side of those: restores run and
//!   revoked partitions' records dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

mod batch;
mod hand_over;
mod rebalance;
mod restore;

use batch::{Held, Incoming, Open, add};
pub use rebalance::SourceContext;
use rebalance::{Done, Request};

use super::shard::Chunk;

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
    /// The aggregator's changelog topic (`None`: the pipeline has no
    /// aggregator, and its partitions no state to restore).
    pub changelog: Option<String>,
}

/// The shard that owns `partition`.
fn shard_of(partition: i32, shards: usize) -> usize {
    partition.unsigned_abs() as usize % shards
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
    held: HashMap<i32, Vec<Held>>,
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
    /// Closes the shards' inputs however this thread ends: were it to
    /// panic, the shards would otherwise wait for records forever and the
    /// process would hang instead of stopping with the panic's error.
    struct CloseOnExit<'a>(&'a SourceContext);
    impl Drop for CloseOnExit<'_> {
        fn drop(&mut self) {
            self.0.close();
        }
    }
    let _close = CloseOnExit(consumer.context());
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
                    self.accept(&Incoming::polled(&message));
                    if self.open[shard].is_full(self.settings.max_records) && !self.hand_over(shard)
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

    /// Takes one record: into its shard's batch, or held while its
    /// partition's state is restored, or dropped if the partition is not ours.
    fn accept(&mut self, incoming: &Incoming<'_>) {
        let partition = incoming.record.partition;
        if self.flowing.contains(&partition) {
            add(
                &mut self.open[shard_of(partition, self.shards)],
                incoming,
                self.settings,
            );
        } else if self.restoring.contains(&partition) {
            self.held
                .entry(partition)
                .or_default()
                .push(Held::of(incoming));
        }
    }
}
