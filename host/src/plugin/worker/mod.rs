//! One plugin instance in its own [`Store`], with the stage's limits, and the
//! rule for traps: discard the store, re-instantiate, retry the batch record
//! by record to isolate the poison records, and go on with the rest — within
//! the batch's time budget, behind a circuit breaker ([`super::budget`]).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;

use super::batch::BatchExt;
use super::bindings::filtering::Decision;
use super::bindings::types::{Batch, Fields, Value};
use super::budget::{Breaker, Budget, Turn};
use super::capabilities::CallInput;
use super::context::StageContext;
use super::error::{Failure, LoadError, Trap};
use super::fields::FieldsExt;
use super::imports::HostState;
use super::instance::{Instance, arm, instantiate};
use super::runtime::Plugin;
pub use super::transformed::OutputRecord;
use super::transformed::split_transformed;

mod aggregating;

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
    /// The time of the current batch's calls.
    budget: Budget,
    /// Stops calling a plugin that keeps running out of time.
    breaker: Breaker,
    /// Why the instance could not be renewed after a trap, while it cannot.
    stale: Option<String>,
}

impl Worker {
    /// Instantiates `plugin` for the stage `context` and calls its `init`.
    pub fn new(plugin: Arc<Plugin>, context: Arc<StageContext>) -> Result<Self, LoadError> {
        let (store, instance, reads) = instantiate(&plugin, &context)?;
        let budget = Budget::new(context.limits.call_timeout());
        Ok(Self {
            plugin,
            context,
            store,
            instance,
            reads,
            restarts: 0,
            fail_fast: false,
            budget,
            breaker: Breaker::default(),
            stale: None,
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

    /// Before a batch: why the plugin is not called (its circuit is open),
    /// or a fresh budget for the batch's calls.
    fn start_batch(&mut self) -> Option<Failure> {
        let refusal = self.breaker.refusal(Instant::now());
        if refusal.is_none() {
            self.budget.start_batch();
        }
        refusal
    }

    /// Whether this batch is the circuit's trial and ran out of time: its
    /// records are not retried one by one.
    fn trial_ran_out(&self) -> bool {
        self.breaker.on_trial() && self.budget.has_run_out()
    }

    /// After a batch that called the plugin: the breaker's turn, logged.
    fn end_batch(&mut self) {
        let (pipeline, stage) = (&self.context.pipeline, &self.context.stage);
        match self.breaker.record(&self.budget, Instant::now()) {
            Turn::Same => {}
            Turn::Opened(cool_down) => {
                tracing::warn!(
                    pipeline = %pipeline,
                    stage = %stage,
                    plugin = %self.plugin.name,
                    cool_down = ?cool_down,
                    "Plugin keeps running out of its time budget: its records are \
                     dead-lettered (circuit-open) without calling it for the cool-down, \
                     then a batch tries it again."
                );
                metrics::counter!(
                    "weir_plugin_circuit_opened_total",
                    "pipeline" => pipeline.clone(),
                    "stage" => stage.clone(),
                )
                .increment(1);
            }
            Turn::Closed => tracing::info!(
                pipeline = %pipeline,
                stage = %stage,
                plugin = %self.plugin.name,
                "Plugin ran a batch within its time budget again: it is called as usual."
            ),
        }
    }

    /// Runs a transform over `batch`: per record, what it became or why not.
    pub fn transform(
        &mut self,
        batch: &Batch,
        fields: &Fields,
    ) -> Vec<Result<Vec<OutputRecord>, Failure>> {
        self.isolating(batch, fields, Self::call_transform, Err)
    }

    /// Calls `call` on the whole batch; if it traps, renews the instance and
    /// calls it on each record alone, so only the records that trap fail.
    /// While the circuit is open, every record fails without a call.
    fn isolating<R>(
        &mut self,
        batch: &Batch,
        fields: &Fields,
        call: impl Fn(&mut Self, &Batch, &Fields) -> Result<Vec<R>, Trap>,
        failed: impl Fn(Failure) -> R,
    ) -> Vec<R> {
        if let Some(refusal) = self.start_batch() {
            return (0..batch.records.len())
                .map(|_| failed(refusal.clone()))
                .collect();
        }
        let results = self.isolating_calls(batch, fields, call, failed);
        self.end_batch();
        results
    }

    /// [`Self::isolating`] of a batch the plugin is called for.
    fn isolating_calls<R>(
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
        if batch.records.len() == 1 || self.fail_fast || self.trial_ran_out() {
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
                if let Some(untried) = self.budget.retry() {
                    return failed(untried);
                }
                let single = fields.single(index, self.reads.len());
                match call(self, &batch.single(index), &single) {
                    Ok(mut results) => results.pop().expect("one result for one record"),
                    Err(trap) => failed(Failure::Trapped(trap.0)),
                }
            })
            .collect()
    }

    fn call_filter(&mut self, batch: &Batch, fields: &Fields) -> Result<Vec<Verdict>, Trap> {
        self.prepare_call(CallInput::Batch(batch))?;
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
        self.prepare_call(CallInput::Batch(batch))?;
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

    /// Sets the call's deadline (from the batch's budget), fuel, and the
    /// replayable clocks and random source for `input`; a trap when the
    /// instance could not be renewed after its last trap (a store that
    /// trapped is never called again).
    fn prepare_call(&mut self, input: CallInput<'_>) -> Result<(), Trap> {
        if self.stale.is_some() {
            self.renew();
        }
        if let Some(error) = &self.stale {
            return Err(Trap(format!(
                "not run: the plugin could not be started again after a trap ({error})"
            )));
        }
        arm(
            &mut self.store,
            self.budget.deadline(),
            &self.context.limits,
            self.plugin.fuel_metering,
        );
        self.store.data().replay.start(input);
        Ok(())
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
                Failure::Skipped { reason, .. } => Err(Trap(reason)),
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
                self.budget.ran_out();
                let deadline = self.budget.deadline();
                if deadline >= limits.call_timeout() {
                    format!(
                        "exceeded its call deadline of {} ms",
                        limits.call_timeout_ms
                    )
                } else {
                    format!(
                        "exceeded its call deadline of {} ms (a record retried alone, after \
                         its batch trapped, gets at most a sixteenth of the stage's {} ms)",
                        deadline.as_millis(),
                        limits.call_timeout_ms
                    )
                }
            }
            Some(wasmtime::Trap::OutOfFuel) => {
                self.budget.ran_out();
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

    /// Discards the store and instantiates the plugin afresh.
    fn renew(&mut self) {
        self.restarts += 1;
        match instantiate(&self.plugin, &self.context) {
            // Same plugin, same configuration: the same `reads`.
            Ok((store, instance, _reads)) => {
                self.store = store;
                self.instance = instance;
                self.stale = None;
            }
            // It started before with the same configuration; if it cannot
            // now (no instance free in the pool, say), calls fail without
            // touching the trapped store, and each tries again first.
            Err(error) => {
                if self.stale.is_none() {
                    tracing::error!(
                        pipeline = %self.context.pipeline,
                        stage = %self.context.stage,
                        plugin = %self.plugin.name,
                        error = %error,
                        "Plugin could not be re-instantiated after a trap; its records fail \
                         until it can."
                    );
                }
                self.stale = Some(error.to_string());
            }
        }
    }
}
