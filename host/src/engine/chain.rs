//! A pipeline's stages run over one batch: filters and transforms in order,
//! then the aggregator over the records grouped by key, its results folded
//! into the host-owned state. Records that fail anywhere become dead letters
//! carrying the record as it arrived from the source.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::state::{Folded, KeyedState};
use crate::pipeline::config::Format;
use crate::plugin::{
    Batch, BatchBuilder, BatchExt, Failure, Fields, Group, LoadError, Parsed, Plugin, PluginKind,
    Reader, RecordRef, StageCode, StageContext, Verdict, Worker, no_fields,
};
use crate::sink::RowSchema;
use crate::sink::{DeadLetter, Kind, PluginRef};

/// On probation, a batch in which the new version rejects more than half
/// of the records, and at least this many, counts as a failure.
const PROBATION_MIN_REJECTED: usize = 8;

/// A state update the aggregator computed: partition, key, result.
type Update = (i32, Vec<u8>, Folded);

/// One stage with its own plugin instance.
pub struct Stage {
    /// The stage's name.
    pub name: String,
    /// Its plugin, as dead letters name it.
    pub plugin: PluginRef,
    kind: PluginKind,
    worker: Box<dyn StageCode>,
    /// Where the fields the plugin reads lie among the chain's (its [`Reader`]).
    columns: Vec<usize>,
    /// Whether a stage after this one reads fields.
    read_later: bool,
    metrics: StageMetrics,
}

/// One stage's metric handles (looked up once per stage instance).
struct StageMetrics {
    records_in: metrics::Counter,
    records_out: metrics::Counter,
    dropped: metrics::Counter,
    call: metrics::Histogram,
}

impl StageMetrics {
    fn new(pipeline: &str, stage: &str) -> Self {
        let labels = [
            ("pipeline", pipeline.to_owned()),
            ("stage", stage.to_owned()),
        ];
        Self {
            records_in: metrics::counter!("weir_stage_records_in_total", &labels),
            records_out: metrics::counter!("weir_stage_records_out_total", &labels),
            dropped: metrics::counter!("weir_stage_records_dropped_total", &labels),
            call: metrics::histogram!("weir_plugin_call_duration_seconds", &labels),
        }
    }

    fn add(&self, counts: Counts) {
        self.records_in.increment(counts.records_in);
        self.records_out.increment(counts.records_out);
        self.dropped.increment(counts.dropped);
    }
}

/// What one stage did with one batch (counted once the batch is kept).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    records_in: u64,
    records_out: u64,
    dropped: u64,
}

impl Stage {
    /// Instantiates `plugin` for the stage `context`.
    pub fn new(plugin: &Arc<Plugin>, context: Arc<StageContext>) -> Result<Self, LoadError> {
        let worker = Worker::new(Arc::clone(plugin), Arc::clone(&context))?;
        Ok(Self::running(plugin, &context, Box::new(worker)))
    }

    /// The stage of `plugin` run by `code` instead of a plugin instance (the
    /// benchmark's native baseline).
    pub fn running(plugin: &Arc<Plugin>, context: &StageContext, code: Box<dyn StageCode>) -> Self {
        Self {
            name: context.stage.clone(),
            plugin: PluginRef::of(plugin),
            kind: plugin.kind,
            worker: code,
            columns: Vec::new(),
            read_later: false,
            metrics: StageMetrics::new(&context.pipeline, &context.stage),
        }
    }

    /// A stage of `kind` run by `code` with no component behind it (the
    /// simulation tests' stages); dead letters name it `native`.
    #[cfg(test)]
    pub(crate) fn native(
        pipeline: &str,
        name: &str,
        kind: PluginKind,
        code: Box<dyn StageCode>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            plugin: PluginRef {
                name: name.to_owned(),
                version: "native".to_owned(),
            },
            kind,
            worker: code,
            columns: Vec::new(),
            read_later: false,
            metrics: StageMetrics::new(pipeline, name),
        }
    }

    /// Runs `call` on the stage's code, timing it as a plugin call.
    fn timed<T>(&mut self, call: impl FnOnce(&mut dyn StageCode) -> T) -> T {
        let started = std::time::Instant::now();
        let result = call(self.worker.as_mut());
        self.metrics.call.record(started.elapsed());
        result
    }

    /// The values of the fields this stage reads, from the batch's `parsed`
    /// fields (parsed now, if no stage before needed them).
    fn fields(&self, batch: &Batch, parsed: &mut Option<Parsed>, reader: &Reader) -> Fields {
        if self.columns.is_empty() {
            return no_fields();
        }
        parsed
            .get_or_insert_with(|| reader.parse(batch))
            .project(&self.columns)
    }

    /// Makes a trap fail the whole call (on probation) or isolate records.
    pub fn set_fail_fast(&mut self, fail_fast: bool) {
        self.worker.set_fail_fast(fail_fast);
    }

    fn fail(&self, record: RecordRef<'_>, failure: Failure) -> DeadLetter {
        DeadLetter::failed(record, &self.name, &self.plugin, failure)
    }
}

/// A version on probation failed a batch: why (a trap, or most records
/// rejected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProbationFailed(pub String);

/// What became of a batch's records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Records a filter dropped or a transform turned into nothing.
    pub dropped: u64,
    /// Records that became dead letters.
    pub dead: u64,
    /// Records the aggregator folded into state.
    pub aggregated: u64,
    /// Records skipped because their key's state already held them (read
    /// again after a restart or a rebalance).
    pub replayed: u64,
}

/// The stages of a pipeline, as one shard runs them.
pub struct Chain {
    stages: Vec<Stage>,
    aggregator: Stage,
    /// Every field the stages read: each record is parsed once for all of them.
    reader: Reader,
    /// The JSON field keying the state (the record key when `None`).
    key_field: Option<String>,
    /// The aggregator's output schema.
    schema: Arc<RowSchema>,
    /// The aggregator's state version.
    state_version: u32,
    /// The source's format: `json` values are checked by the chain's one
    /// parse of each record (the parse that finds the stages' fields).
    format: Format,
}

impl Chain {
    /// A chain of `stages` ending in `aggregator`, whose rows must fit
    /// `schema` and whose state is of `state_version`, over records of
    /// `format`.
    pub fn new(
        stages: Vec<Stage>,
        aggregator: Stage,
        key_field: Option<String>,
        schema: Arc<RowSchema>,
        state_version: u32,
        format: Format,
    ) -> Self {
        debug_assert!(stages.iter().all(|s| s.kind != PluginKind::Aggregator));
        debug_assert_eq!(aggregator.kind, PluginKind::Aggregator);
        let mut chain = Self {
            stages,
            aggregator,
            reader: Reader::default(),
            key_field,
            schema,
            state_version,
            format,
        };
        chain.read_fields();
        chain
    }

    /// Gathers the fields every stage reads into one [`Reader`] and tells
    /// each stage where its own are, and whether a later stage reads any.
    fn read_fields(&mut self) {
        let stages = || self.stages.iter().chain([&self.aggregator]);
        let reader = Reader::new(stages().map(|stage| stage.worker.reads()));
        let columns: Vec<Vec<usize>> = stages()
            .map(|stage| reader.columns(stage.worker.reads()))
            .collect();
        let mut read_later = false;
        for (stage, columns) in self
            .stages
            .iter_mut()
            .chain([&mut self.aggregator])
            .rev()
            .zip(columns.into_iter().rev())
        {
            stage.read_later = read_later;
            read_later |= !columns.is_empty();
            stage.columns = columns;
        }
        self.reader = reader;
    }

    /// Puts `stage` in place of stage `index` (the aggregator when it is the
    /// last, with its output `schema` and `state_version`); returns the stage replaced.
    pub fn replace(
        &mut self,
        index: usize,
        stage: Stage,
        aggregator: Option<(Arc<RowSchema>, u32)>,
    ) -> Stage {
        let replaced = match aggregator {
            Some((schema, state_version)) => {
                self.schema = schema;
                self.state_version = state_version;
                std::mem::replace(&mut self.aggregator, stage)
            }
            None => std::mem::replace(&mut self.stages[index], stage),
        };
        self.read_fields();
        replaced
    }

    /// Makes a trap in stage `index` fail its whole call (on probation).
    pub fn set_fail_fast(&mut self, index: usize, fail_fast: bool) {
        match self.stages.get_mut(index) {
            Some(stage) => stage.set_fail_fast(fail_fast),
            None => self.aggregator.set_fail_fast(fail_fast),
        }
    }

    /// The stage at `index` (the aggregator after the filters and transforms).
    pub fn stage(&self, index: usize) -> &Stage {
        self.stages.get(index).unwrap_or(&self.aggregator)
    }

    /// Gives `keys` (a swap's stale keys) the running aggregator's state and
    /// row without new events: their state migrated if need be, their row
    /// as this version computes it. Keys changed by new events since the
    /// swap are left as they are. Returns how many were refreshed.
    pub fn refresh(&mut self, keys: &[(i32, Vec<u8>)], state: &mut KeyedState) -> usize {
        let mut groups = Vec::with_capacity(keys.len());
        let mut owners = Vec::with_capacity(keys.len());
        for (partition, key) in keys {
            if state.is_current(*partition, key) {
                continue;
            }
            let Some(held) = state.get(*partition, key) else {
                continue;
            };
            let prior = if held.version == self.state_version {
                held.state.to_vec()
            } else {
                match self.aggregator.worker.migrate(held.version, held.state) {
                    Ok(prior) => prior,
                    Err(failure) => {
                        tracing::warn!(
                            stage = %self.aggregator.name,
                            key = %String::from_utf8_lossy(key),
                            from = held.version,
                            %failure,
                            "Cannot migrate a key's state; it keeps its row until its next event."
                        );
                        continue;
                    }
                }
            };
            groups.push(Group {
                key: key.clone(),
                state: Some(prior),
                first: 0,
                count: 0,
            });
            owners.push(*partition);
        }
        if groups.is_empty() {
            return 0;
        }
        let empty = BatchBuilder::default().build();
        let results = self
            .aggregator
            .worker
            .aggregate(&empty, &no_fields(), &groups);
        let mut refreshed = 0;
        for ((group, result), partition) in groups.into_iter().zip(results).zip(owners) {
            let row = result.row.filter(|row| self.schema.check(row).is_ok());
            if let Some(new_state) = result.state {
                state.refresh(partition, &group.key, new_state, row);
                refreshed += 1;
            }
        }
        refreshed
    }

    /// Runs `source` through every stage into `state`; failed records go to `dead`.
    pub fn process(
        &mut self,
        source: &Batch,
        state: &mut KeyedState,
        dead: &mut Vec<DeadLetter>,
    ) -> Tally {
        self.process_guarded(source, state, dead, None)
            .expect("an unguarded batch always completes")
    }

    /// [`Self::process`], all or nothing for stage `guarded` (a new plugin
    /// version on probation): if it traps on the batch, or rejects more than
    /// half of its records, nothing of the batch is kept — no state, no dead
    /// letters — and why is returned.
    pub fn process_guarded(
        &mut self,
        source: &Batch,
        state: &mut KeyedState,
        dead: &mut Vec<DeadLetter>,
        guarded: Option<usize>,
    ) -> Result<Tally, ProbationFailed> {
        let restarts = |chain: &Self| guarded.map(|index| chain.stage(index).worker.restarts());
        let before = restarts(self);
        let mut tally = Tally::default();
        let dead_before = dead.len();
        // The batch the next stage reads (`None`: the source itself), and
        // for each of its records the source record it came from.
        let mut current: Option<Batch> = None;
        // The fields the stages read, once parsed (a transform's output is
        // new JSON: parsed again when a later stage reads fields).
        let mut parsed: Option<Parsed> = None;
        let mut origin: Vec<u32> = (0..index_u32(source.records.len())).collect();
        // A `json` source's values are checked by this parse, the one that
        // finds the stages' fields: those that are not JSON objects become
        // dead letters before any stage.
        if self.format == Format::Json {
            let checked = self.reader.parse(source);
            if (0..source.records.len()).all(|index| checked.is_object(index)) {
                parsed = Some(checked);
            } else {
                origin.retain(|&index| {
                    let object = checked.is_object(index as usize);
                    if !object {
                        let record = source.record(index as usize);
                        dead.push(DeadLetter::malformed(
                            record,
                            "source",
                            "not-json",
                            not_a_json_object(record.value),
                        ));
                    }
                    object
                });
                current = Some(source.select(&origin));
                parsed = Some(checked.select(&origin));
            }
        }
        let mut counts = vec![Counts::default(); self.stages.len()];
        for (stage, counts) in self.stages.iter_mut().zip(&mut counts) {
            let batch = current.as_ref().unwrap_or(source);
            if batch.records.is_empty() {
                break;
            }
            counts.records_in = batch.records.len() as u64;
            let dropped_before = tally.dropped;
            let fields = stage.fields(batch, &mut parsed, &self.reader);
            let mut next_origin = Vec::with_capacity(origin.len());
            let mut next_parsed = None;
            let next = match stage.kind {
                PluginKind::Filter => {
                    let verdicts = stage.timed(|code| code.filter(batch, &fields));
                    if verdicts.iter().all(|v| *v == Verdict::Keep) {
                        counts.records_out = counts.records_in;
                        continue;
                    }
                    let mut kept = Vec::with_capacity(verdicts.len());
                    for (index, verdict) in verdicts.into_iter().enumerate() {
                        match verdict {
                            Verdict::Keep => {
                                kept.push(index_u32(index));
                                next_origin.push(origin[index]);
                            }
                            Verdict::Drop => tally.dropped += 1,
                            Verdict::Failed(failure) => dead
                                .push(stage.fail(source.record(origin[index] as usize), failure)),
                        }
                    }
                    next_parsed = parsed.as_ref().map(|parsed| parsed.select(&kept));
                    batch.select(&kept)
                }
                PluginKind::Transform => {
                    // Outputs that extend their input (enrichment) are
                    // parsed only where they differ, while the input's
                    // fields are at hand; other outputs wait for a stage
                    // that reads them.
                    if stage.read_later {
                        next_parsed = parsed.as_ref().map(Parsed::empty_like);
                    }
                    let results = stage.timed(|code| code.transform(batch, &fields));
                    let mut next =
                        BatchBuilder::with_capacity(batch.records.len(), batch.data.len());
                    for (index, result) in results.into_iter().enumerate() {
                        let outputs = match result {
                            Ok(outputs) => outputs,
                            Err(failure) => {
                                dead.push(
                                    stage.fail(source.record(origin[index] as usize), failure),
                                );
                                continue;
                            }
                        };
                        if outputs.is_empty() {
                            tally.dropped += 1;
                        }
                        let input = batch.record(index);
                        for output in &outputs {
                            next.push(RecordRef {
                                key: output.key.as_deref(),
                                value: &output.value,
                                ..input
                            });
                            if let (Some(next), Some(parsed)) = (&mut next_parsed, &parsed) {
                                self.reader.push_extended(
                                    parsed,
                                    index,
                                    input.value,
                                    &output.value,
                                    next,
                                );
                            }
                            for (key, value) in &output.headers {
                                next.header(key, value);
                            }
                            next_origin.push(origin[index]);
                        }
                    }
                    next.build()
                }
                PluginKind::Aggregator => unreachable!("the aggregator is the last stage"),
            };
            counts.dropped = tally.dropped - dropped_before;
            counts.records_out = next_origin.len() as u64;
            current = Some(next);
            origin = next_origin;
            parsed = next_parsed;
        }
        let reaching_records = current.as_ref().unwrap_or(source).records.len() as u64;
        let reaching = Reaching {
            batch: current.as_ref().unwrap_or(source),
            parsed,
            origin: &origin,
        };
        let (aggregated, replayed, updates) = self.aggregate(source, reaching, state, dead);
        if let Some(index) = guarded {
            let stage = &self.stage(index).name;
            let ours = |letter: &&DeadLetter| letter.stage == *stage;
            let failure = if restarts(self) != before {
                Some(
                    dead[dead_before..]
                        .iter()
                        .filter(ours)
                        .rfind(|letter| letter.kind == Kind::Trapped)
                        .map_or_else(|| "it trapped".to_owned(), |letter| letter.reason.clone()),
                )
            } else {
                // Errors above the probation threshold count as a failure too.
                let rejected = dead[dead_before..]
                    .iter()
                    .filter(ours)
                    .filter(|letter| letter.kind == Kind::Rejected)
                    .count();
                (rejected >= PROBATION_MIN_REJECTED && rejected * 2 > source.records.len()).then(
                    || {
                        format!(
                            "it rejected {rejected} of {} records in one batch (more than half)",
                            source.records.len()
                        )
                    },
                )
            };
            if let Some(reason) = failure {
                dead.truncate(dead_before);
                return Err(ProbationFailed(reason));
            }
        }
        for (partition, key, folded) in updates {
            state.update(partition, &key, folded);
        }
        (tally.aggregated, tally.replayed) = (aggregated, replayed);
        tally.dead = (dead.len() - dead_before) as u64;
        for (stage, counts) in self.stages.iter().zip(counts) {
            stage.metrics.add(counts);
        }
        self.aggregator.metrics.add(Counts {
            records_in: reaching_records,
            records_out: aggregated,
            dropped: 0,
        });
        Ok(tally)
    }

    /// Groups `batch` by (partition, key), runs the aggregator over the
    /// groups, and folds the results into `state`. Returns how many records
    /// went into state, how many were skipped as already applied, and the
    /// state updates (applied by the caller).
    fn aggregate(
        &mut self,
        source: &Batch,
        reaching: Reaching<'_>,
        state: &mut KeyedState,
        dead: &mut Vec<DeadLetter>,
    ) -> (u64, u64, Vec<Update>) {
        let Reaching {
            batch,
            mut parsed,
            origin,
        } = reaching;
        if !self.aggregator.columns.is_empty() && parsed.is_none() {
            parsed = Some(self.reader.parse(batch));
        }
        let stage = &self.aggregator;
        // Group ids in order of first appearance; records keep their order within a group.
        let mut ids: HashMap<(i32, Cow<'_, [u8]>), u32> = HashMap::new();
        let mut keys: Vec<(i32, Cow<'_, [u8]>)> = Vec::new();
        let mut order: Vec<(u32, u32)> = Vec::with_capacity(batch.records.len());
        // Stream time moves with every record, keyed or not: once per partition per batch.
        let mut stream_time: Vec<(i32, i64)> = Vec::new();
        let mut replayed = 0;
        for (index, &source_index) in origin.iter().enumerate() {
            let record = batch.record(index);
            match stream_time.iter_mut().find(|(p, _)| *p == record.partition) {
                Some(slot) => slot.1 = slot.1.max(record.timestamp),
                None => stream_time.push((record.partition, record.timestamp)),
            }
            let key = match key_of(record, self.key_field.as_deref()) {
                Ok(key) => key,
                Err((code, reason)) => {
                    dead.push(DeadLetter::malformed(
                        source.record(source_index as usize),
                        &stage.name,
                        code,
                        reason,
                    ));
                    continue;
                }
            };
            let id = *ids
                .entry((record.partition, key.clone()))
                .or_insert_with(|| {
                    keys.push((record.partition, key));
                    index_u32(keys.len() - 1)
                });
            order.push((id, index_u32(index)));
        }
        for (partition, timestamp) in stream_time {
            state.observe(partition, timestamp);
        }
        if order.is_empty() {
            return (0, replayed, Vec::new());
        }
        order.sort_by_key(|&(id, _)| id);

        // The records in group order (each group's events side by side).
        let mut grouped: Vec<u32> = Vec::with_capacity(order.len());
        let mut grouped_origin = Vec::with_capacity(order.len());
        let mut groups: Vec<Group> = Vec::with_capacity(keys.len());
        // Per group: its partition, newest event time and newest offset.
        let mut newest: Vec<(i32, i64, i64)> = Vec::with_capacity(keys.len());
        for run in order.chunk_by(|a, b| a.0 == b.0) {
            let (partition, key) = &keys[run[0].0 as usize];
            let previous = state.get(*partition, key);
            let done = previous.map_or(i64::MIN, |held| held.applied);
            // A record the key's state already holds (read again after a
            // restart or a rebalance) is skipped: nothing counts twice.
            let fresh = |&&(_, index): &&(u32, u32)| batch.records[index as usize].offset > done;
            let skipped = run.len() - run.iter().filter(fresh).count();
            replayed += skipped as u64;
            if skipped == run.len() {
                continue;
            }
            // State another version of the aggregator wrote is migrated first.
            let prior = match previous {
                None => None,
                Some(held) if held.version == self.state_version => Some(held.state.to_vec()),
                Some(held) => match self.aggregator.worker.migrate(held.version, held.state) {
                    Ok(state) => Some(state),
                    Err(failure) => {
                        let failure = Failure::Trapped(format!(
                            "cannot migrate the key's state from version {}: {failure}",
                            held.version
                        ));
                        for &(_, index) in run.iter().filter(fresh) {
                            dead.push(self.aggregator.fail(
                                source.record(origin[index as usize] as usize),
                                failure.clone(),
                            ));
                        }
                        continue;
                    }
                },
            };
            let first = index_u32(grouped.len());
            let (mut latest, mut applied) = (i64::MIN, i64::MIN);
            for &(_, index) in run.iter().filter(fresh) {
                let record = &batch.records[index as usize];
                latest = latest.max(record.timestamp);
                applied = applied.max(record.offset);
                grouped.push(index);
                grouped_origin.push(origin[index as usize]);
            }
            groups.push(Group {
                key: key.to_vec(),
                state: prior,
                first,
                count: index_u32(grouped.len()) - first,
            });
            newest.push((*partition, latest, applied));
        }
        let fields = parsed.as_ref().map_or_else(no_fields, |parsed| {
            parsed.select(&grouped).project(&self.aggregator.columns)
        });
        let grouped = batch.select(&grouped);
        let results = self
            .aggregator
            .timed(|code| code.aggregate(&grouped, &fields, &groups));

        let stage = &self.aggregator;
        let mut aggregated = 0;
        let mut updates = Vec::with_capacity(groups.len());
        for ((group, result), (partition, latest, applied)) in
            groups.iter().zip(results).zip(newest)
        {
            let first = group.first as usize;
            let events = first..first + group.count as usize;
            if let Some(row) = &result.row
                && let Err(error) = self.schema.check(row)
            {
                // The plugin broke its own schema: none of the group's
                // events count, and each says why.
                let failure = Failure::Trapped(format!(
                    "its output row does not fit its output schema: {error}"
                ));
                for index in events {
                    dead.push(stage.fail(
                        source.record(grouped_origin[index] as usize),
                        failure.clone(),
                    ));
                }
                continue;
            }
            let went_through = (group.count as usize).saturating_sub(result.failures.len());
            aggregated += went_through as u64;
            for (index, failure) in result.failures {
                dead.push(stage.fail(source.record(grouped_origin[index] as usize), failure));
            }
            if group.state.is_none() && group.count > 0 && went_through == 0 {
                // A new key none of whose events went through has no state
                // and no row: it has not begun.
                continue;
            }
            if let Some(new_state) = result.state {
                let folded = Folded {
                    state: new_state,
                    row: result.row,
                    applied,
                    last_event: latest,
                };
                updates.push((partition, group.key.clone(), folded));
            }
        }
        (aggregated, replayed, updates)
    }
}

/// The records that reach the aggregator: their batch, their fields if a
/// stage already parsed them, and for each the source record it came from.
struct Reaching<'a> {
    batch: &'a Batch,
    parsed: Option<Parsed>,
    origin: &'a [u32],
}

/// Why `value` is not a JSON object, for its dead letter (the source's
/// format is `json`; the parse found it is not).
fn not_a_json_object(value: &[u8]) -> String {
    if value.iter().all(u8::is_ascii_whitespace) {
        return "the value is empty; the source's format is `json`".to_owned();
    }
    if let Err(error) = std::str::from_utf8(value) {
        return format!("the value is not UTF-8, so not JSON: {error}");
    }
    let mut json = jiter::Jiter::new(value);
    match json.next_skip().and_then(|()| json.finish()) {
        Err(error) => format!("the value is not valid JSON: {}", error.description(&json)),
        Ok(()) => "the value is JSON but not an object; the source's format is `json`".to_owned(),
    }
}

/// The state key of `record`: its Kafka key, or the value's `field` (a
/// JSON string or number). Keys must be UTF-8: the sinks write them as text.
fn key_of<'a>(
    record: RecordRef<'a>,
    field: Option<&str>,
) -> Result<Cow<'a, [u8]>, (&'static str, String)> {
    let key = match field {
        None => Cow::Borrowed(record.key.ok_or_else(|| {
            (
                "missing-key",
                "the record has no key, and the aggregator groups by the record key".to_owned(),
            )
        })?),
        Some(field) => {
            let value: serde_json::Value = serde_json::from_slice(record.value)
                .map_err(|error| ("not-json", format!("the value is not JSON: {error}")))?;
            match value.get(field) {
                Some(serde_json::Value::String(text)) => Cow::Owned(text.clone().into_bytes()),
                Some(serde_json::Value::Number(number)) => {
                    Cow::Owned(number.to_string().into_bytes())
                }
                Some(serde_json::Value::Null) | None => {
                    return Err((
                        "missing-key",
                        format!("the value has no `{field}`, the field that keys the state"),
                    ));
                }
                Some(other) => {
                    return Err((
                        "wrong-key-type",
                        format!(
                            "`{field}` keys the state, so it must be a string or a number, not {other}"
                        ),
                    ));
                }
            }
        }
    };
    check_key(&key)?;
    Ok(key)
}

/// Whether `key` can key state: the sinks write keys as text, so it must be
/// non-empty UTF-8 without NUL (PostgreSQL text cannot hold it). The error
/// is a dead letter's code and reason.
pub fn check_key(key: &[u8]) -> Result<(), (&'static str, String)> {
    if key.is_empty() {
        return Err(("missing-key", "the key is empty".to_owned()));
    }
    if std::str::from_utf8(key).is_err() {
        return Err((
            "key-not-utf8",
            "the key is not UTF-8 text, which the sinks need".to_owned(),
        ));
    }
    if key.contains(&0) {
        return Err((
            "key-not-text",
            "the key holds a NUL character, which PostgreSQL text cannot store".to_owned(),
        ));
    }
    Ok(())
}

fn index_u32(value: usize) -> u32 {
    u32::try_from(value).expect("a batch holds fewer than 2^32 records")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_why_a_value_is_not_a_json_object() {
        assert_eq!(
            not_a_json_object(b" "),
            "the value is empty; the source's format is `json`"
        );
        assert_eq!(
            not_a_json_object(b"[1, 2]"),
            "the value is JSON but not an object; the source's format is `json`"
        );
        assert!(
            not_a_json_object(b"{\"a\": \"\xff\"}").starts_with("the value is not UTF-8"),
            "{}",
            not_a_json_object(b"{\"a\": \"\xff\"}")
        );
        let truncated = not_a_json_object(br#"{"a": "#);
        assert!(
            truncated.starts_with("the value is not valid JSON: EOF while parsing a value"),
            "{truncated}"
        );
    }
}
