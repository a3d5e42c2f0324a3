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

use super::changelog::ChangelogWriter;
use super::dead_letter::{DeadLetterWriter, Kind};
use super::shard::Flush;
use super::stats::Stats;
use crate::sink::{KafkaSink, PostgresSink, RowSchema};

/// After a stop, how long failing sinks are still retried before giving up
/// (the offsets are then not committed; the records are read again on restart).
const STOP_GRACE: Duration = Duration::from_secs(30);

/// What the rows of a flush look like: the aggregator version that made
/// them decides (a swap can change it while older flushes are in flight).
#[derive(Debug)]
pub struct Output {
    /// The rows' schema.
    pub schema: Arc<RowSchema>,
    /// Its id in the schema registry (when there is a Kafka sink).
    pub kafka_schema_id: Option<u32>,
    /// The PostgreSQL upsert of such rows (when there is a PostgreSQL sink).
    pub statement: Option<String>,
}

/// Where a pipeline's results go.
pub struct Sinks {
    /// The pipeline's name.
    pub pipeline: String,
    /// The source topic (offsets are committed for it).
    pub topic: String,
    /// Avro rows to Kafka.
    pub kafka: Option<KafkaSink>,
    /// Upserts to PostgreSQL.
    pub postgres: Option<PostgresSink>,
    /// The dead-letter topic.
    pub dead_letters: DeadLetterWriter,
    /// The aggregator's changelog.
    pub changelog: ChangelogWriter,
}

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

impl Sinks {
    /// Starts this pipeline's error and retry counters at zero: a healthy
    /// pipeline then shows its errors as 0, where a query expects a value,
    /// rather than as no series at all.
    pub fn start_counters(&self, stages: &[&str]) {
        let sinks = [
            self.kafka.as_ref().map(|_| "kafka"),
            self.postgres.as_ref().map(|_| "postgres"),
            Some("dead-letters"),
            Some("changelog"),
        ];
        for sink in sinks.into_iter().flatten() {
            let labels = [
                ("pipeline", self.pipeline.clone()),
                ("sink", sink.to_owned()),
            ];
            metrics::counter!("weir_sink_errors_total", &labels).absolute(0);
            metrics::counter!("weir_sink_rows_total", &labels).absolute(0);
        }
        metrics::counter!("weir_sink_retries_total", "pipeline" => self.pipeline.clone())
            .absolute(0);
        // Dead letters too: the source's malformed values, each stage's kinds.
        let source = std::iter::once(("source", Kind::Malformed));
        let stages = stages.iter().flat_map(|stage| {
            [Kind::Malformed, Kind::Rejected, Kind::Trapped].map(|kind| (*stage, kind))
        });
        for (stage, kind) in source.chain(stages) {
            metrics::counter!(
                "weir_dead_letters_total",
                "pipeline" => self.pipeline.clone(),
                "stage" => stage.to_owned(),
                "kind" => kind.name(),
            )
            .absolute(0);
        }
    }

    /// Writes one flush everywhere it goes; all or an error.
    async fn write(&self, flush: &Flush) -> Result<(), String> {
        let rows: usize = flush.rows.iter().map(|(_, rows)| rows.len()).sum();
        // A sink the pipeline does not have writes nothing and is not counted.
        let kafka = async {
            let Some(sink) = &self.kafka else {
                return Ok(());
            };
            self.observed("kafka", rows, async {
                for (output, rows) in &flush.rows {
                    if let Some(id) = output.kafka_schema_id {
                        sink.send_as(rows, &output.schema, id)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Ok(())
            })
            .await
        };
        let postgres = async {
            let Some(sink) = &self.postgres else {
                return Ok(());
            };
            self.observed("postgres", rows, async {
                for (output, rows) in &flush.rows {
                    if let Some(statement) = &output.statement {
                        sink.upsert_as(rows, &output.schema, statement)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Ok(())
            })
            .await
        };
        let dead_letters = self.observed(
            "dead-letters",
            flush.dead.len(),
            self.dead_letters.send(&flush.dead),
        );
        // PostgreSQL first: its future sends its statements at its first
        // poll, and the server runs them while the Kafka sink encodes its
        // rows (synchronously, at that future's first poll).
        tokio::try_join!(postgres, kafka, dead_letters).map(drop)
    }

    /// Runs one sink's write of `records` (none: nothing to write, and
    /// `write` is not run), recording its time, its records and its
    /// failures under `sink`; a failure names the sink.
    async fn observed(
        &self,
        sink: &'static str,
        records: usize,
        write: impl Future<Output = Result<(), String>>,
    ) -> Result<(), String> {
        if records == 0 {
            return Ok(());
        }
        let labels = [
            ("pipeline", self.pipeline.clone()),
            ("sink", sink.to_owned()),
        ];
        let started = Instant::now();
        match write.await {
            Ok(()) => {
                metrics::histogram!("weir_sink_write_duration_seconds", &labels)
                    .record(started.elapsed());
                metrics::counter!("weir_sink_rows_total", &labels).increment(records as u64);
                Ok(())
            }
            Err(error) => {
                metrics::counter!("weir_sink_errors_total", &labels).increment(1);
                Err(format!("{sink}: {error}"))
            }
        }
    }
}

/// Delivery could not finish its work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The pipeline was stopped while a sink kept failing.
    #[error(
        "stopping while the sinks fail ({error}); the offsets of the unwritten rows are not committed, so those records will be read again on restart"
    )]
    SinksFailing {
        /// The last failure.
        error: String,
    },
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

/// Delivers flushes until every shard has finished. Fails only when the
/// sinks stay unreachable past a stop.
pub async fn run<C: ConsumerContext + 'static>(
    sinks: Arc<Sinks>,
    mut flushes: Receiver<Flush>,
    consumer: Arc<BaseConsumer<C>>,
    stats: Arc<Stats>,
    committed: Arc<Committed>,
    stop: Arc<AtomicBool>,
) -> Result<(), DeliveryError> {
    let mut pending = Pending::default();
    while let Some(mut flush) = flushes.recv().await {
        let started = Instant::now();
        let queued = flush.made.elapsed();
        write_with_retries(&sinks, &mut flush, &stop, || held(&consumer, &sinks.topic)).await?;
        let written = started.elapsed();
        metrics::histogram!("weir_flush_duration_seconds", "pipeline" => sinks.pipeline.clone())
            .record(written);
        let rows: usize = flush.rows.iter().map(|(_, rows)| rows.len()).sum();
        stats.add_rows_written(rows as u64);
        // Counted per stage and kind, once per flush.
        let mut dead: BTreeMap<(&str, &'static str), u64> = BTreeMap::new();
        for letter in &flush.dead {
            *dead.entry((&letter.stage, letter.kind.name())).or_default() += 1;
        }
        for ((stage, kind), count) in dead {
            metrics::counter!(
                "weir_dead_letters_total",
                "pipeline" => sinks.pipeline.clone(),
                "stage" => stage.to_owned(),
                "kind" => kind,
            )
            .increment(count);
        }
        for (partition, offset) in flush.offsets {
            let slot = pending.0.entry(partition).or_insert(offset);
            *slot = (*slot).max(offset);
        }
        let committing = Instant::now();
        if commit(&consumer, &sinks.topic, &mut pending, &committed).await {
            metrics::histogram!("weir_commit_duration_seconds", "pipeline" => sinks.pipeline.clone())
                .record(committing.elapsed());
        }
        if let Some(done) = flush.done.take() {
            done.send(()).ok();
        }
        tracing::debug!(
            rows,
            dead_letters = flush.dead.len(),
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
        commit(&consumer, &sinks.topic, &mut pending, &committed).await;
    }
    if !pending.0.is_empty() {
        return Err(DeliveryError::Uncommitted {
            partitions: pending.0.keys().copied().collect(),
        });
    }
    Ok(())
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

/// Writes `flush`: its rows and dead letters (once), then its changelog
/// records, retrying with backoff. Before each changelog attempt, records of
/// partitions this instance no longer holds (`held`) are left out: a group
/// may move them while a flush waits or retries, and their state is then
/// their new owner's to write.
async fn write_with_retries(
    sinks: &Sinks,
    flush: &mut Flush,
    stop: &AtomicBool,
    held: impl Fn() -> Option<HashSet<i32>>,
) -> Result<(), DeliveryError> {
    let mut attempt: u32 = 0;
    let mut stopped_at: Option<Instant> = None;
    let mut rows_written = false;
    loop {
        let written = async {
            if !rows_written {
                sinks.write(flush).await?;
                rows_written = true;
            }
            if let Some(held) = held().filter(|_| !flush.changelog.is_empty()) {
                let before = flush.changelog.len();
                flush
                    .changelog
                    .retain(|record| held.contains(&record.partition));
                if flush.changelog.len() < before {
                    tracing::warn!(
                        dropped = before - flush.changelog.len(),
                        "Changelog records of partitions no longer held were not written."
                    );
                }
            }
            sinks
                .observed(
                    "changelog",
                    flush.changelog.len(),
                    sinks.changelog.send(&flush.changelog),
                )
                .await
        };
        let error = match written.await {
            Ok(()) => {
                if attempt > 0 {
                    tracing::info!(attempts = attempt + 1, "Sinks are writing again.");
                }
                return Ok(());
            }
            Err(error) => error,
        };
        attempt += 1;
        if stop.load(Ordering::Relaxed) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= STOP_GRACE {
                return Err(DeliveryError::SinksFailing { error });
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
        metrics::counter!("weir_sink_retries_total", "pipeline" => sinks.pipeline.clone())
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
