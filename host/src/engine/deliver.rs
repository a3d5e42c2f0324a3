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

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::Receiver;

use super::shard::Flush;
use super::stats::Stats;
use crate::sink::{Phase, SinkError, Sinks};

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

    fn set(&self, offsets: &BTreeMap<i32, i64>) {
        self.0.lock().expect("not poisoned").extend(offsets);
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

/// Offsets confirmed by the sinks and not yet committed.
#[derive(Debug, Default)]
struct Pending(BTreeMap<i32, i64>);

/// What every shard's delivery of one pipeline shares.
pub struct Delivery<C: ConsumerContext> {
    /// Where flushes are written.
    pub sinks: Arc<Sinks>,
    /// The source's consumer: offsets are committed through it.
    pub consumer: Arc<BaseConsumer<C>>,
    /// The source topic.
    pub topic: String,
    /// The pipeline's counters.
    pub stats: Arc<Stats>,
    /// The offsets committed so far.
    pub committed: Arc<Committed>,
    /// Raised when the pipeline stops: failing sinks are retried only
    /// for a grace period after.
    pub stop: Arc<AtomicBool>,
}

/// Delivers a shard's flushes until it has finished. Fails when the sinks
/// stay unreachable past a stop, or refuse a flush for good.
pub async fn run<C: ConsumerContext + 'static>(
    delivery: Arc<Delivery<C>>,
    mut flushes: Receiver<Flush>,
) -> Result<(), DeliveryError> {
    let Delivery {
        sinks,
        consumer,
        topic,
        stats,
        committed,
        stop,
    } = delivery.as_ref();
    let pipeline = sinks.pipeline().to_owned();
    let mut pending = Pending::default();
    while let Some(mut flush) = flushes.recv().await {
        let started = Instant::now();
        let queued = flush.made.elapsed();
        write_with_retries(sinks, &mut flush, stop, || held(consumer, topic)).await?;
        let written = started.elapsed();
        metrics::histogram!("weir_flush_duration_seconds", "pipeline" => pipeline.clone())
            .record(written);
        let rows = flush.records.row_count();
        stats.add_rows_written(rows as u64);
        count_dead_letters(&pipeline, &flush);
        for (partition, offset) in flush.offsets {
            let slot = pending.0.entry(partition).or_insert(offset);
            *slot = (*slot).max(offset);
        }
        let committing = Instant::now();
        if commit(consumer, topic, &mut pending, committed).await {
            metrics::histogram!("weir_commit_duration_seconds", "pipeline" => pipeline.clone())
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
    }
    // The last commit failed? Its data is written: try a few more times.
    for attempt in 1..=3 {
        if pending.0.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
        commit(consumer, topic, &mut pending, committed).await;
    }
    if !pending.0.is_empty() {
        return Err(DeliveryError::Uncommitted {
            partitions: pending.0.keys().copied().collect(),
        });
    }
    Ok(())
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

/// The partitions of `topic` this instance holds now; `None` when the
/// consumer cannot say.
fn held<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str) -> Option<HashSet<i32>> {
    let assignment = consumer.assignment().ok()?;
    Some(
        assignment
            .elements_for_topic(topic)
            .iter()
            .map(|element| element.partition())
            .collect(),
    )
}

/// Writes `flush`: its outputs (once), then its changelog records, retrying
/// with backoff what failed for a reason that may pass. Before each
/// changelog attempt, records of partitions this instance no longer holds
/// (`held`) are left out: a group may move them while a flush waits or
/// retries, and their state is then their new owner's to write.
async fn write_with_retries(
    sinks: &Sinks,
    flush: &mut Flush,
    stop: &AtomicBool,
    held: impl Fn() -> Option<HashSet<i32>>,
) -> Result<(), DeliveryError> {
    let mut attempt: u32 = 0;
    let mut stopped_at: Option<Instant> = None;
    let mut outputs_written = false;
    loop {
        let written = async {
            if !outputs_written {
                sinks.write(Phase::Outputs, &flush.records).await?;
                outputs_written = true;
            }
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
            sinks.write(Phase::State, &flush.records).await
        };
        let error = match written.await {
            Ok(()) => {
                if attempt > 0 {
                    tracing::info!(attempts = attempt + 1, "Sinks are writing again.");
                }
                return Ok(());
            }
            Err(error) if !error.is_transient() => return Err(DeliveryError::Permanent(error)),
            Err(error) => error,
        };
        attempt += 1;
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

/// Commits `pending` (synchronously, off the async threads); what fails
/// stays pending and goes with the next commit. Offsets of partitions the
/// consumer no longer holds are dropped: their new owner commits them.
/// Whether offsets were committed.
async fn commit<C: ConsumerContext + 'static>(
    consumer: &Arc<BaseConsumer<C>>,
    topic: &str,
    pending: &mut Pending,
    committed: &Committed,
) -> bool {
    if let Some(held) = held(consumer, topic) {
        pending.0.retain(|partition, _| held.contains(partition));
    }
    if pending.0.is_empty() {
        return false;
    }
    let mut list = TopicPartitionList::with_capacity(pending.0.len());
    for (&partition, &offset) in &pending.0 {
        if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::error!(%error, partition, offset, "Cannot express an offset to commit.");
        }
    }
    let consumer = Arc::clone(consumer);
    let result = tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
        .await
        .map_err(|error| error.to_string())
        .and_then(|result| result.map_err(|error| error.to_string()));
    match result {
        Ok(()) => {
            committed.set(&pending.0);
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
