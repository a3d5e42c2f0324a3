//! A shard: one thread owning some of the input partitions (partition `p`
//! goes to shard `p % shards`), its own plugin instances and those
//! partitions' keyed state. It runs chunks through the stages as they come
//! and, every flush interval, hands the changed rows, the dead letters and
//! the offsets they account for to the delivery task.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Sender;

use super::chain::Chain;
use super::dead_letter::DeadLetter;
use super::state::{KeyedState, Row};
use super::stats::Stats;
use crate::plugin::Batch;

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
    /// Rows changed since the last flush, each key once.
    pub rows: Vec<Row>,
    /// Dead letters since the last flush.
    pub dead: Vec<DeadLetter>,
    /// Per partition, the offset to commit (the next one to read).
    pub offsets: Vec<(i32, i64)>,
    /// When the shard made it (delivery reports how long it waited).
    pub made: Instant,
}

/// How a shard runs.
pub struct ShardSettings {
    /// The shard's number.
    pub id: usize,
    /// How many shards the pipeline has.
    pub shards: usize,
    /// Time between flushes.
    pub flush_interval: Duration,
    /// Keys idle this long (in stream time) are evicted.
    pub idle_timeout: Option<Duration>,
}

/// Runs a shard until its input closes, then flushes what it holds and returns.
pub fn run(
    mut chain: Chain,
    input: Receiver<Chunk>,
    output: Sender<Flush>,
    settings: ShardSettings,
    stats: Arc<Stats>,
) {
    let mut state = KeyedState::default();
    let mut dead: Vec<DeadLetter> = Vec::new();
    let mut offsets: Vec<(i32, i64)> = Vec::new();
    // Shards flush in turn, spread over the interval, so their writes do not
    // all reach the sinks at the same moment.
    let phase = settings
        .flush_interval
        .mul_f64((settings.id + 1) as f64 / settings.shards as f64);
    let mut next_flush = Instant::now() + phase;
    // Evicting scans every key, so it runs a few times per idle timeout, not every flush.
    let evict_every = settings.idle_timeout.map(|idle| {
        (idle / 4)
            .min(Duration::from_secs(60))
            .max(settings.flush_interval)
    });
    let mut next_evict = evict_every.map(|every| Instant::now() + every);
    let mut open = true;
    while open {
        match input.recv_timeout(next_flush.saturating_duration_since(Instant::now())) {
            Ok(chunk) => {
                let records = chunk.batch.records.len() as u64 + chunk.dead.len() as u64;
                stats.add_received(records);
                let source_dead = chunk.dead.len() as u64;
                dead.extend(chunk.dead);
                let started = Instant::now();
                let tally = chain.process(&chunk.batch, &mut state, &mut dead);
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
                stats.add_tally(tally, source_dead);
                for (partition, offset) in chunk.offsets {
                    match offsets.iter_mut().find(|(p, _)| *p == partition) {
                        Some(slot) => slot.1 = slot.1.max(offset),
                        None => offsets.push((partition, offset)),
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        if Instant::now() >= next_flush || !open {
            let flush = Flush {
                rows: state.take_changed(),
                dead: std::mem::take(&mut dead),
                offsets: std::mem::take(&mut offsets),
                made: Instant::now(),
            };
            if !(flush.rows.is_empty() && flush.dead.is_empty() && flush.offsets.is_empty())
                && output.blocking_send(flush).is_err()
            {
                // The delivery task stopped (it says why); nothing more can be written.
                return;
            }
            if let (Some(idle), Some(at)) = (settings.idle_timeout, next_evict)
                && Instant::now() >= at
            {
                let evicted = state.evict_idle(idle);
                if evicted > 0 {
                    tracing::debug!(evicted, "Evicted idle keys.");
                }
                stats.add_evicted(evicted as u64);
                next_evict = evict_every.map(|every| Instant::now() + every);
            }
            stats.set_keys(settings.id, state.len() as u64);
            next_flush = Instant::now() + settings.flush_interval;
        }
    }
}
