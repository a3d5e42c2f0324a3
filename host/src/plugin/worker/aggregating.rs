//! The aggregator's calls: groups of a batch with each key's state, and
//! the search for the events responsible when a call fails.

use super::{GroupResult, Worker};
use crate::plugin::batch::BatchExt;
use crate::plugin::bindings::aggregating::{Group, Outcome};
use crate::plugin::bindings::types::{Batch, Fields, PluginError};
use crate::plugin::capabilities::CallInput;
use crate::plugin::error::{Failure, Trap};
use crate::plugin::fields::FieldsExt;
use crate::plugin::instance::Instance;

impl Worker {
    /// Runs an aggregator over `groups` of `batch` (one group per key, each
    /// a run of consecutive records in offset order).
    pub fn aggregate(
        &mut self,
        batch: &Batch,
        fields: &Fields,
        groups: &[Group],
    ) -> Vec<GroupResult> {
        if let Some(refusal) = self.start_batch() {
            return groups
                .iter()
                .map(|group| failed_group(group, &refusal))
                .collect();
        }
        let results = self.aggregate_isolating(batch, fields, groups);
        self.end_batch();
        results
    }

    /// [`Self::aggregate`] of a batch the plugin is called for.
    fn aggregate_isolating(
        &mut self,
        batch: &Batch,
        fields: &Fields,
        groups: &[Group],
    ) -> Vec<GroupResult> {
        // `None`: the group failed as a whole (an error or a trap).
        let outcomes: Vec<Option<Outcome>> = match self.call_aggregate(batch, fields, groups) {
            Ok(results) => results.into_iter().map(Result::ok).collect(),
            Err(trap) if self.fail_fast || self.trial_ran_out() => {
                let failure = Failure::Trapped(trap.0);
                return groups
                    .iter()
                    .map(|group| failed_group(group, &failure))
                    .collect();
            }
            Err(_) if groups.len() == 1 => vec![None],
            Err(_) => groups
                .iter()
                .map(|group| {
                    if self.budget.retry().is_some() {
                        // Left for event-by-event, which says why not tried.
                        return None;
                    }
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
        self.prepare_single_call(CallInput::Nothing)?;
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
        self.prepare_single_call(CallInput::Nothing)?;
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
        self.prepare_single_call(CallInput::Bytes(state))?;
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

    /// Before a call outside a batch (state version, schema, migration): the
    /// whole call time, and the instance ready.
    fn prepare_single_call(&mut self, input: CallInput<'_>) -> Result<(), Failure> {
        self.budget.start_batch();
        self.prepare_call(input)
            .map_err(|trap| Failure::Trapped(trap.0))
    }

    /// One call of the aggregator over `groups`.
    fn call_aggregate(
        &mut self,
        batch: &Batch,
        fields: &Fields,
        groups: &[Group],
    ) -> Result<Vec<Result<Outcome, PluginError>>, Trap> {
        self.prepare_call(CallInput::Batch(batch))?;
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
            if let Some(untried) = self.budget.retry() {
                result.failures.push((index, untried));
                continue;
            }
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

    /// A group's outcome as a result: each event the plugin rejected fails
    /// once (in linear time, however many rejections the plugin returns).
    fn group_result(&self, group: &Group, outcome: Outcome) -> GroupResult {
        let range = group.first as usize..(group.first + group.count) as usize;
        let mut rejected = vec![false; range.len()];
        let mut failures = Vec::with_capacity(outcome.rejected.len().min(range.len()));
        let mut outside = 0_usize;
        for rejection in outcome.rejected {
            let index = rejection.index as usize;
            match index
                .checked_sub(range.start)
                .filter(|&at| at < range.len())
            {
                Some(at) if !rejected[at] => {
                    rejected[at] = true;
                    failures.push((index, Failure::Rejected(rejection.error)));
                }
                // Rejected twice: once is what counts.
                Some(_) => {}
                None => outside += 1,
            }
        }
        if outside > 0 {
            // A plugin's mistake that loses nothing: a warning, not an error.
            tracing::warn!(
                pipeline = %self.context.pipeline,
                stage = %self.context.stage,
                plugin = %self.plugin.name,
                outside,
                "Plugin rejected events outside the group it was given; ignored."
            );
        }
        GroupResult {
            state: Some(outcome.state),
            row: outcome.row,
            failures,
        }
    }

    fn not_an_aggregator(&self) -> Failure {
        Failure::Trapped(format!(
            "plugin `{}` is a {} plugin, not an aggregator",
            self.plugin.name,
            self.plugin.kind.world()
        ))
    }
}

/// `group` with every event failed for `failure`, its state untouched.
fn failed_group(group: &Group, failure: &Failure) -> GroupResult {
    GroupResult {
        state: None,
        row: None,
        failures: (group.first as usize..(group.first + group.count) as usize)
            .map(|index| (index, failure.clone()))
            .collect(),
    }
}
