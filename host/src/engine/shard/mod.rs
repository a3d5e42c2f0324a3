//! A shard: one thread owning some of the input partitions (partition `p`
//! goes to shard `p % shards`), its own plugin instances and those
//! partitions' keyed state. It runs chunks through the stages as they come
//! and, every flush interval, hands the changed rows, the changelog records,
//! the dead letters and the offsets they account for to the delivery task.
//!
//! A partition is the shard's from the moment its state is restored
//! ([`Input::Restore`]) until it is revoked ([`Input::Revoke`]); records of
//! partitions it does not own are left alone (whoever owns them reads them).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Sender;

use super::chain::Chain;
use super::changelog::Stored;
use super::clock::Clock;
use super::deliver::{Committed, Ownership};
use super::state::{KeyBudget, KeyedState};
use super::stats::Stats;
use super::swap::{AggregatorVersion, Order, Versions};
use crate::sink::{DeadLetter, Records};

mod messages;

pub use self::messages::{Chunk, Flush, Input};

/// Bytes of records a shard holds for the sinks (dead letters' values, and
/// the records of a pipeline without an aggregator) before it flushes early.
const HELD_BYTES: usize = 32 * 1024 * 1024;

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
    /// How far ahead of the wall clock stream time may go.
    pub max_clock_skew: Duration,
    /// The keys the pipeline's shards hold, and the most they may.
    pub keys: Arc<KeyBudget>,
    /// The aggregator: the shape of its rows and its state version
    /// (`None`: the pipeline has no aggregator).
    pub aggregator: Option<AggregatorVersion>,
    /// Where the shard reads the time.
    pub clock: Arc<dyn Clock>,
    /// Which partitions the instance's shards own, shared with delivery.
    pub ownership: Arc<Ownership>,
}

/// Where a shard hands its flushes: delivery's queue.
pub trait Handover {
    /// Whether a flush would be taken without waiting.
    fn has_room(&self) -> bool;
    /// Hands `flush` over, waiting for room; an error when delivery has stopped.
    fn hand_over(&self, flush: Flush) -> Result<(), ShardError>;
}

impl Handover for Sender<Flush> {
    fn has_room(&self) -> bool {
        self.capacity() > 0
    }

    fn hand_over(&self, flush: Flush) -> Result<(), ShardError> {
        // The delivery task stops only when it cannot write (it says why).
        self.blocking_send(flush)
            .map_err(|_| ShardError::DeliveryStopped)
    }
}

/// Runs a shard until its input closes, then flushes what it holds and
/// returns. Fails when delivery has stopped (it says why).
pub fn run(
    chain: Chain,
    input: Receiver<Input>,
    output: Sender<Flush>,
    settings: ShardSettings,
    stats: Arc<Stats>,
    committed: Arc<Committed>,
) -> Result<(), ShardError> {
    let mut shard = Shard::new(chain, output, settings, stats, committed);
    let mut open = true;
    while open {
        // Stale keys are refreshed a slice at a time, between batches, up
        // to a bound per flush.
        let wait = if shard.versions.refresh_due() {
            Duration::ZERO
        } else {
            shard.flush_at().saturating_duration_since(shard.now())
        };
        match input.recv_timeout(wait) {
            Ok(Input::Chunk(chunk)) => shard.process(chunk),
            Ok(Input::Swap(order)) => {
                shard.cut_over(order);
                continue;
            }
            Ok(Input::Restore { partition, entries }) => shard.restore(partition, entries),
            Ok(Input::Revoke {
                partitions,
                lost,
                abandoned,
                done,
            }) => {
                shard.revoke(&partitions, lost || abandoned.load(Ordering::Relaxed), done)?;
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        shard.refresh_some();
        shard.tick(!open)?;
    }
    Ok(())
}

/// One shard's working set, handing its flushes to `H`. The loop of
/// [`run`] feeds it from the source; the simulation tests feed it directly.
pub(crate) struct Shard<H> {
    chain: Chain,
    versions: Versions,
    state: KeyedState,
    /// The partitions the shard owns, with the epoch of that ownership.
    owned: HashMap<i32, u64>,
    /// Dead letters since the last flush.
    dead: Vec<DeadLetter>,
    /// The bytes of their values.
    dead_bytes: usize,
    /// Per partition, the offset after the last record processed.
    offsets: Vec<(i32, i64)>,
    next_flush: Instant,
    /// Once the input has been quiet for `max_wait` (the source has caught
    /// up: it would have handed over even a partial batch by then), what
    /// changed goes out without waiting for the tick, at most ten times per
    /// interval: under load rows are gathered for the whole interval (each
    /// key once), and when the input pauses or ends they are sent within
    /// about a tenth of it.
    last_flush: Instant,
    last_input: Instant,
    /// Whether a record dated ahead of the clock was logged already.
    warned_ahead: bool,
    evict_every: Option<Duration>,
    next_evict: Option<Instant>,
    output: H,
    settings: ShardSettings,
    stats: Arc<Stats>,
    committed: Arc<Committed>,
}

impl<H: Handover> Shard<H> {
    /// A shard owning no partition yet, running `chain`.
    pub(crate) fn new(
        chain: Chain,
        output: H,
        settings: ShardSettings,
        stats: Arc<Stats>,
        committed: Arc<Committed>,
    ) -> Self {
        let state_version = settings
            .aggregator
            .as_ref()
            .map_or(0, |aggregator| aggregator.state_version);
        let now = settings.clock.now();
        // Evicting scans every key, so it runs a few times per idle timeout, not every flush.
        let evict_every = settings.idle_timeout.map(|idle| {
            (idle / 4)
                .min(Duration::from_secs(60))
                .max(settings.flush_interval)
        });
        Self {
            chain,
            versions: Versions::new(settings.id, settings.aggregator.clone()),
            state: KeyedState::with_budget(state_version, Arc::clone(&settings.keys)),
            owned: HashMap::new(),
            dead: Vec::new(),
            dead_bytes: 0,
            offsets: Vec::new(),
            // Shards flush in turn, spread over the interval, so their writes
            // do not all reach the sinks at the same moment.
            next_flush: now
                + settings
                    .flush_interval
                    .mul_f64((settings.id + 1) as f64 / settings.shards as f64),
            last_flush: now,
            last_input: now,
            warned_ahead: false,
            evict_every,
            next_evict: evict_every.map(|every| now + every),
            output,
            settings,
            stats,
            committed,
        }
    }

    fn now(&self) -> Instant {
        self.settings.clock.now()
    }

    /// Stream time may go as far as the wall clock plus the skew allowed.
    fn trust_clock(&mut self) {
        let skew = i64::try_from(self.settings.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
        let until = self.settings.clock.wall_ms().saturating_add(skew);
        self.state.trust_until(until);
    }

    /// Stage `order.stage` runs the order's plugin from the next batch on.
    pub(crate) fn cut_over(&mut self, order: Arc<Order>) {
        let now = self.now();
        self.versions
            .cut_over(order, &mut self.chain, &mut self.state, now);
    }

    /// Tells the pipeline's counters what this shard's state holds now.
    fn publish_state(&self) {
        self.stats.set_state(
            self.settings.id,
            self.state.len() as u64,
            self.state.bytes() as u64,
        );
    }

    /// Gives a slice of the keys a swap left stale their row.
    pub(crate) fn refresh_some(&mut self) {
        self.versions.refresh_some(&mut self.chain, &mut self.state);
    }

    /// Whether keys still wait for the running version's row.
    #[cfg(test)]
    pub(crate) fn has_stale(&self) -> bool {
        self.versions.has_stale()
    }

    /// When the next flush is due: the tick, or earlier once caught up.
    pub(crate) fn flush_at(&self) -> Instant {
        early_flush_at(
            &self.offsets,
            self.output.has_room(),
            self.last_input,
            self.last_flush,
            &self.settings,
        )
        .map_or(self.next_flush, |at| at.min(self.next_flush))
    }

    /// Runs a chunk through the stages.
    pub(crate) fn process(&mut self, chunk: Chunk) {
        let chunk = keep_owned(chunk, &self.owned);
        let records = chunk.batch.records.len() as u64 + chunk.dead.len() as u64;
        self.stats.add_received(records);
        let source_dead = chunk.dead.len() as u64;
        let dead_before = self.dead.len();
        self.dead.extend(chunk.dead);
        let started = self.now();
        self.last_input = started;
        self.trust_clock();
        let tally = self.versions.process(
            &mut self.chain,
            &chunk.batch,
            &mut self.state,
            &mut self.dead,
            started,
        );
        self.dead_bytes += self.dead[dead_before..]
            .iter()
            .map(|letter| letter.value.len())
            .sum::<usize>();
        if tracing::enabled!(tracing::Level::TRACE) {
            // How long the oldest record waited to get here (Kafka's
            // timestamps are the producer's clock: a rough guide).
            let oldest = chunk.batch.records.iter().map(|r| r.timestamp).min();
            tracing::trace!(
                shard = self.settings.id,
                records = chunk.batch.records.len(),
                waited_ms = oldest.map(|t| chrono::Utc::now().timestamp_millis() - t),
                took = ?started.elapsed(),
                "Batch processed."
            );
        }
        if tally.ahead > 0 && !self.warned_ahead {
            self.warned_ahead = true;
            tracing::warn!(
                shard = self.settings.id,
                max_clock_skew = ?self.settings.max_clock_skew,
                "Records dated further ahead of this machine's clock than `max_clock_skew`: \
                 stream time counts them as dated now plus the skew (counted in \
                 weir_records_ahead_of_clock_total; logged once)."
            );
        }
        self.stats.add_tally(tally, source_dead);
        self.stats.add_batch(
            chunk.batch.records.len(),
            self.now().saturating_duration_since(started),
        );
        for (partition, offset) in chunk.offsets {
            match self.offsets.iter_mut().find(|(p, _)| *p == partition) {
                Some(slot) => slot.1 = slot.1.max(offset),
                None => self.offsets.push((partition, offset)),
            }
        }
    }

    /// `partition` is now the shard's, with `entries` as its state.
    pub(crate) fn restore(&mut self, partition: i32, entries: HashMap<Vec<u8>, Stored>) {
        self.versions.restoring(partition, &entries);
        self.trust_clock();
        self.state.restore(partition, entries);
        let epoch = self.settings.ownership.gain(partition);
        self.owned.insert(partition, epoch);
        self.publish_state();
    }

    /// `partitions` leave: what they hold is written first unless `gone`
    /// (another owner has them already: whatever was not committed, the
    /// new owner reads again); `done` is told once that is over.
    pub(crate) fn revoke(
        &mut self,
        partitions: &[i32],
        gone: bool,
        done: std::sync::mpsc::Sender<()>,
    ) -> Result<(), ShardError> {
        if gone {
            for &partition in partitions {
                self.settings.ownership.lose(partition);
            }
            done.send(()).ok();
        } else {
            // Flush now (every partition: simpler, and harmless), then forget them.
            self.flush(Some(done))?;
        }
        for &partition in partitions {
            self.state.remove(partition);
            self.owned.remove(&partition);
            self.offsets.retain(|(p, _)| *p != partition);
            self.dead.retain(|letter| letter.partition != partition);
            self.dead_bytes = self.dead.iter().map(|letter| letter.value.len()).sum();
        }
        self.versions.revoked(partitions);
        self.publish_state();
        Ok(())
    }

    /// Flushes when due (always when `closing`), and on the tick evicts
    /// idle keys and schedules the next tick.
    pub(crate) fn tick(&mut self, closing: bool) -> Result<(), ShardError> {
        let now = self.now();
        let tick = now >= self.next_flush || closing;
        let early = early_flush_at(
            &self.offsets,
            self.output.has_room(),
            self.last_input,
            self.last_flush,
            &self.settings,
        )
        .is_some_and(|at| now >= at);
        // Dead letters carry their records' values, and a pipeline without
        // an aggregator its records: many large ones go out before the
        // interval ends, so they never pile up in memory.
        let heavy = self.dead_bytes + self.chain.emitted_bytes() >= HELD_BYTES;
        if tick || early || heavy {
            self.flush(None)?;
            self.last_flush = self.now();
        }
        if !tick {
            return Ok(());
        }
        if let (Some(idle), Some(at)) = (self.settings.idle_timeout, self.next_evict)
            && self.now() >= at
        {
            let committed = &self.committed;
            let evicted = self
                .state
                .evict_idle(idle, |partition| committed.get(partition));
            if evicted > 0 {
                tracing::debug!(evicted, "Evicted idle keys.");
            }
            self.stats.add_evicted(evicted as u64);
            let now = self.now();
            self.next_evict = self.evict_every.map(|every| now + every);
        }
        self.publish_state();
        // On a steady cadence: the time a flush takes, or a batch that ran
        // past the tick, does not push every later flush back (a changed
        // key waits at most one interval). After a stall longer than an
        // interval, the cadence starts again from now.
        self.next_flush += self.settings.flush_interval;
        let now = self.now();
        if self.next_flush <= now {
            self.next_flush = now + self.settings.flush_interval;
        }
        Ok(())
    }

    /// Hands what changed to delivery; an error when delivery has stopped.
    fn flush(&mut self, done: Option<std::sync::mpsc::Sender<()>>) -> Result<(), ShardError> {
        let changes = self.state.take_changes();
        let flush = Flush {
            records: Records {
                rows: self.versions.group(changes.rows),
                changelog: changes.changelog,
                dead: {
                    self.dead_bytes = 0;
                    std::mem::take(&mut self.dead)
                },
                emitted: self.chain.take_emitted(),
            },
            offsets: std::mem::take(&mut self.offsets),
            epochs: self.owned.iter().map(|(&p, &epoch)| (p, epoch)).collect(),
            made: Instant::now(),
            done,
        };
        if flush.records.is_empty() && flush.offsets.is_empty() {
            if let Some(done) = flush.done {
                done.send(()).ok();
            }
            return Ok(());
        }
        self.output.hand_over(flush)
    }
}

/// When a shard that has caught up flushes before its tick: once its input
/// has been quiet for `max_wait` and a tenth of the interval has passed since
/// its last flush; `None` when nothing waits to be flushed or delivery has
/// no room (an early flush never waits for delivery).
fn early_flush_at(
    offsets: &[(i32, i64)],
    has_room: bool,
    last_input: Instant,
    last_flush: Instant,
    settings: &ShardSettings,
) -> Option<Instant> {
    (!offsets.is_empty() && has_room)
        .then(|| (last_input + settings.max_wait).max(last_flush + settings.flush_interval / 10))
}

/// `chunk` without the records of partitions the shard does not own (read
/// before a revocation reached the source; their new owner reads them again).
fn keep_owned(chunk: Chunk, owned: &HashMap<i32, u64>) -> Chunk {
    chunk.retain(|partition| owned.contains_key(&partition))
}
