//! Delivery: a task per shard that writes the shard's flushes to the sinks,
//! in the order it made them, then their state changes to the changelog, and
//! commits their offsets only once all of it is confirmed.
//!
//! The order matters after a crash. Rows before changelog: a key whose new
//! state is in the changelog has its row in the sinks, so skipping the
//! records it applied loses no row. Changelog before offsets: a committed
//! offset never runs ahead of the state that holds its records. A sink that fails is retried
//! with backoff; while it does, the shards block on their next flush and the
//! source on the shards, so memory stays bounded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::Receiver;

use super::shard::Flush;
use super::stats::Stats;
use crate::sink::error::BoxError;
use crate::sink::{Phase, Progress, SinkError, Sinks};

/// After a stop, how long failing sinks are still retried before giving up
/// (the offsets are then not committed; the records are read again on restart).
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The input offsets the pipeline has committed, per partition: a key may
/// be evicted once its records are all below them.
#[derive(Debug, Default)]
pub struct Committed(Mutex<HashMap<i32, i64>>);

impl Committed {
    /// The committed offset of `partition` (the next record to read).
    pub fn get(&self, partition: i32) -> Option<i64> {
        self.0
            .lock()
            .expect("not poisoned")
            .get(&partition)
            .copied()
    }

    /// Every partition's committed offset, as last committed here.
    pub fn snapshot(&self) -> Vec<(i32, i64)> {
        let committed = self.0.lock().expect("not poisoned");
        committed.iter().map(|(&p, &o)| (p, o)).collect()
    }

    fn set(&self, offsets: &BTreeMap<i32, i64>) {
        self.0.lock().expect("not poisoned").extend(offsets);
    }
}

/// Which partitions this instance's shards own, each with the epoch of its
/// current ownership: a partition gets a new epoch every time a shard
/// restores it. A flush says under which epoch it holds each partition's
/// records; delivery writes only those of the current epochs, so a flush
/// made before a partition was lost (and perhaps regained since) never
/// writes stale rows or commits stale offsets.
#[derive(Debug, Default)]
pub struct Ownership {
    epochs: Mutex<HashMap<i32, u64>>,
    next: std::sync::atomic::AtomicU64,
}

impl Ownership {
    /// `partition` is owned anew: its new epoch.
    pub fn gain(&self, partition: i32) -> u64 {
        let epoch = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.epochs
            .lock()
            .expect("not poisoned")
            .insert(partition, epoch);
        epoch
    }

    /// `partition` is another owner's already (taken without a clean
    /// revocation): nothing made under its epoch is written any more.
    pub fn lose(&self, partition: i32) {
        self.epochs.lock().expect("not poisoned").remove(&partition);
    }

    /// Whether records of `partition` made under `epoch` may still be written.
    pub fn is_current(&self, partition: i32, epoch: u64) -> bool {
        self.epochs.lock().expect("not poisoned").get(&partition) == Some(&epoch)
    }
}

/// Delivery could not finish its work.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The pipeline was stopped while a sink kept failing.
    #[error(
        "stopping while the sinks fail ({0}); the offsets of the unwritten rows are not committed, so those records will be read again on restart"
    )]
    SinksFailing(#[source] SinkError),
    /// A sink refused data for good, or weir broke its own rules: retrying
    /// cannot help, so the pipeline stops rather than retry forever.
    #[error(
        "{0}; nothing of this flush is committed, so its records will be read again on restart"
    )]
    Permanent(#[source] SinkError),
    /// The last commits failed.
    #[error(
        "could not commit the offsets of partitions {partitions:?}; their records will be read again on restart"
    )]
    Uncommitted {
        /// The partitions.
        partitions: Vec<i32>,
    },
}

/// Offsets confirmed by the sinks and not yet committed, with the epoch
/// of the ownership they were made under.
#[derive(Debug, Default)]
pub(crate) struct Pending(BTreeMap<i32, (i64, u64)>);

impl Pending {
    /// Whether some offsets wait to be committed.
    #[cfg(test)]
    pub(crate) fn has_offsets(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether an offset of `partition` waits to be committed.
    #[cfg(test)]
    pub(crate) fn has(&self, partition: i32) -> bool {
        self.0.contains_key(&partition)
    }
}

/// Where a pipeline's input offsets are committed: the source's consumer
/// group in weir, a simulated broker in the simulation tests.
pub trait Offsets: Send + Sync {
    /// The source partitions this instance holds now (`None`: cannot say).
    fn held(&self) -> Option<HashSet<i32>>;
    /// Commits `offsets` (partition -> the next offset to read), durably.
    fn commit<'a>(&'a self, offsets: &'a BTreeMap<i32, i64>)
    -> BoxFuture<'a, Result<(), BoxError>>;
}

/// The source consumer's group, committing offsets of `topic`.
pub struct GroupOffsets<C: ConsumerContext> {
    /// The consumer.
    pub consumer: Arc<BaseConsumer<C>>,
    /// The source topic.
    pub topic: String,
}

impl<C: ConsumerContext + 'static> Offsets for GroupOffsets<C> {
    fn held(&self) -> Option<HashSet<i32>> {
        let assignment = self.consumer.assignment().ok()?;
        Some(
            assignment
                .elements_for_topic(&self.topic)
                .iter()
                .map(|element| element.partition())
                .collect(),
        )
    }

    /// Commits synchronously, off the async threads.
    fn commit<'a>(
        &'a self,
        offsets: &'a BTreeMap<i32, i64>,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let mut list = TopicPartitionList::with_capacity(offsets.len());
            for (&partition, &offset) in offsets {
                list.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
            }
            let consumer = Arc::clone(&self.consumer);
            tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await??;
            Ok(())
        })
    }
}

/// What every shard's delivery of one pipeline shares.
pub struct Delivery {
    /// Where flushes are written.
    pub sinks: Arc<Sinks>,
    /// Where offsets are committed.
    pub offsets: Arc<dyn Offsets>,
    /// The pipeline's counters.
    pub stats: Arc<Stats>,
    /// The offsets committed so far.
    pub committed: Arc<Committed>,
    /// The shards' partitions and their epochs.
    pub ownership: Arc<Ownership>,
    /// Raised when the pipeline stops: failing sinks are retried only
    /// for a grace period after.
    pub stop: Arc<AtomicBool>,
}

/// Delivers a shard's flushes until it has finished. Fails when the sinks
/// stay unreachable past a stop, or refuse a flush for good.
pub async fn run(
    delivery: Arc<Delivery>,
    mut flushes: Receiver<Flush>,
) -> Result<(), DeliveryError> {
    let mut pending = Pending::default();
    while let Some(flush) = flushes.recv().await {
        delivery.deliver(flush, &mut pending).await?;
    }
    delivery.finish(pending).await
}

impl Delivery {
    /// Writes `flush` to the sinks, then commits what it covers (with what
    /// earlier commits left `pending`).
    pub(crate) async fn deliver(
        &self,
        mut flush: Flush,
        pending: &mut Pending,
    ) -> Result<(), DeliveryError> {
        let pipeline = self.sinks.pipeline();
        let started = Instant::now();
        let queued = flush.made.elapsed();
        // Partitions still owned under the epoch the flush was made in
        // (asked of the shards' own record, not of the consumer: no call
        // into librdkafka before the outputs are written).
        let epochs = std::mem::take(&mut flush.epochs);
        let current = || {
            epochs
                .iter()
                .filter(|&&(partition, epoch)| self.ownership.is_current(partition, epoch))
                .map(|&(partition, _)| partition)
                .collect::<HashSet<i32>>()
        };
        let failing = |failed| self.stats.set_failing(failed);
        write_with_retries(
            &self.sinks,
            &mut flush,
            &self.stop,
            &current,
            || self.offsets.held(),
            failing,
        )
        .await?;
        let epoch_of = |partition: i32| {
            epochs
                .iter()
                .find(|(p, _)| *p == partition)
                .map(|(_, e)| *e)
        };
        let written = started.elapsed();
        metrics::histogram!("weir_flush_duration_seconds", "pipeline" => pipeline.to_owned())
            .record(written);
        // A pipeline without an aggregator writes records, not rows: each counts.
        let rows = flush.records.row_count() + flush.records.emitted_count();
        self.stats.add_rows_written(rows as u64);
        count_dead_letters(pipeline, &flush);
        let writable = current();
        for (partition, offset) in flush.offsets {
            let Some(epoch) = epoch_of(partition).filter(|_| writable.contains(&partition)) else {
                continue;
            };
            let slot = pending.0.entry(partition).or_insert((offset, epoch));
            *slot = if slot.1 == epoch {
                (slot.0.max(offset), epoch)
            } else {
                (offset, epoch)
            };
        }
        let committing = Instant::now();
        if self.commit(pending).await {
            metrics::histogram!("weir_commit_duration_seconds", "pipeline" => pipeline.to_owned())
                .record(committing.elapsed());
        }
        if let Some(done) = flush.done.take() {
            done.send(()).ok();
        }
        tracing::debug!(
            rows,
            dead_letters = flush.records.dead.len(),
            queued = ?queued,
            written = ?written,
            committed = ?started.elapsed(),
            "Flush delivered."
        );
        Ok(())
    }

    /// After the last flush: the last commit failed? Its data is written:
    /// try a few more times.
    pub(crate) async fn finish(&self, mut pending: Pending) -> Result<(), DeliveryError> {
        for attempt in 1..=3 {
            if pending.0.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            self.commit(&mut pending).await;
        }
        if !pending.0.is_empty() {
            return Err(DeliveryError::Uncommitted {
                partitions: pending.0.keys().copied().collect(),
            });
        }
        Ok(())
    }

    /// Commits `pending`; what fails stays pending and goes with the next
    /// commit. Offsets of partitions no longer held are dropped: their new
    /// owner commits them. Whether offsets were committed.
    async fn commit(&self, pending: &mut Pending) -> bool {
        let held = self.offsets.held();
        pending.0.retain(|&partition, &mut (_, epoch)| {
            held.as_ref().is_none_or(|held| held.contains(&partition))
                && self.ownership.is_current(partition, epoch)
        });
        if pending.0.is_empty() {
            return false;
        }
        let offsets: BTreeMap<i32, i64> = pending
            .0
            .iter()
            .map(|(&p, &(offset, _))| (p, offset))
            .collect();
        match self.offsets.commit(&offsets).await {
            Ok(()) => {
                self.committed.set(&offsets);
                pending.0.clear();
                true
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    "Committing offsets failed; they go with the next commit."
                );
                false
            }
        }
    }
}

/// Counts a delivered flush's dead letters per stage and kind, once per flush.
fn count_dead_letters(pipeline: &str, flush: &Flush) {
    let mut dead: BTreeMap<(&str, &'static str), u64> = BTreeMap::new();
    for letter in &flush.records.dead {
        *dead.entry((&letter.stage, letter.kind.name())).or_default() += 1;
    }
    for ((stage, kind), count) in dead {
        metrics::counter!(
            "weir_dead_letters_total",
            "pipeline" => pipeline.to_owned(),
            "stage" => stage.to_owned(),
            "kind" => kind,
        )
        .increment(count);
    }
}

/// Writes `flush`: its outputs, then its changelog records, each sink once,
/// retrying with backoff the sinks that failed for a reason that may pass. Before each
/// attempt, what belongs to partitions the shards no longer own under the
/// flush's epoch (`writable`) is left out, and before the changelog, the
/// records of partitions the consumer no longer holds (`held`): a group may
/// move them while a flush waits or retries, and they are then their new
/// owner's to write.
async fn write_with_retries(
    sinks: &Sinks,
    flush: &mut Flush,
    stop: &AtomicBool,
    writable: impl Fn() -> HashSet<i32>,
    held: impl Fn() -> Option<HashSet<i32>>,
    failing: impl Fn(Option<(u32, String)>),
) -> Result<(), DeliveryError> {
    let mut attempt: u32 = 0;
    let mut stopped_at: Option<Instant> = None;
    // The sinks that took the flush: a retry writes only to the others.
    let mut progress = Progress::default();
    loop {
        let written = async {
            // Rows and dead letters of partitions no longer held are left
            // out as well as their changelog records: their new owner reads
            // those records again, and a row written late here would
            // overwrite a newer one of theirs.
            let writable = writable();
            let dropped = flush.records.retain_partitions(|p| writable.contains(&p));
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "Rows, dead letters and changelog records of partitions no longer owned were not written."
                );
            }
            sinks
                .write(Phase::Outputs, &flush.records, &mut progress)
                .await?;
            // The group may have moved a partition before its shard heard
            // of it: its state is then the new owner's to write.
            if let Some(held) = held().filter(|_| !flush.records.changelog.is_empty()) {
                let changelog = &mut flush.records.changelog;
                let before = changelog.len();
                changelog.retain(|record| held.contains(&record.partition));
                if changelog.len() < before {
                    tracing::warn!(
                        dropped = before - changelog.len(),
                        "Changelog records of partitions no longer held were not written."
                    );
                }
            }
            sinks
                .write(Phase::State, &flush.records, &mut progress)
                .await
        };
        let error = match written.await {
            Ok(()) => {
                if attempt > 0 {
                    tracing::info!(attempts = attempt + 1, "Sinks are writing again.");
                    failing(None);
                }
                return Ok(());
            }
            Err(error) if !error.is_transient() => return Err(DeliveryError::Permanent(error)),
            Err(error) => error,
        };
        attempt += 1;
        failing(Some((attempt, error.to_string())));
        if stop.load(Ordering::Relaxed) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= STOP_GRACE {
                return Err(DeliveryError::SinksFailing(error));
            }
        }
        let backoff = Duration::from_millis(100)
            .saturating_mul(1 << attempt.min(7))
            .min(Duration::from_secs(10));
        tracing::warn!(
            attempt,
            retry_in = ?backoff,
            error = %error,
            "A sink failed; retrying (the pipeline waits meanwhile)."
        );
        metrics::counter!("weir_sink_retries_total", "pipeline" => sinks.pipeline().to_owned())
            .increment(1);
        tokio::time::sleep(backoff).await;
    }
}
