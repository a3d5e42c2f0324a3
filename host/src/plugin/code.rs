//! What runs a stage's records: a plugin instance ([`Worker`]) in weir, or —
//! for the benchmark's native baseline only — the same plugin logic compiled
//! into the process, handed to [`crate::engine::run_with`] by stage name.

use std::collections::HashMap;
use std::sync::Arc;

use super::bindings::aggregating::Group;
use super::bindings::types::{Batch, Fields};
use super::context::StageContext;
use super::error::Failure;
use super::worker::{GroupResult, OutputRecord, Verdict, Worker};

/// A stage's code, as the chain calls it (see [`Worker`] for each call). A
/// stage only gets the calls of its kind (the plugin's world), so native
/// code implements those and leaves the others to the defaults, which say
/// the chain broke that rule.
pub trait StageCode: Send {
    /// The top-level JSON fields it reads.
    fn reads(&self) -> &[String];
    /// A filter's verdict per record.
    fn filter(&mut self, _batch: &Batch, _fields: &Fields) -> Vec<Verdict> {
        unreachable!("a filter call on a stage that is not a filter")
    }
    /// A transform's outputs per record.
    fn transform(
        &mut self,
        _batch: &Batch,
        _fields: &Fields,
    ) -> Vec<Result<Vec<OutputRecord>, Failure>> {
        unreachable!("a transform call on a stage that is not a transform")
    }
    /// An aggregator's result per group.
    fn aggregate(
        &mut self,
        _batch: &Batch,
        _fields: &Fields,
        _groups: &[Group],
    ) -> Vec<GroupResult> {
        unreachable!("an aggregate call on a stage that is not an aggregator")
    }
    /// State of `from_version` in the aggregator's own version.
    fn migrate(&mut self, _from_version: u32, _state: &[u8]) -> Result<Vec<u8>, Failure> {
        unreachable!("a migrate call on a stage that is not an aggregator")
    }
    /// Times a trap renewed the instance (none for native code).
    fn restarts(&self) -> u64 {
        0
    }
    /// Fail whole calls on a trap (a version on probation); native code
    /// does not trap.
    fn set_fail_fast(&mut self, _fail_fast: bool) {}
}

/// Builds native code for a stage from its context (configuration, lookups);
/// the error says why the code would not start.
pub type NativeStage = Arc<
    dyn Fn(&StageContext) -> Result<Box<dyn StageCode>, Box<dyn std::error::Error + Send + Sync>>
        + Send
        + Sync,
>;

/// Native code by stage name: those stages run it instead of their plugin
/// (whose component still gives the kind, the output schema and the state
/// version). Only the benchmark's native baseline uses it.
pub type NativeStages = HashMap<String, NativeStage>;

impl StageCode for Worker {
    fn reads(&self) -> &[String] {
        Worker::reads(self)
    }

    fn filter(&mut self, batch: &Batch, fields: &Fields) -> Vec<Verdict> {
        Worker::filter(self, batch, fields)
    }

    fn transform(
        &mut self,
        batch: &Batch,
        fields: &Fields,
    ) -> Vec<Result<Vec<OutputRecord>, Failure>> {
        Worker::transform(self, batch, fields)
    }

    fn aggregate(&mut self, batch: &Batch, fields: &Fields, groups: &[Group]) -> Vec<GroupResult> {
        Worker::aggregate(self, batch, fields, groups)
    }

    fn migrate(&mut self, from_version: u32, state: &[u8]) -> Result<Vec<u8>, Failure> {
        Worker::migrate(self, from_version, state)
    }

    fn restarts(&self) -> u64 {
        Worker::restarts(self)
    }

    fn set_fail_fast(&mut self, fail_fast: bool) {
        Worker::set_fail_fast(self, fail_fast);
    }
}
