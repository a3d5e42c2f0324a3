//! A shard's side of hot swap: which versions of the aggregator its state
//! and pending rows belong to, the cut-over to a new version between two
//! batches, probation, and the rollback when the new version fails on it.
//!
//! The shard loop asks [`Versions`] to run each batch ([`Versions::process`])
//! and tells it what happens to its partitions; everything a swap changes
//! is here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{AggregatorVersion, Order, Report};
use crate::engine::chain::{Chain, Stage, Tally};
use crate::engine::changelog::Stored;
use crate::engine::state::KeyedState;
use crate::plugin::Batch;
use crate::sink::{DeadLetter, Row, Rows, Shape};

/// Stale keys refreshed between two batches after a swap.
const REFRESH_SLICE: usize = 1024;

/// Stale keys refreshed per flush at most. Their rows and changelog records
/// wait in the shard for the next flush, so this bounds how many a swap
/// adds there (some 16 000), however many keys the shard holds; unbounded,
/// every key was refreshed within about a second and all its rows waited
/// at once.
const REFRESH_PER_FLUSH: usize = 16 * 1024;

/// A swapped stage on probation: what it replaced, and until when.
struct Probation {
    order: Arc<Order>,
    previous: Stage,
    previous_aggregator: Option<AggregatorVersion>,
    until: Instant,
}

/// The versions one shard runs, and those its state and rows still hold.
pub struct Versions {
    shard: usize,
    /// The running aggregator (`None`: the pipeline has none).
    aggregator: Option<AggregatorVersion>,
    /// The shape of the rows of each aggregator generation still in state.
    outputs: Outputs,
    /// After an aggregator swap or a restore of another version's state:
    /// keys whose row the running version has yet to make.
    stale: Vec<(i32, Vec<u8>)>,
    /// Stale keys refreshed since the last flush.
    refreshed: usize,
    /// Swaps whose first batch is still to come, with how long the shard
    /// stalled for each.
    first_batch: Vec<(Arc<Order>, Duration)>,
    probation: Option<Probation>,
}

impl Versions {
    /// Shard `shard`, running `aggregator` (if the pipeline has one).
    pub fn new(shard: usize, aggregator: Option<AggregatorVersion>) -> Self {
        Self {
            shard,
            outputs: Outputs::new(aggregator.as_ref().map(|a| Arc::clone(&a.output))),
            aggregator,
            stale: Vec::new(),
            refreshed: 0,
            first_batch: Vec::new(),
            probation: None,
        }
    }

    /// Whether keys wait for the running version's row.
    pub fn has_stale(&self) -> bool {
        !self.stale.is_empty()
    }

    /// Whether stale keys may be refreshed before the next flush.
    pub fn refresh_due(&self) -> bool {
        self.has_stale() && self.refreshed < REFRESH_PER_FLUSH
    }

    /// Stage `order.stage` runs the order's version from the next batch on (on
    /// probation, if the order says so). A plugin that cannot be
    /// instantiated is reported, and the old version kept.
    pub fn cut_over(
        &mut self,
        order: Arc<Order>,
        chain: &mut Chain,
        state: &mut KeyedState,
        now: Instant,
    ) {
        let stopped = now;
        let stage = match order.instances.make() {
            Ok(stage) => stage,
            Err(error) => {
                order.reports.add(Report::Failed {
                    id: order.id,
                    shard: self.shard,
                    reason: format!("{error:#}"),
                });
                return;
            }
        };
        let mut previous = chain.replace(
            order.stage,
            stage,
            order
                .aggregator
                .as_ref()
                .map(|a| (Arc::clone(&a.output.schema), a.state_version)),
        );
        let mut previous_aggregator = order
            .aggregator
            .as_ref()
            .map(|new| self.switch_aggregator(new.clone(), state));
        // One probation at a time: a newer swap ends the one before. A
        // version replaced while still on probation never proved itself:
        // should the new one fail, this shard goes back past it, to the
        // version it replaced.
        if let Some(ended) = self.probation.take() {
            if ended.order.stage == order.stage {
                previous = ended.previous;
                previous_aggregator = ended.previous_aggregator;
            } else {
                chain.set_fail_fast(ended.order.stage, false);
            }
        }
        chain.set_fail_fast(order.stage, order.probation.is_some());
        self.probation = order.probation.map(|window| Probation {
            order: Arc::clone(&order),
            previous,
            previous_aggregator,
            until: now + window,
        });
        order.reports.add(Report::CutOver {
            id: order.id,
            shard: self.shard,
        });
        self.first_batch.push((order, stopped.elapsed()));
    }

    /// Runs `batch` through `chain` into `state`. A stage on probation that
    /// fails the batch sends this shard back to the version it replaced,
    /// which processes the batch instead. `now` ends probation windows.
    pub fn process(
        &mut self,
        chain: &mut Chain,
        batch: &Batch,
        state: &mut KeyedState,
        dead: &mut Vec<DeadLetter>,
        now: Instant,
    ) -> Tally {
        if let Some(ended) = self.probation.take_if(|p| now >= p.until) {
            chain.set_fail_fast(ended.order.stage, false);
        }
        let guarded = self.probation.as_ref().map(|p| p.order.stage);
        let tally = match chain.process_guarded(batch, state, dead, guarded) {
            Ok(tally) => tally,
            Err(failed) => {
                self.roll_back(chain, state, failed.0);
                chain.process(batch, state, dead)
            }
        };
        if !batch.records.is_empty() {
            for (order, stall) in self.first_batch.drain(..) {
                order.reports.add(Report::FirstBatch {
                    id: order.id,
                    shard: self.shard,
                    latency: order.requested.elapsed(),
                    stall,
                });
            }
        }
        tally
    }

    /// The version on probation failed (`reason`): back to the one it replaced.
    fn roll_back(&mut self, chain: &mut Chain, state: &mut KeyedState, reason: String) {
        let failed = self.probation.take().expect("guarded by a probation");
        tracing::warn!(
            shard = self.shard,
            stage = %chain.stage(failed.order.stage).name,
            %reason,
            "The new plugin version trapped on probation; this shard went back to the previous one."
        );
        let mut previous = failed.previous;
        previous.set_fail_fast(false);
        chain.replace(
            failed.order.stage,
            previous,
            failed
                .previous_aggregator
                .as_ref()
                .map(|a| (Arc::clone(&a.output.schema), a.state_version)),
        );
        if let Some(previous) = failed.previous_aggregator {
            self.switch_aggregator(previous, state);
        }
        self.first_batch
            .retain(|(order, _)| order.id != failed.order.id);
        failed.order.reports.add(Report::ProbationFailed {
            id: failed.order.id,
            shard: self.shard,
            reason,
        });
    }

    /// `aggregator` runs from now on: a new generation of state, whose keys
    /// all wait for their row from it. Returns the version it replaced.
    fn switch_aggregator(
        &mut self,
        aggregator: AggregatorVersion,
        state: &mut KeyedState,
    ) -> AggregatorVersion {
        let generation = state.new_generation(aggregator.state_version);
        self.outputs.add(generation, Arc::clone(&aggregator.output));
        self.stale = state.stale_keys();
        self.aggregator
            .replace(aggregator)
            .expect("only an aggregator is swapped for an aggregator")
    }

    /// `partition` was restored with `entries`: keys of another state
    /// version are migrated when next used, and their row refreshed like
    /// after a swap (the state marks them as not the running generation's).
    pub fn restoring(&mut self, partition: i32, entries: &HashMap<Vec<u8>, Stored>) {
        let Some(version) = self.aggregator.as_ref().map(|a| a.state_version) else {
            return;
        };
        self.stale.extend(
            entries
                .iter()
                .filter(|(_, stored)| stored.state_version != version)
                .map(|(key, _)| (partition, key.clone())),
        );
    }

    /// `partitions` left the shard: their keys need no row any more.
    pub fn revoked(&mut self, partitions: &[i32]) {
        self.stale.retain(|(p, _)| !partitions.contains(p));
    }

    /// Gives a slice of the stale keys the running version's row, unless
    /// [`REFRESH_PER_FLUSH`] keys were refreshed since the last flush.
    pub fn refresh_some(&mut self, chain: &mut Chain, state: &mut KeyedState) {
        if !self.refresh_due() {
            return;
        }
        let size = REFRESH_SLICE.min(REFRESH_PER_FLUSH - self.refreshed);
        let slice: Vec<_> = self
            .stale
            .drain(self.stale.len().saturating_sub(size)..)
            .collect();
        self.refreshed += slice.len();
        chain.refresh(&slice, state);
    }

    /// `rows` (by generation, with their partition) grouped by the shape
    /// of their version: a flush takes them (stale keys may be refreshed
    /// again).
    pub fn group(&mut self, rows: Vec<(u64, i32, Row)>) -> Vec<Rows> {
        self.refreshed = 0;
        self.outputs.group(rows)
    }
}

/// The shape of the rows of each aggregator generation still in state.
struct Outputs {
    generations: Vec<(u64, Arc<Shape>)>,
}

impl Outputs {
    fn new(output: Option<Arc<Shape>>) -> Self {
        Self {
            generations: output.into_iter().map(|output| (0, output)).collect(),
        }
    }

    /// Rows of `generation` (the newest) have the shape `output`.
    fn add(&mut self, generation: u64, output: Arc<Shape>) {
        self.generations.push((generation, output));
    }

    /// `rows` grouped by shape. Every pending row is taken, so only the
    /// newest generation is kept after.
    fn group(&mut self, rows: Vec<(u64, i32, Row)>) -> Vec<Rows> {
        let mut groups: Vec<(u64, Rows)> = Vec::new();
        for (generation, partition, row) in rows {
            let index = match groups.iter().position(|(g, _)| *g == generation) {
                Some(index) => index,
                None => {
                    let shape = self
                        .generations
                        .iter()
                        .find(|(g, _)| *g == generation)
                        .map(|(_, output)| Arc::clone(output))
                        .expect("every generation with rows has its output");
                    groups.push((generation, Rows::new(shape)));
                    groups.len() - 1
                }
            };
            groups[index].1.push(partition, row);
        }
        self.generations
            .drain(..self.generations.len().saturating_sub(1));
        groups.into_iter().map(|(_, rows)| rows).collect()
    }
}
