//! A shard: one thread owning some of the input partitions (partition `p`
//! goes to shard `p % shards`), its own plugin instances and those
//! partitions' keyed state. It runs chunks through the stages as they come
//! and, every flush interval, hands the changed rows, the changelog records,
//! the dead letters and the offsets they account for to the delivery task.
//!
//! A partition is the shard's from the moment its state is restored
//! ([`Input::Restore`]) until it is revoked ([`Input::Revoke`]); records of
//! partitions it does not own are left alone (whoever owns them reads them).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Sender;

use super::chain::{Chain, Stage};
use super::changelog::{ChangelogRecord, Stored};
use super::dead_letter::DeadLetter;
use super::deliver::{Committed, Output};
use super::state::{KeyedState, Row};
use super::stats::Stats;
use super::swap::{AggregatorVersion, Order, Report};
use crate::plugin::{Batch, BatchBuilder};

/// What the source sends a shard.
#[derive(Debug)]
pub enum Input {
    /// Records to process.
    Chunk(Chunk),
    /// A stage's plugin is replaced, from the next batch on.
    Swap(Arc<Order>),
    /// A partition is now the shard's, with its state as the changelog holds it.
    Restore {
        /// The partition.
        partition: i32,
        /// Its keys' state.
        entries: HashMap<Vec<u8>, Stored>,
    },
    /// Partitions are leaving: write what they hold now (unless `lost`: then
    /// another owner has them already), and forget them.
    Revoke {
        /// The partitions.
        partitions: Vec<i32>,
        /// The group took them without asking; writing is too late.
        lost: bool,
        /// Set when the source stopped waiting for this revocation: the
        /// partitions may have a new owner by now, so nothing is written.
        abandoned: Arc<std::sync::atomic::AtomicBool>,
        /// Told once their last flush is committed (or forgotten, if lost).
        done: std::sync::mpsc::Sender<()>,
    },
}

/// Records read from the source for one shard.
#[derive(Debug)]
pub struct Chunk {
    /// The records that passed the source's checks.
    pub batch: Batch,
    /// The records that did not.
    pub dead: Vec<DeadLetter>,
    /// For each partition in the chunk, the offset after its last record.
    pub offsets: Vec<(i32, i64)>,
}

/// What one flush hands to the sinks; once they have it, `offsets` may be committed.
#[derive(Debug)]
pub struct Flush {
    /// Rows changed since the last flush, each key once, grouped by their
    /// shape (the aggregator version that made them: a swap can fall
    /// between two flushes).
    pub rows: Vec<(Arc<Output>, Vec<Row>)>,
    /// The state changes, for the changelog (written after the rows).
    pub changelog: Vec<ChangelogRecord>,
    /// Dead letters since the last flush.
    pub dead: Vec<DeadLetter>,
    /// Per partition, the offset to commit (the next one to read).
    pub offsets: Vec<(i32, i64)>,
    /// When the shard made it (delivery reports how long it waited).
    pub made: Instant,
    /// Told once the flush is written and its offsets committed.
    pub done: Option<std::sync::mpsc::Sender<()>>,
}

/// A shard stopped with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Delivery stopped (it logged why), so the shard's rows have nowhere to go.
    #[error("delivery stopped")]
    DeliveryStopped,
}

/// How a shard runs.
pub struct ShardSettings {
    /// The shard's number.
    pub id: usize,
    /// How many shards the pipeline has.
    pub shards: usize,
    /// Time between flushes.
    pub flush_interval: Duration,
    /// A batch's longest wait to fill: input quiet this long has caught up.
    pub max_wait: Duration,
    /// Keys idle this long (in stream time) are evicted.
    pub idle_timeout: Option<Duration>,
    /// The aggregator's state version.
    pub state_version: u32,
    /// The shape of the aggregator's rows.
    pub output: Arc<Output>,
}

/// A swapped stage on probation: what it replaced, and until when.
struct Probation {
    order: Arc<Order>,
    previous: Stage,
    previous_aggregator: Option<AggregatorVersion>,
    until: Instant,
}

/// Runs a shard until its input closes, then flushes what it holds and
/// returns. Fails when restored state cannot be migrated to the plugin's
/// state version (the pipeline must not go on without it).
#[allow(clippy::too_many_lines)]
pub fn run(
    mut chain: Chain,
    input: Receiver<Input>,
    output: Sender<Flush>,
    settings: ShardSettings,
    stats: Arc<Stats>,
    committed: Arc<Committed>,
) -> Result<(), ShardError> {
    let mut state = KeyedState::new(settings.state_version);
    let mut outputs = Outputs::new(Arc::clone(&settings.output));
    let mut aggregator = AggregatorVersion {
        output: Arc::clone(&settings.output),
        state_version: settings.state_version,
    };
    let mut owned: HashSet<i32> = HashSet::new();
    let mut dead: Vec<DeadLetter> = Vec::new();
    let mut offsets: Vec<(i32, i64)> = Vec::new();
    // After an aggregator swap: keys whose row the new version has yet to make.
    let mut stale: Vec<(i32, Vec<u8>)> = Vec::new();
    // Swaps whose first batch is still to come: (order, when the shard cut over, stall).
    let mut first_batch: Vec<(Arc<Order>, Duration)> = Vec::new();
    let mut probation: Option<Probation> = None;
    // Shards flush in turn, spread over the interval, so their writes do not
    // all reach the sinks at the same moment.
    let phase = settings
        .flush_interval
        .mul_f64((settings.id + 1) as f64 / settings.shards as f64);
    let mut next_flush = Instant::now() + phase;
    // Once the input has been quiet for `max_wait` (the source has caught
    // up: it would have handed over even a partial batch by then), what
    // changed goes out without waiting for the tick, at most ten times per
    // interval: under load rows are gathered for the whole interval (each
    // key once), and when the input pauses or ends they are sent within
    // about a tenth of it.
    let mut last_flush = Instant::now();
    let mut last_input = Instant::now();
    // Evicting scans every key, so it runs a few times per idle timeout, not every flush.
    let evict_every = settings.idle_timeout.map(|idle| {
        (idle / 4)
            .min(Duration::from_secs(60))
            .max(settings.flush_interval)
    });
    let mut next_evict = evict_every.map(|every| Instant::now() + every);
    let mut open = true;
    while open {
        let early_at = early_flush_at(&offsets, &output, last_input, last_flush, &settings);
        let flush_at = early_at.map_or(next_flush, |at| at.min(next_flush));
        // Stale keys are refreshed a slice at a time, between batches.
        let wait = if stale.is_empty() {
            flush_at.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        match input.recv_timeout(wait) {
            Ok(Input::Chunk(chunk)) => {
                let chunk = keep_owned(chunk, &owned);
                let records = chunk.batch.records.len() as u64 + chunk.dead.len() as u64;
                stats.add_received(records);
                let source_dead = chunk.dead.len() as u64;
                dead.extend(chunk.dead);
                let started = Instant::now();
                last_input = started;
                if let Some(ended) = probation.take_if(|p| Instant::now() >= p.until) {
                    chain.set_fail_fast(ended.order.stage, false);
                }
                let guarded = probation.as_ref().map(|p| p.order.stage);
                let tally = match chain.process_guarded(
                    &chunk.batch,
                    &mut state,
                    &mut dead,
                    guarded,
                ) {
                    Ok(tally) => tally,
                    Err(reason) => {
                        // The new version trapped on probation: back to the
                        // one it replaced, which processes the batch instead.
                        let failed = probation.take().expect("guarded by a probation");
                        tracing::warn!(
                            shard = settings.id,
                            stage = %chain.stage(failed.order.stage).name,
                            %reason,
                            "The new plugin version trapped on probation; this shard went back to the previous one."
                        );
                        let stage = failed.order.stage;
                        let mut previous = failed.previous;
                        previous.set_fail_fast(false);
                        chain.replace(
                            stage,
                            previous,
                            failed
                                .previous_aggregator
                                .as_ref()
                                .map(|a| (Arc::clone(&a.output.schema), a.state_version)),
                        );
                        if let Some(previous) = failed.previous_aggregator {
                            let generation = state.new_generation(previous.state_version);
                            outputs.add(generation, Arc::clone(&previous.output));
                            stale = state.stale_keys();
                            aggregator = previous;
                        }
                        first_batch.retain(|(order, _)| order.id != failed.order.id);
                        failed.order.reports.add(Report::ProbationFailed {
                            id: failed.order.id,
                            shard: settings.id,
                            reason,
                        });
                        chain.process(&chunk.batch, &mut state, &mut dead)
                    }
                };
                if tracing::enabled!(tracing::Level::TRACE) {
                    // How long the oldest record waited to get here (Kafka's
                    // timestamps are the producer's clock: a rough guide).
                    let oldest = chunk.batch.records.iter().map(|r| r.timestamp).min();
                    tracing::trace!(
                        shard = settings.id,
                        records = chunk.batch.records.len(),
                        waited_ms = oldest.map(|t| chrono::Utc::now().timestamp_millis() - t),
                        took = ?started.elapsed(),
                        "Batch processed."
                    );
                }
                if !chunk.batch.records.is_empty() {
                    for (order, stall) in first_batch.drain(..) {
                        order.reports.add(Report::FirstBatch {
                            id: order.id,
                            shard: settings.id,
                            latency: order.requested.elapsed(),
                            stall,
                        });
                    }
                }
                stats.add_tally(tally, source_dead);
                stats.add_batch(chunk.batch.records.len(), started.elapsed());
                for (partition, offset) in chunk.offsets {
                    match offsets.iter_mut().find(|(p, _)| *p == partition) {
                        Some(slot) => slot.1 = slot.1.max(offset),
                        None => offsets.push((partition, offset)),
                    }
                }
            }
            Ok(Input::Swap(order)) => {
                let stopped = Instant::now();
                match Stage::new(&order.plugin, Arc::clone(&order.context)) {
                    Err(error) => order.reports.add(Report::Failed {
                        id: order.id,
                        shard: settings.id,
                        reason: format!("{error:#}"),
                    }),
                    Ok(stage) => {
                        let previous = chain.replace(
                            order.stage,
                            stage,
                            order
                                .aggregator
                                .as_ref()
                                .map(|a| (Arc::clone(&a.output.schema), a.state_version)),
                        );
                        let mut previous_aggregator = None;
                        if let Some(new) = &order.aggregator {
                            let generation = state.new_generation(new.state_version);
                            outputs.add(generation, Arc::clone(&new.output));
                            stale = state.stale_keys();
                            previous_aggregator =
                                Some(std::mem::replace(&mut aggregator, new.clone()));
                        }
                        // One probation at a time: a newer swap ends the one before.
                        if let Some(ended) = probation.take() {
                            chain.set_fail_fast(ended.order.stage, false);
                        }
                        chain.set_fail_fast(order.stage, order.probation.is_some());
                        probation = order.probation.map(|window| Probation {
                            order: Arc::clone(&order),
                            previous,
                            previous_aggregator,
                            until: Instant::now() + window,
                        });
                        order.reports.add(Report::CutOver {
                            id: order.id,
                            shard: settings.id,
                        });
                        first_batch.push((order, stopped.elapsed()));
                    }
                }
                continue;
            }
            Ok(Input::Restore { partition, entries }) => {
                // State of another version is migrated when its key is next
                // used; its row is refreshed like after a swap (the state
                // marks such keys as not the running generation's).
                let keys: Vec<Vec<u8>> = entries
                    .iter()
                    .filter(|(_, stored)| stored.state_version != aggregator.state_version)
                    .map(|(key, _)| key.clone())
                    .collect();
                state.restore(partition, entries);
                stale.extend(keys.into_iter().map(|key| (partition, key)));
                owned.insert(partition);
                stats.set_keys(settings.id, state.len() as u64);
            }
            Ok(Input::Revoke {
                partitions,
                lost,
                abandoned,
                done: ack,
            }) => {
                if lost || abandoned.load(std::sync::atomic::Ordering::Relaxed) {
                    // Whatever was not committed, the new owner reads again.
                    for partition in &partitions {
                        forget(*partition, &mut state, &mut owned, &mut offsets, &mut dead);
                    }
                    ack.send(()).ok();
                } else {
                    // Flush now (every partition: simpler, and harmless), then forget them.
                    flush(
                        &mut state,
                        &mut dead,
                        &mut offsets,
                        Some(ack),
                        &mut outputs,
                        &output,
                    )?;
                    for partition in &partitions {
                        forget(*partition, &mut state, &mut owned, &mut offsets, &mut dead);
                    }
                }
                stale.retain(|(p, _)| !partitions.contains(p));
                stats.set_keys(settings.id, state.len() as u64);
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        if !stale.is_empty() {
            let slice: Vec<_> = stale
                .drain(stale.len().saturating_sub(REFRESH_SLICE)..)
                .collect();
            chain.refresh(&slice, &mut state);
        }
        let tick = Instant::now() >= next_flush || !open;
        let early = early_flush_at(&offsets, &output, last_input, last_flush, &settings)
            .is_some_and(|at| Instant::now() >= at);
        if tick || early {
            flush(
                &mut state,
                &mut dead,
                &mut offsets,
                None,
                &mut outputs,
                &output,
            )?;
            last_flush = Instant::now();
        }
        if tick {
            if let (Some(idle), Some(at)) = (settings.idle_timeout, next_evict)
                && Instant::now() >= at
            {
                let evicted = state.evict_idle(idle, |partition| committed.get(partition));
                if evicted > 0 {
                    tracing::debug!(evicted, "Evicted idle keys.");
                }
                stats.add_evicted(evicted as u64);
                next_evict = evict_every.map(|every| Instant::now() + every);
            }
            stats.set_keys(settings.id, state.len() as u64);
            // On a steady cadence: the time a flush takes, or a batch that
            // ran past the tick, does not push every later flush back (a
            // changed key waits at most one interval). After a stall longer
            // than an interval, the cadence starts again from now.
            next_flush += settings.flush_interval;
            if next_flush <= Instant::now() {
                next_flush = Instant::now() + settings.flush_interval;
            }
        }
    }
    Ok(())
}

/// Stale keys refreshed between two batches after a swap.
const REFRESH_SLICE: usize = 1024;

/// When a shard that has caught up flushes before its tick: once its input
/// has been quiet for `max_wait` and a tenth of the interval has passed since
/// its last flush; `None` when nothing waits to be flushed or delivery has
/// no room (an early flush never waits for delivery).
fn early_flush_at(
    offsets: &[(i32, i64)],
    output: &Sender<Flush>,
    last_input: Instant,
    last_flush: Instant,
    settings: &ShardSettings,
) -> Option<Instant> {
    (!offsets.is_empty() && output.capacity() > 0)
        .then(|| (last_input + settings.max_wait).max(last_flush + settings.flush_interval / 10))
}

/// Hands what changed to delivery; an error when delivery has stopped.
fn flush(
    state: &mut KeyedState,
    dead: &mut Vec<DeadLetter>,
    offsets: &mut Vec<(i32, i64)>,
    done: Option<std::sync::mpsc::Sender<()>>,
    outputs: &mut Outputs,
    output: &Sender<Flush>,
) -> Result<(), ShardError> {
    let changes = state.take_changes();
    let flush = Flush {
        rows: outputs.group(changes.rows),
        changelog: changes.changelog,
        dead: std::mem::take(dead),
        offsets: std::mem::take(offsets),
        made: Instant::now(),
        done,
    };
    let empty = flush.rows.is_empty()
        && flush.changelog.is_empty()
        && flush.dead.is_empty()
        && flush.offsets.is_empty();
    if empty {
        if let Some(done) = flush.done {
            done.send(()).ok();
        }
        return Ok(());
    }
    // The delivery task stops only when it cannot write (it says why).
    output
        .blocking_send(flush)
        .map_err(|_| ShardError::DeliveryStopped)
}

/// The shape of the rows of each aggregator generation still in state.
struct Outputs {
    generations: Vec<(u64, Arc<Output>)>,
}

impl Outputs {
    fn new(output: Arc<Output>) -> Self {
        Self {
            generations: vec![(0, output)],
        }
    }

    /// Rows of `generation` (the newest) have the shape `output`.
    fn add(&mut self, generation: u64, output: Arc<Output>) {
        self.generations.push((generation, output));
    }

    /// `rows` grouped by shape. Every pending row is taken, so only the
    /// newest generation is kept after.
    fn group(&mut self, rows: Vec<(u64, Row)>) -> Vec<(Arc<Output>, Vec<Row>)> {
        let mut groups: Vec<(u64, Arc<Output>, Vec<Row>)> = Vec::new();
        for (generation, row) in rows {
            match groups.iter_mut().find(|(g, _, _)| *g == generation) {
                Some(group) => group.2.push(row),
                None => {
                    let output = self
                        .generations
                        .iter()
                        .find(|(g, _)| *g == generation)
                        .map(|(_, output)| Arc::clone(output))
                        .expect("every generation with rows has its output");
                    groups.push((generation, output, vec![row]));
                }
            }
        }
        let newest = self.generations.pop().expect("the running generation");
        self.generations = vec![newest];
        groups
            .into_iter()
            .map(|(_, output, rows)| (output, rows))
            .collect()
    }
}

/// Drops everything the shard holds of `partition`.
fn forget(
    partition: i32,
    state: &mut KeyedState,
    owned: &mut HashSet<i32>,
    offsets: &mut Vec<(i32, i64)>,
    dead: &mut Vec<DeadLetter>,
) {
    state.remove(partition);
    owned.remove(&partition);
    offsets.retain(|(p, _)| *p != partition);
    dead.retain(|letter| letter.partition != partition);
}

/// `chunk` without the records of partitions the shard does not own (read
/// before a revocation reached the source; their new owner reads them again).
fn keep_owned(chunk: Chunk, owned: &HashSet<i32>) -> Chunk {
    chunk.retain(|partition| owned.contains(&partition))
}

impl Chunk {
    /// The chunk with only the records of partitions `keep` accepts.
    pub fn retain(self, keep: impl Fn(i32) -> bool) -> Self {
        if self.offsets.iter().all(|(p, _)| keep(*p)) {
            return self;
        }
        let mut builder = BatchBuilder::default();
        for (index, record) in self.batch.records.iter().enumerate() {
            if keep(record.partition) {
                builder.push_from(&self.batch, index);
            }
        }
        Self {
            batch: builder.build(),
            dead: self
                .dead
                .into_iter()
                .filter(|letter| keep(letter.partition))
                .collect(),
            offsets: self.offsets.into_iter().filter(|(p, _)| keep(*p)).collect(),
        }
    }
}
