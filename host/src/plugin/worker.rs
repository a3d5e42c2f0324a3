//! One plugin instance in its own [`Store`], with the stage's limits, and the
//! rule for traps: discard the store, re-instantiate, retry the batch record
//! by record to isolate the poison records, and go on with the rest.

use std::sync::Arc;

use wasmtime::Store;

use super::batch::BatchExt;
use super::bindings::aggregating::{Group, Outcome};
use super::bindings::filtering::Decision;
use super::bindings::types::{Batch, Fields, PluginError, Value};
use super::context::StageContext;
use super::error::{Failure, LoadError, Trap};
use super::fields::FieldsExt;
use super::imports::HostState;
use super::instance::{Instance, arm, instantiate};
use super::runtime::Plugin;
pub use super::transformed::OutputRecord;
use super::transformed::split_transformed;

/// What a filter decided for one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Pass it on.
    Keep,
    /// Leave it out.
    Drop,
    /// Dead-letter it.
    Failed(Failure),
}

/// An aggregator's result for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupResult {
    /// The key's state after the events that went through (the old state if none did).
    pub state: Option<Vec<u8>>,
    /// The newest output row, if the state changed.
    pub row: Option<Vec<Value>>,
    /// Events that did not go through: their index in the batch, and why.
    pub failures: Vec<(usize, Failure)>,
}

/// A plugin instance for one worker of a stage.
pub struct Worker {
    plugin: Arc<Plugin>,
    context: Arc<StageContext>,
    store: Store<HostState>,
    instance: Instance,
    /// The fields the plugin reads, as it said after `init`.
    reads: Vec<String>,
    restarts: u64,
    /// On a trap, fail the whole call instead of isolating the records
    /// responsible (a new version on probation: it is replaced anyway).
    fail_fast: bool,
}

impl Worker {
    /// Instantiates `plugin` for the stage `context` and calls its `init`.
    pub fn new(plugin: Arc<Plugin>, context: Arc<StageContext>) -> Result<Self, LoadError> {
        let (store, instance, reads) = instantiate(&plugin, &context)?;
        Ok(Self {
            plugin,
            context,
            store,
            instance,
            reads,
            restarts: 0,
            fail_fast: false,
        })
    }

    /// Makes a trap fail the whole call (no record-by-record isolation).
    pub fn set_fail_fast(&mut self, fail_fast: bool) {
        self.fail_fast = fail_fast;
    }

    /// The top-level JSON fields the plugin reads (its `reads` export); each
    /// call gets their values as [`Fields`].
    pub fn reads(&self) -> &[String] {
        &self.reads
    }

    /// How many times a trap made this worker re-instantiate its plugin.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Runs a filter over `batch`: one verdict per record. `fields` holds
    /// the values of the fields the plugin reads ([`Self::reads`]).
    pub fn filter(&mut self, batch: &Batch, fields: &Fields) -> Vec<Verdict> {
        self.isolating(batch, fields, Self::call_filter, Verdict::Failed)
    }

    /// Runs a transform over `batch`: per record, what it became or why not.
    pub fn transform(
        &mut self,
        batch: &Batch,
        fields: &Fields,
    ) -> Vec<Result<Vec<OutputRecord>, Failure>> {
        self.isolating(batch, fields, Self::call_transform, Err)
    }

    /// Runs an aggregator over `groups` of `batch` (one group per key, each
    /// a run of consecutive records in offset order).
    pub fn aggregate(
        &mut self,
        batch: &Batch,
        fields: &Fields,
        groups: &[Group],
    ) -> Vec<GroupResult> {
        // `None`: the group failed as a whole (an error or a trap).
        let outcomes: Vec<Option<Outcome>> = match self.call_aggregate(batch, fields, groups) {
            Ok(results) => results.into_iter().map(Result::ok).collect(),
            Err(trap) if self.fail_fast => {
                return groups
                    .iter()
                    .map(|group| GroupResult {
                        state: None,
                        row: None,
                        failures: (group.first as usize..(group.first + group.count) as usize)
                            .map(|index| (index, Failure::Trapped(trap.0.clone())))
                            .collect(),
                    })
                    .collect();
            }
            Err(_) if groups.len() == 1 => vec![None],
            Err(_) => groups
                .iter()
                .map(|group| {
                    self.call_aggregate(batch, fields, std::slice::from_ref(group))
                        .ok()
                        .and_then(|mut results| results.pop())
                        .and_then(Result::ok)
                })
                .collect(),
        };
        groups
            .iter()
            .zip(outcomes)
            .map(|(group, outcome)| match outcome {
                Some(outcome) => self.group_result(group, outcome),
                // Find the events responsible, and apply the others.
                None => self.aggregate_event_by_event(batch, fields, group),
            })
            .collect()
    }

    /// The aggregator's state version.
    pub fn state_version(&mut self) -> Result<u32, Failure> {
        self.prepare_call();
        let result = match &self.instance {
            Instance::Aggregator(bindings) => bindings
                .weir_plugin_aggregating()
                .call_state_version(&mut self.store),
            _ => return Err(self.not_an_aggregator()),
        };
        result.map_err(|error| self.trapped(error))
    }

    /// The aggregator's output schema (Avro, JSON text).
    pub fn output_schema(&mut self) -> Result<String, Failure> {
        self.prepare_call();
        let result = match &self.instance {
            Instance::Aggregator(bindings) => bindings
                .weir_plugin_aggregating()
                .call_output_schema(&mut self.store),
            _ => return Err(self.not_an_aggregator()),
        };
        result.map_err(|error| self.trapped(error))
    }

    /// Converts state written by `from_version` into the plugin's own version.
    pub fn migrate(&mut self, from_version: u32, state: &[u8]) -> Result<Vec<u8>, Failure> {
        self.prepare_call();
        let result = match &self.instance {
            Instance::Aggregator(bindings) => bindings.weir_plugin_aggregating().call_migrate(
                &mut self.store,
                from_version,
                state,
            ),
            _ => return Err(self.not_an_aggregator()),
        };
        match result {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(error)) => Err(Failure::Rejected(error)),
            Err(error) => Err(self.trapped(error)),
        }
    }

    /// Calls `call` on the whole batch; if it traps, renews the instance and
    /// calls it on each record alone, so only the records that trap fail.
    fn isolating<R>(
        &mut self,
        batch: &Batch,
        fields: &Fields,
        call: impl Fn(&mut Self, &Batch, &Fields) -> Result<Vec<R>, Trap>,
        failed: impl Fn(Failure) -> R,
    ) -> Vec<R> {
        let trap = match call(self, batch, fields) {
            Ok(results) => return results,
            Err(trap) => trap,
        };
        if batch.records.len() == 1 || self.fail_fast {
            return (0..batch.records.len())
                .map(|_| failed(Failure::Trapped(trap.0.clone())))
                .collect();
        }
        tracing::debug!(
            pipeline = %self.context.pipeline,
            stage = %self.context.stage,
            plugin = %self.plugin.name,
            batch = batch.records.len(),
            error = %trap,
            "Batch trapped; retrying record by record."
        );
        (0..batch.records.len())
            .map(|index| {
                let single = fields.single(index, self.reads.len());
                match call(self, &batch.single(index), &single) {
                    Ok(mut results) => results.pop().expect("one result for one record"),
                    Err(trap) => failed(Failure::Trapped(trap.0)),
                }
            })
            .collect()
    }

    fn call_filter(&mut self, batch: &Batch, fields: &Fields) -> Result<Vec<Verdict>, Trap> {
        self.prepare_call();
        let Instance::Filter(bindings) = &self.instance else {
            unreachable!("a filter call on a {} plugin", self.plugin.kind.world());
        };
        let result = bindings
            .weir_plugin_filtering()
            .call_filter(&mut self.store, batch, fields);
        let decisions = self.checked(result, batch.records.len())?;
        Ok(decisions
            .into_iter()
            .map(|decision| match decision {
                Decision::Keep => Verdict::Keep,
                Decision::Drop => Verdict::Drop,
                Decision::Reject(error) => Verdict::Failed(Failure::Rejected(error)),
            })
            .collect())
    }

    fn call_transform(
        &mut self,
        batch: &Batch,
        fields: &Fields,
    ) -> Result<Vec<Result<Vec<OutputRecord>, Failure>>, Trap> {
        self.prepare_call();
        let Instance::Transform(bindings) = &self.instance else {
            unreachable!("a transform call on a {} plugin", self.plugin.kind.world());
        };
        let result =
            bindings
                .weir_plugin_transforming()
                .call_transform(&mut self.store, batch, fields);
        let transformed = self
            .checked(result.map(|t| vec![t]), 1)?
            .pop()
            .expect("one result");
        match split_transformed(transformed, batch.records.len()) {
            Ok(results) => Ok(results),
            Err(violation) => {
                self.renew();
                Err(violation)
            }
        }
    }

    fn call_aggregate(
        &mut self,
        batch: &Batch,
        fields: &Fields,
        groups: &[Group],
    ) -> Result<Vec<Result<Outcome, PluginError>>, Trap> {
        self.prepare_call();
        let Instance::Aggregator(bindings) = &self.instance else {
            unreachable!("an aggregate call on a {} plugin", self.plugin.kind.world());
        };
        let result = bindings.weir_plugin_aggregating().call_aggregate(
            &mut self.store,
            batch,
            fields,
            groups,
        );
        self.checked(result, groups.len())
    }

    /// Applies a failed group's events one at a time, carrying the state
    /// forward, so each bad event is found and every good one counts.
    fn aggregate_event_by_event(
        &mut self,
        batch: &Batch,
        fields: &Fields,
        group: &Group,
    ) -> GroupResult {
        let mut result = GroupResult {
            state: group.state.clone(),
            row: None,
            failures: Vec::new(),
        };
        let first = group.first as usize;
        for index in first..first + group.count as usize {
            let single = Group {
                key: group.key.clone(),
                state: result.state.clone(),
                first: 0,
                count: 1,
            };
            let alone = fields.single(index, self.reads.len());
            let outcome = match self.call_aggregate(
                &batch.single(index),
                &alone,
                std::slice::from_ref(&single),
            ) {
                Ok(mut outcomes) => outcomes.pop().expect("one outcome for one group"),
                Err(trap) => {
                    result.failures.push((index, Failure::Trapped(trap.0)));
                    continue;
                }
            };
            match outcome {
                Ok(outcome) => {
                    if let Some(rejection) = outcome.rejected.into_iter().next() {
                        result
                            .failures
                            .push((index, Failure::Rejected(rejection.error)));
                    }
                    result.state = Some(outcome.state);
                    if outcome.row.is_some() {
                        result.row = outcome.row;
                    }
                }
                Err(error) => result.failures.push((index, Failure::Rejected(error))),
            }
        }
        result
    }

    fn group_result(&self, group: &Group, outcome: Outcome) -> GroupResult {
        let range = group.first as usize..(group.first + group.count) as usize;
        let mut failures = Vec::with_capacity(outcome.rejected.len());
        for rejection in outcome.rejected {
            let index = rejection.index as usize;
            if failures.iter().any(|(seen, _)| *seen == index) {
                // Rejected twice: once is what counts.
            } else if range.contains(&index) {
                failures.push((index, Failure::Rejected(rejection.error)));
            } else {
                // A plugin's mistake that loses nothing: a warning, not an error.
                tracing::warn!(
                    pipeline = %self.context.pipeline,
                    stage = %self.context.stage,
                    plugin = %self.plugin.name,
                    index,
                    "Plugin rejected an event outside the group it was given; ignored."
                );
            }
        }
        GroupResult {
            state: Some(outcome.state),
            row: outcome.row,
            failures,
        }
    }

    /// Sets the per-call deadline and fuel.
    fn prepare_call(&mut self) {
        arm(
            &mut self.store,
            &self.context.limits,
            self.plugin.fuel_metering,
        );
    }

    /// A call's result, or the trap as a message (the instance is renewed).
    /// A plugin answering with the wrong number of results broke the
    /// contract, which counts as a trap too.
    fn checked<R>(
        &mut self,
        result: wasmtime::Result<Vec<R>>,
        expected: usize,
    ) -> Result<Vec<R>, Trap> {
        match result {
            Ok(results) if results.len() == expected => Ok(results),
            Ok(results) => {
                let message = format!(
                    "returned {} results for {expected} inputs (the contract asks for one each)",
                    results.len()
                );
                self.renew();
                Err(Trap(message))
            }
            Err(error) => match self.trapped(error) {
                Failure::Trapped(message) => Err(Trap(message)),
                Failure::Rejected(error) => Err(Trap(error.message)),
            },
        }
    }

    /// Describes a trap in words a plugin author can act on, then renews the
    /// instance: after a trap a store must not be used again.
    fn trapped(&mut self, error: wasmtime::Error) -> Failure {
        let limits = &self.context.limits;
        let trap = error.downcast_ref::<wasmtime::Trap>().copied();
        // The root cause is the trap itself; the wasm backtrace above it is
        // for debugging and goes to the debug log only.
        let cause = error.root_cause().to_string();
        tracing::debug!(
            pipeline = %self.context.pipeline,
            stage = %self.context.stage,
            plugin = %self.plugin.name,
            error = %format!("{error:?}"),
            "Plugin trapped."
        );
        let mut message = match trap {
            Some(wasmtime::Trap::Interrupt) => {
                format!(
                    "exceeded its call deadline of {} ms",
                    limits.call_timeout_ms
                )
            }
            Some(wasmtime::Trap::OutOfFuel) => {
                format!(
                    "ran out of fuel ({} units per call)",
                    limits.fuel.unwrap_or(u64::MAX)
                )
            }
            // The store limiter turns a refused memory.grow into a trap.
            _ if cause.starts_with("forcing trap when growing memory") => {
                format!(
                    "exceeded its memory limit of {} MiB ({cause})",
                    limits.memory_mib
                )
            }
            Some(trap) => format!("trapped: {trap}"),
            None => cause,
        };
        let output = self.store.data().output.take();
        if !output.is_empty() {
            message = format!("{message}; plugin output: {output}");
        }
        self.renew();
        Failure::Trapped(message)
    }

    fn not_an_aggregator(&self) -> Failure {
        Failure::Trapped(format!(
            "plugin `{}` is a {} plugin, not an aggregator",
            self.plugin.name,
            self.plugin.kind.world()
        ))
    }

    /// Discards the store and instantiates the plugin afresh.
    fn renew(&mut self) {
        self.restarts += 1;
        match instantiate(&self.plugin, &self.context) {
            // Same plugin, same configuration: the same `reads`.
            Ok((store, instance, _reads)) => {
                self.store = store;
                self.instance = instance;
            }
            // It started before with the same configuration; if it cannot
            // now, the next calls trap on the old store and say why.
            Err(error) => tracing::error!(
                pipeline = %self.context.pipeline,
                stage = %self.context.stage,
                plugin = %self.plugin.name,
                error = %error,
                "Plugin could not be re-instantiated after a trap."
            ),
        }
    }
}
