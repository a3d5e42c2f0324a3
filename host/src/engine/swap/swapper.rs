//! The swapper of one running pipeline: checks a new plugin version, cuts
//! every shard over to it at a batch boundary, keeps what it replaced for a
//! rollback, and rolls back by itself when the new version traps on
//! probation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::SwapError;
use super::order::{AggregatorVersion, Instances, Order, Report, Reports, RouteError};
use super::probe::check_aggregator;
use super::stages::{StageInfo, StageSlot, SwapRecord, Version};
use crate::plugin::{Plugin, Runtime, StageContext};
use crate::sink::Sinks;

/// How long a new version is on probation.
pub const PROBATION: Duration = Duration::from_secs(30);

/// How long a swap waits for every shard to cut over.
const CUT_OVER_WAIT: Duration = Duration::from_secs(30);

/// How long a swap waits for the new version's first batch (none comes
/// while the input is idle).
const FIRST_BATCH_WAIT: Duration = Duration::from_secs(5);

/// What a swapper needs of its pipeline.
pub struct SwapperParts {
    /// The pipeline's name.
    pub pipeline: String,
    /// Compiles new components.
    pub runtime: Arc<Runtime>,
    /// Per stage: name, context and the plugin loaded at start.
    pub stages: Vec<(String, Arc<StageContext>, Arc<Plugin>)>,
    /// Where the stage plugins came from.
    pub origins: Vec<String>,
    /// The aggregator's version at start (`None`: the pipeline has none).
    pub aggregator: Option<AggregatorVersion>,
    /// The sinks (to register schemas and add columns).
    pub sinks: Arc<Sinks>,
    /// Reaches the shards.
    pub router: Router,
    /// How many shards there are.
    pub shards: usize,
}

/// Sends an order to every shard (blocking until each has it queued, for
/// at most the given time).
pub type Router = Arc<dyn Fn(&Arc<Order>, Duration) -> Result<usize, RouteError> + Send + Sync>;

/// How a cut-over went: request to the last shard's cut-over, and to the
/// slowest shard's first batch with the new version (none when not every
/// shard had one within [`FIRST_BATCH_WAIT`]) and its longest stall.
struct Timing {
    cut_over: Duration,
    first_batch: Option<Duration>,
    stall: Option<Duration>,
}

/// Versions a stage keeps to roll back to (the oldest is dropped past it).
const KEPT_VERSIONS: usize = 8;

/// Swaps the plugins of one running pipeline, one swap at a time.
pub struct Swapper {
    pipeline: String,
    runtime: Arc<Runtime>,
    sinks: Arc<Sinks>,
    router: Router,
    shards: usize,
    /// Held for a whole swap, network calls included: one swap at a time.
    stages: tokio::sync::Mutex<Vec<StageSlot>>,
    /// What the stages run, as of the last change: readers (the status
    /// page) never wait for a swap in progress.
    published: std::sync::Mutex<Vec<StageInfo>>,
    history: std::sync::Mutex<Vec<SwapRecord>>,
    reports: Arc<Reports>,
    next_id: AtomicU64,
}

impl Swapper {
    /// A swapper over `parts`; [`Self::watch`] must run beside it for
    /// automatic rollbacks.
    pub fn new(parts: SwapperParts) -> Self {
        // The first hop of a re-keyed pipeline may have no stage.
        let last = parts.stages.len().saturating_sub(1);
        // Every stage's swap counters start at zero (see `Sinks::start_counters`).
        for (stage, _, _) in &parts.stages {
            for action in ["swap", "rollback", "automatic-rollback"] {
                metrics::counter!(
                    "weir_plugin_swaps_total",
                    "pipeline" => parts.pipeline.clone(),
                    "stage" => stage.clone(),
                    "action" => action
                )
                .absolute(0);
            }
        }
        let stages = parts
            .stages
            .into_iter()
            .zip(parts.origins)
            .enumerate()
            .map(|(index, ((name, context, plugin), origin))| StageSlot {
                name,
                kind: plugin.kind,
                context,
                current: Version {
                    plugin,
                    origin,
                    loaded_at: Utc::now(),
                    aggregator: (index == last).then(|| parts.aggregator.clone()).flatten(),
                },
                previous: Vec::new(),
                probation: None,
            })
            .collect::<Vec<_>>();
        let published = std::sync::Mutex::new(describe(&stages));
        Self {
            pipeline: parts.pipeline,
            runtime: parts.runtime,
            sinks: parts.sinks,
            router: parts.router,
            shards: parts.shards,
            stages: tokio::sync::Mutex::new(stages),
            published,
            history: std::sync::Mutex::default(),
            reports: Arc::new(Reports::default()),
            next_id: AtomicU64::new(1),
        }
    }

    /// The pipeline's name.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// Each stage and its plugin versions (as of the last swap that ended:
    /// a swap in progress does not hold this up).
    pub async fn stages(&self) -> Vec<StageInfo> {
        self.published.lock().expect("not poisoned").clone()
    }

    /// Publishes what `stages` run now, for [`Self::stages`].
    fn publish(&self, stages: &[StageSlot]) {
        *self.published.lock().expect("not poisoned") = describe(stages);
    }

    /// Every swap and rollback so far, oldest first.
    pub fn history(&self) -> Vec<SwapRecord> {
        self.history.lock().expect("not poisoned").clone()
    }

    /// Checks `component` and, if it can replace stage `stage`'s plugin,
    /// cuts every shard over to it (on probation).
    pub async fn swap(
        &self,
        stage: &str,
        component: Vec<u8>,
        origin: String,
    ) -> Result<SwapRecord, SwapError> {
        let mut stages = self.stages.lock().await;
        let (index, slot) = self.slot(&mut stages, stage)?;
        let runtime = Arc::clone(&self.runtime);
        let name = slot.current.plugin.name.clone();
        let plugin = tokio::task::spawn_blocking(move || runtime.load(&name, &component))
            .await
            .map_err(|error| SwapError::Unavailable(error.to_string()))?
            .map_err(|error| SwapError::Refused(error.to_string()))?;
        if plugin.kind != slot.kind {
            return Err(SwapError::Refused(format!(
                "stage `{}` runs a plugin of world `{}`; the new component's world is `{}`",
                slot.name,
                slot.kind.world(),
                plugin.kind.world()
            )));
        }
        let aggregator = match &slot.current.aggregator {
            Some(current) => Some(check_aggregator(&self.sinks, slot, current, &plugin).await?),
            None => None,
        };
        let version = Version {
            plugin,
            origin,
            loaded_at: Utc::now(),
            aggregator,
        };
        let swapped = self.cut_over(index, slot, version, "swap", None).await;
        self.publish(&stages);
        swapped
    }

    /// Puts stage `stage` back on the version before its current one.
    pub async fn rollback(&self, stage: &str) -> Result<SwapRecord, SwapError> {
        let mut stages = self.stages.lock().await;
        let (index, slot) = self.slot(&mut stages, stage)?;
        let rolled_back = self.roll_back(index, slot, "rollback", None).await;
        self.publish(&stages);
        rolled_back
    }

    /// Rolls back, by themselves, the versions that trapped on probation;
    /// runs until the pipeline stops.
    pub async fn watch(self: Arc<Self>) {
        loop {
            self.reports.changed(Duration::from_millis(200)).await;
            for failure in self.reports.take_probation_failures() {
                let Report::ProbationFailed { id, shard, reason } = failure else {
                    continue;
                };
                let mut stages = self.stages.lock().await;
                let Some(index) = stages.iter().position(|slot| slot.probation == Some(id)) else {
                    continue; // already rolled back (another shard reported it too)
                };
                let slot = &mut stages[index];
                tracing::warn!(
                    pipeline = %self.pipeline,
                    stage = %slot.name,
                    shard,
                    %reason,
                    "The new plugin version trapped on probation; rolling back."
                );
                if let Err(error) = self
                    .roll_back(index, slot, "automatic-rollback", Some(reason))
                    .await
                {
                    tracing::error!(pipeline = %self.pipeline, %error, "The automatic rollback failed.");
                }
                self.publish(&stages);
            }
        }
    }

    fn slot<'a>(
        &self,
        stages: &'a mut [StageSlot],
        stage: &str,
    ) -> Result<(usize, &'a mut StageSlot), SwapError> {
        let names = stages
            .iter()
            .map(|slot| format!("`{}`", slot.name))
            .collect::<Vec<_>>()
            .join(", ");
        stages
            .iter_mut()
            .enumerate()
            .find(|(_, slot)| slot.name == stage)
            .ok_or_else(|| SwapError::NoStage {
                pipeline: self.pipeline.clone(),
                stage: stage.to_owned(),
                stages: names,
            })
    }

    async fn roll_back(
        &self,
        index: usize,
        slot: &mut StageSlot,
        action: &'static str,
        reason: Option<String>,
    ) -> Result<SwapRecord, SwapError> {
        let Some(mut version) = slot.previous.last().cloned() else {
            return Err(SwapError::NoPrevious(slot.name.clone()));
        };
        version.loaded_at = Utc::now();
        if let Some(aggregator) = &version.aggregator {
            self.sinks
                .prepare(&aggregator.output)
                .await
                .map_err(|error| SwapError::Unavailable(error.to_string()))?;
        }
        let record = self.cut_over(index, slot, version, action, reason).await?;
        // The cut-over stacked the version left; a rollback forgets it, and
        // the entry it went back to is the current one now.
        slot.previous.pop();
        slot.previous.pop();
        Ok(record)
    }

    /// Prepares the sinks again for `aggregator`'s rows, for the sinks as
    /// they are now: a later version may have added columns to the table
    /// that this version's rows must clear.
    async fn restate(&self, aggregator: &AggregatorVersion) {
        if let Err(error) = self.sinks.prepare(&aggregator.output).await {
            tracing::warn!(
                pipeline = %self.pipeline,
                %error,
                "Could not prepare the sinks again for the running version's rows."
            );
        }
    }

    /// Sends the order to every shard and waits for their cut-over (and the
    /// first batch, for a few seconds).
    async fn cut_over(
        &self,
        index: usize,
        slot: &mut StageSlot,
        version: Version,
        action: &'static str,
        reason: Option<String>,
    ) -> Result<SwapRecord, SwapError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let requested = Instant::now();
        let at = Utc::now();
        let order = Arc::new(Order {
            id,
            stage: index,
            instances: Instances::of(&version.plugin, &slot.context),
            aggregator: version.aggregator.clone(),
            requested,
            probation: (action == "swap").then_some(PROBATION),
            reports: Arc::clone(&self.reports),
        });
        if let Err(error) = self.send(&order).await {
            // Some shards may have it: put them back on the running version.
            self.compensate(index, slot).await;
            return Err(SwapError::Incomplete(error.to_string()));
        }
        let timing = match self.await_shards(id, requested).await {
            Ok(timing) => timing,
            Err(error) => {
                // Every shard goes back to the running version (an order
                // still queued on a slow shard is followed by it there).
                self.reports.forget(id);
                self.compensate(index, slot).await;
                return Err(error);
            }
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let record = SwapRecord {
            id,
            at,
            stage: slot.name.clone(),
            action,
            from: slot.current.plugin.sha256.clone(),
            to: version.plugin.sha256.clone(),
            cut_over_ms: ms(timing.cut_over),
            first_batch_ms: timing.first_batch.map(ms),
            stall_ms: timing.stall.map(ms),
            reason,
        };
        self.installed(slot, version, &record);
        // Probation failures stay for the watcher; the rest is done with.
        if action != "swap" {
            self.reports.forget(id);
        }
        Ok(record)
    }

    /// Waits until every shard has cut over to order `id` and has processed
    /// its first batch (or a few seconds have passed without one).
    async fn await_shards(&self, id: u64, requested: Instant) -> Result<Timing, SwapError> {
        let count = self.shards;
        let mut cut_over = None;
        loop {
            let reports = self.reports.of(id);
            if let Some(Report::Failed { shard, reason, .. }) =
                reports.iter().find(|r| matches!(r, Report::Failed { .. }))
            {
                return Err(SwapError::Incomplete(format!(
                    "shard {shard} could not start the new version ({reason}); every shard went back to the running version"
                )));
            }
            let done = reports
                .iter()
                .filter(|r| matches!(r, Report::CutOver { .. }))
                .count();
            if cut_over.is_none() && done >= count {
                cut_over = Some(requested.elapsed());
            }
            let firsts: Vec<(Duration, Duration)> = reports
                .iter()
                .filter_map(|r| match r {
                    Report::FirstBatch { latency, stall, .. } => Some((*latency, *stall)),
                    _ => None,
                })
                .collect();
            let waited = requested.elapsed();
            if let Some(cut_over) = cut_over
                && (firsts.len() >= count || waited > FIRST_BATCH_WAIT)
            {
                let slowest = |of: fn(&(Duration, Duration)) -> Duration| {
                    firsts.iter().map(of).max().unwrap_or_default()
                };
                return Ok(Timing {
                    cut_over,
                    first_batch: (firsts.len() >= count).then(|| slowest(|f| f.0)),
                    stall: (!firsts.is_empty()).then(|| slowest(|f| f.1)),
                });
            }
            if cut_over.is_none() && waited > CUT_OVER_WAIT {
                return Err(SwapError::Incomplete(format!(
                    "{done} of {count} shards cut over within {CUT_OVER_WAIT:?}; every shard goes back to the running version"
                )));
            }
            self.reports.changed(Duration::from_millis(20)).await;
        }
    }

    /// Makes `version` the stage's running one after every shard took it,
    /// keeping the one it replaced for a rollback, and tells of it (history,
    /// log, metric).
    fn installed(&self, slot: &mut StageSlot, version: Version, record: &SwapRecord) {
        let replaced = std::mem::replace(&mut slot.current, version);
        slot.previous.push(replaced);
        // Each version holds its compiled code: only the latest few are
        // kept for rollbacks.
        if slot.previous.len() > KEPT_VERSIONS {
            slot.previous.remove(0);
        }
        slot.probation = (record.action == "swap").then_some(record.id);
        self.history
            .lock()
            .expect("not poisoned")
            .push(record.clone());
        tracing::info!(
            pipeline = %self.pipeline,
            stage = %record.stage,
            action = record.action,
            from = %record.from,
            to = %record.to,
            cut_over_ms = record.cut_over_ms,
            first_batch_ms = ?record.first_batch_ms,
            "Plugin swapped."
        );
        metrics::counter!(
            "weir_plugin_swaps_total",
            "pipeline" => self.pipeline.clone(),
            "stage" => record.stage.clone(),
            "action" => record.action
        )
        .increment(1);
    }

    /// Queues `order` on every shard.
    async fn send(&self, order: &Arc<Order>) -> Result<usize, RouteError> {
        let router = Arc::clone(&self.router);
        let order = Arc::clone(order);
        tokio::task::spawn_blocking(move || router(&order, CUT_OVER_WAIT))
            .await
            .map_err(|error| RouteError::Task(error.to_string()))?
    }

    /// Puts every shard back on the stage's running version (after a swap
    /// that some shards may have taken and others not).
    async fn compensate(&self, index: usize, slot: &StageSlot) {
        // The new version may have added columns before the cut-over failed.
        if let Some(aggregator) = &slot.current.aggregator {
            self.restate(aggregator).await;
        }
        let order = Arc::new(Order {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            stage: index,
            instances: Instances::of(&slot.current.plugin, &slot.context),
            aggregator: slot.current.aggregator.clone(),
            requested: Instant::now(),
            probation: None,
            reports: Arc::new(Reports::default()),
        });
        if let Err(error) = self.send(&order).await {
            tracing::error!(
                pipeline = %self.pipeline,
                stage = %slot.name,
                %error,
                "Could not put every shard back on the running version."
            );
        }
    }
}

/// What each of `stages` runs, and ran before.
fn describe(stages: &[StageSlot]) -> Vec<StageInfo> {
    stages
        .iter()
        .map(|slot| StageInfo {
            name: slot.name.clone(),
            plugin: slot.current.describe(),
            previous: slot.previous.iter().rev().map(Version::describe).collect(),
        })
        .collect()
}
