//! What a swap tells the shards, and what they answer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::plugin::{Plugin, StageContext};
use crate::sink::Shape;

/// A version of an aggregator: what its rows look like and its state version.
#[derive(Debug, Clone)]
pub struct AggregatorVersion {
    /// The shape of its rows.
    pub output: Arc<Shape>,
    /// The version of the state it writes.
    pub state_version: u32,
}

/// An order to every shard: stage `stage` now runs `plugin`.
#[derive(Debug)]
pub struct Order {
    /// The swap's number (reports name it).
    pub id: u64,
    /// The stage's index in the pipeline.
    pub stage: usize,
    /// The plugin to run.
    pub plugin: Arc<Plugin>,
    /// The stage's configuration, tables and limits.
    pub context: Arc<StageContext>,
    /// Set when the stage is the aggregator.
    pub aggregator: Option<AggregatorVersion>,
    /// When the swap was asked for.
    pub requested: Instant,
    /// How long the new version is on probation: a trap in that time sends
    /// the shard back to the version it replaced (`None`: no probation).
    pub probation: Option<Duration>,
    /// Where the shards report.
    pub reports: Arc<Reports>,
}

/// What a shard says about an order.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// The shard runs the new version from its next batch on.
    CutOver {
        /// The order.
        id: u64,
        /// The shard.
        shard: usize,
    },
    /// The shard could not instantiate the new version; it keeps the old one.
    Failed {
        /// The order.
        id: u64,
        /// The shard.
        shard: usize,
        /// Why.
        reason: String,
    },
    /// The new version processed its first batch on the shard.
    FirstBatch {
        /// The order.
        id: u64,
        /// The shard.
        shard: usize,
        /// From the request to the end of that batch.
        latency: Duration,
        /// How long the shard processed nothing because of the swap
        /// (flush hand-over and instantiation).
        stall: Duration,
    },
    /// The new version trapped on probation: the shard went back to the
    /// version it replaced and processed the batch with it.
    ProbationFailed {
        /// The order.
        id: u64,
        /// The shard.
        shard: usize,
        /// The trap.
        reason: String,
    },
}

impl Report {
    /// The order reported on.
    pub fn id(&self) -> u64 {
        match self {
            Self::CutOver { id, .. }
            | Self::Failed { id, .. }
            | Self::FirstBatch { id, .. }
            | Self::ProbationFailed { id, .. } => *id,
        }
    }
}

/// The shards' reports, shared with the swapper, which waits on them.
#[derive(Debug, Default)]
pub struct Reports {
    list: Mutex<Vec<Report>>,
    changed: Notify,
}

impl Reports {
    /// Adds a report (from a shard thread).
    pub fn add(&self, report: Report) {
        self.list.lock().expect("not poisoned").push(report);
        self.changed.notify_waiters();
    }

    /// The reports on order `id` so far.
    pub fn of(&self, id: u64) -> Vec<Report> {
        self.list
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|report| report.id() == id)
            .cloned()
            .collect()
    }

    /// Takes the probation failures reported so far.
    pub fn take_probation_failures(&self) -> Vec<Report> {
        let mut list = self.list.lock().expect("not poisoned");
        let (failures, rest) = std::mem::take(&mut *list)
            .into_iter()
            .partition(|report| matches!(report, Report::ProbationFailed { .. }));
        *list = rest;
        failures
    }

    /// Forgets the reports on order `id`.
    pub fn forget(&self, id: u64) {
        self.list
            .lock()
            .expect("not poisoned")
            .retain(|report| report.id() != id);
    }

    /// Waits until a report arrives or `timeout` passes.
    pub async fn changed(&self, timeout: Duration) {
        let notified = self.changed.notified();
        drop(tokio::time::timeout(timeout, notified).await);
    }
}
