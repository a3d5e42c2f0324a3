//! What a swap tells the shards, and what they answer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::engine::chain::Stage;
use crate::plugin::{LoadError, Plugin, StageContext};
use crate::sink::Shape;

/// A version of an aggregator: what its rows look like and its state version.
#[derive(Debug, Clone)]
pub struct AggregatorVersion {
    /// The shape of its rows.
    pub output: Arc<Shape>,
    /// The version of the state it writes.
    pub state_version: u32,
}

/// An order did not reach every shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The pipeline is stopping: its shards take no more orders.
    #[error("the pipeline is stopping")]
    Stopping,
    /// A shard's queue stayed full.
    #[error(
        "shard {shard} did not take the order within {wait:?} (the pipeline is stopping, or its sinks are stalled)"
    )]
    Full {
        /// The shard.
        shard: usize,
        /// How long it was given.
        wait: std::time::Duration,
    },
    /// The task sending it failed (a bug in weir).
    #[error("sending the order failed: {0}")]
    Task(String),
}

/// Makes instances of a stage's new version, one per shard.
#[derive(Clone)]
pub struct Instances(Arc<dyn Fn() -> Result<Stage, LoadError> + Send + Sync>);

impl Instances {
    /// Instances of `plugin` for the stage `context`.
    pub fn of(plugin: &Arc<Plugin>, context: &Arc<StageContext>) -> Self {
        let (plugin, context) = (Arc::clone(plugin), Arc::clone(context));
        Self(Arc::new(move || Stage::new(&plugin, Arc::clone(&context))))
    }

    /// Instances made by `make` (the simulation tests' native stages).
    #[cfg(test)]
    pub(crate) fn made_by(
        make: impl Fn() -> Result<Stage, LoadError> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(make))
    }

    /// A new instance.
    pub fn make(&self) -> Result<Stage, LoadError> {
        (self.0)()
    }
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instances")
    }
}

/// An order to every shard: stage `stage` now runs `plugin`.
#[derive(Debug)]
pub struct Order {
    /// The swap's number (reports name it).
    pub id: u64,
    /// The stage's index in the pipeline.
    pub stage: usize,
    /// Makes each shard's instance of the version to run.
    pub instances: Instances,
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
