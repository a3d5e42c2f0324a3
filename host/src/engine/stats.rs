//! A running pipeline's counters: what its status line says and what the
//! metrics export.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::chain::Tally;

/// Counters of one pipeline, shared by its threads.
#[derive(Debug)]
pub struct Stats {
    metrics: PipelineMetrics,
    received: AtomicU64,
    dropped: AtomicU64,
    dead: AtomicU64,
    aggregated: AtomicU64,
    replayed: AtomicU64,
    rows_written: AtomicU64,
    evicted: AtomicU64,
    keys: Vec<AtomicU64>,
    state_bytes: Vec<AtomicU64>,
    /// The sinks' failure being retried now, if any.
    failing: std::sync::Mutex<Option<Failing>>,
}

/// A sink failure delivery is retrying (the pipeline waits meanwhile).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failing {
    /// The failure, as the log says it.
    pub error: String,
    /// When the first attempt failed.
    pub since: chrono::DateTime<chrono::Utc>,
    /// Attempts that failed so far.
    pub attempts: u32,
}

/// A copy of the counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Records read from the source.
    pub received: u64,
    /// Records dropped by a filter or a transform.
    pub dropped: u64,
    /// Records sent to the dead-letter topic.
    pub dead: u64,
    /// Records folded into state.
    pub aggregated: u64,
    /// Records skipped because their key's state already held them (read
    /// again after a crash or a rebalance).
    pub replayed: u64,
    /// Rows the sinks confirmed.
    pub rows_written: u64,
    /// Keys evicted for being idle.
    pub evicted: u64,
    /// Keys held now.
    pub keys: u64,
    /// Bytes of the keys held and their state.
    pub state_bytes: u64,
}

impl Stats {
    /// Counters for `pipeline` run by `shards` shards.
    pub fn new(pipeline: &str, shards: usize) -> Self {
        Self {
            metrics: PipelineMetrics::new(pipeline),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            aggregated: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            keys: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            state_bytes: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            failing: std::sync::Mutex::new(None),
        }
    }

    /// A write of the sinks failed (`attempts` times in a row, with `error`
    /// the last time), or wrote again (`None`).
    pub(super) fn set_failing(&self, failed: Option<(u32, String)>) {
        let mut failing = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *failing = failed.map(|(attempts, error)| Failing {
            error,
            since: failing
                .as_ref()
                .map_or_else(chrono::Utc::now, |before| before.since),
            attempts,
        });
    }

    /// The sinks' failure being retried now.
    pub fn failing(&self) -> Option<Failing> {
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn add_received(&self, records: u64) {
        self.received.fetch_add(records, Relaxed);
        self.metrics.received.increment(records);
    }

    /// A batch of `records` went through the chain in `took`.
    pub(super) fn add_batch(&self, records: usize, took: Duration) {
        self.metrics.batch_records.record(records as f64);
        self.metrics.batch_seconds.record(took);
    }

    pub(super) fn add_tally(&self, tally: Tally, source_dead: u64) {
        self.dropped.fetch_add(tally.dropped, Relaxed);
        self.dead.fetch_add(tally.dead + source_dead, Relaxed);
        self.aggregated.fetch_add(tally.aggregated, Relaxed);
        if tally.replayed > 0 {
            self.replayed.fetch_add(tally.replayed, Relaxed);
            self.metrics.replayed.increment(tally.replayed);
        }
        if tally.ahead > 0 {
            self.metrics.ahead.increment(tally.ahead);
        }
    }

    pub(super) fn add_rows_written(&self, rows: u64) {
        self.rows_written.fetch_add(rows, Relaxed);
    }

    pub(super) fn add_evicted(&self, keys: u64) {
        self.evicted.fetch_add(keys, Relaxed);
        self.metrics.evicted.increment(keys);
    }

    /// What shard `shard` holds: keys, and bytes of keys and state.
    pub(super) fn set_state(&self, shard: usize, keys: u64, bytes: u64) {
        self.keys[shard].store(keys, Relaxed);
        self.state_bytes[shard].store(bytes, Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.received.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            dead: self.dead.load(Relaxed),
            aggregated: self.aggregated.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            rows_written: self.rows_written.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
            keys: self.keys.iter().map(|k| k.load(Relaxed)).sum(),
            state_bytes: self.state_bytes.iter().map(|b| b.load(Relaxed)).sum(),
        }
    }
}

/// The pipeline-wide metric handles (looked up once: recording is then a
/// few atomic operations).
#[derive(Debug)]
struct PipelineMetrics {
    received: metrics::Counter,
    replayed: metrics::Counter,
    ahead: metrics::Counter,
    evicted: metrics::Counter,
    batch_records: metrics::Histogram,
    batch_seconds: metrics::Histogram,
}

impl PipelineMetrics {
    fn new(pipeline: &str) -> Self {
        let label = || [("pipeline", pipeline.to_owned())];
        Self {
            received: metrics::counter!("weir_source_records_total", &label()),
            replayed: metrics::counter!("weir_records_replayed_total", &label()),
            ahead: metrics::counter!("weir_records_ahead_of_clock_total", &label()),
            evicted: metrics::counter!("weir_state_evicted_keys_total", &label()),
            batch_records: metrics::histogram!("weir_batch_records", &label()),
            batch_seconds: metrics::histogram!("weir_batch_duration_seconds", &label()),
        }
    }
}
