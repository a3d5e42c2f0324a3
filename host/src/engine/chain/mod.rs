//! A pipeline's stages run over one batch: filters and transforms in order,
//! then the chain's [`End`]: an aggregator over the records grouped by key,
//! its results folded into the host-owned state, or, without one, the
//! records as they are, for the sinks. Records that fail anywhere become
//! dead letters carrying the record as it arrived from the source.

use std::sync::Arc;

use self::aggregate::Aggregated;
use self::flight::InFlight;
use self::stage::Counts;
use super::state::{Folded, KeyedState};
use crate::plugin::{Batch, BatchBuilder, Group, PluginKind, Reader, no_fields};
use crate::sink::RowSchema;
use crate::sink::{DeadLetter, Kind};

mod aggregate;
mod flight;
mod keys;
mod stage;
mod values;

pub use self::keys::check_key;
pub use self::stage::Stage;
pub use self::values::{AvroValues, Unreadable, Values};

/// On probation, a batch in which the new version rejects more than half
/// of the records, and at least this many, counts as a failure.
const PROBATION_MIN_REJECTED: usize = 8;

/// A state update the aggregator computed: partition, key, result.
type Update = (i32, Vec<u8>, Folded);

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
    /// Records dated further ahead of the wall clock than `max_clock_skew`:
    /// they moved stream time only to the clock plus the skew.
    pub ahead: u64,
    /// Records that passed every stage of a chain without an aggregator:
    /// they go to the sinks as they are.
    pub emitted: u64,
}

/// The stages of a pipeline, as one shard runs them.
pub struct Chain {
    /// The filters and transforms, in order.
    stages: Vec<Stage>,
    /// Where the records that pass them go.
    end: End,
    /// Every field the stages read: each record is parsed once for all of them.
    reader: Reader,
    /// How the source's values are read: `json` values are checked by the
    /// chain's one parse of each record (the parse that finds the stages'
    /// fields), `avro` values decoded into JSON first.
    values: Values,
    /// What reached the end of an [`End::Emit`] chain since the last
    /// [`Chain::take_emitted`].
    emitted: Vec<Batch>,
}

/// Where the records that pass a chain's filters and transforms go.
pub enum End {
    /// Into keyed state, by an aggregator whose changed rows the sinks write.
    Aggregate(Box<Aggregating>),
    /// To the sinks as they are: a pipeline without an aggregator.
    Emit,
    /// To the repartition topic, keyed for the aggregator of the second
    /// hop: the first hop of a re-keyed pipeline (see [`crate::engine::origin`]).
    Repartition(Rekey),
}

/// How the first hop of a re-keyed pipeline keys its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekey {
    /// The JSON field the aggregator is keyed by.
    pub field: String,
    /// The aggregator's stage (it names the dead letters of records
    /// without a valid key).
    pub stage: String,
}

/// How an aggregator tells the records its state already holds (read
/// again after a crash or a rebalance) from new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replays {
    /// By offset: the aggregator reads the source topic.
    ByOffset,
    /// By origin header: the aggregator reads a repartition topic (see
    /// [`crate::engine::origin`]); records are keyed by their Kafka key.
    ByOrigin,
}

/// An aggregator at the end of a chain.
pub struct Aggregating {
    stage: Stage,
    /// The JSON field keying the state (the record key when `None`).
    key_field: Option<String>,
    /// How records already held are told apart.
    replays: Replays,
    /// The aggregator's output schema.
    schema: Arc<RowSchema>,
    /// The aggregator's state version.
    state_version: u32,
    /// Whether a full state (`max_keys`) was logged already.
    warned_full: bool,
}

impl Aggregating {
    /// `stage`, keyed by `key_field` (the record key when `None`), whose
    /// rows must fit `schema` and whose state is of `state_version`.
    pub fn new(
        stage: Stage,
        key_field: Option<String>,
        schema: Arc<RowSchema>,
        state_version: u32,
    ) -> Self {
        debug_assert_eq!(stage.kind, PluginKind::Aggregator);
        Self {
            stage,
            key_field,
            replays: Replays::ByOffset,
            schema,
            state_version,
            warned_full: false,
        }
    }

    /// The aggregator of the second hop of a re-keyed pipeline: it reads a
    /// repartition topic, keyed by the Kafka key, and skips records by
    /// their origin.
    pub fn behind_repartition(mut self) -> Self {
        self.key_field = None;
        self.replays = Replays::ByOrigin;
        self
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
                match self.stage.worker.migrate(held.version, held.state) {
                    Ok(prior) => prior,
                    Err(failure) => {
                        tracing::warn!(
                            stage = %self.stage.name,
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
        let results = self.stage.worker.aggregate(&empty, &no_fields(), &groups);
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
}

impl End {
    /// The aggregator's stage, if the chain ends in one.
    fn stage(&self) -> Option<&Stage> {
        match self {
            End::Aggregate(aggregating) => Some(&aggregating.stage),
            End::Emit | End::Repartition(_) => None,
        }
    }

    fn stage_mut(&mut self) -> Option<&mut Stage> {
        match self {
            End::Aggregate(aggregating) => Some(&mut aggregating.stage),
            End::Emit | End::Repartition(_) => None,
        }
    }
}

impl Chain {
    /// A chain of `stages` (filters and transforms) ending in `end`, over
    /// values read as `values` says.
    pub fn new(stages: Vec<Stage>, end: End, values: Values) -> Self {
        debug_assert!(stages.iter().all(|s| s.kind != PluginKind::Aggregator));
        let mut chain = Self {
            stages,
            end,
            reader: Reader::default(),
            values,
            emitted: Vec::new(),
        };
        chain.read_fields();
        chain
    }

    /// The records that reached the end of an [`End::Emit`] chain since
    /// the last call, batch by batch.
    pub fn take_emitted(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.emitted)
    }

    /// The bytes of the records [`Chain::take_emitted`] would take.
    pub fn emitted_bytes(&self) -> usize {
        self.emitted.iter().map(|batch| batch.data.len()).sum()
    }

    /// Gathers the fields every stage reads into one [`Reader`] and tells
    /// each stage where its own are, and whether a later stage reads any.
    fn read_fields(&mut self) {
        // The first hop of a re-keyed pipeline finds its key field in the same parse.
        let end_reads: Vec<String> = match &self.end {
            End::Repartition(rekey) => vec![rekey.field.clone()],
            End::Aggregate(_) | End::Emit => Vec::new(),
        };
        let stages = || self.stages.iter().chain(self.end.stage());
        let reader = Reader::new(
            stages()
                .map(|stage| stage.worker.reads())
                .chain([end_reads.as_slice()]),
        );
        let columns: Vec<Vec<usize>> = stages()
            .map(|stage| reader.columns(stage.worker.reads()))
            .collect();
        let mut read_later = !end_reads.is_empty();
        for (stage, columns) in self
            .stages
            .iter_mut()
            .chain(self.end.stage_mut())
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
        let replaced = match (aggregator, &mut self.end) {
            (Some((schema, state_version)), End::Aggregate(aggregating)) => {
                aggregating.schema = schema;
                aggregating.state_version = state_version;
                std::mem::replace(&mut aggregating.stage, stage)
            }
            _ => std::mem::replace(&mut self.stages[index], stage),
        };
        self.read_fields();
        replaced
    }

    /// Makes a trap in stage `index` fail its whole call (on probation).
    pub fn set_fail_fast(&mut self, index: usize, fail_fast: bool) {
        let stage = match self.stages.get_mut(index) {
            Some(stage) => stage,
            None => self.end.stage_mut().expect("a stage of the chain"),
        };
        stage.set_fail_fast(fail_fast);
    }

    /// The stage at `index` (the aggregator after the filters and transforms).
    pub fn stage(&self, index: usize) -> &Stage {
        self.stages
            .get(index)
            .or_else(|| self.end.stage())
            .expect("a stage of the chain")
    }

    /// Gives `keys` (a swap's stale keys) the running aggregator's state and
    /// row without new events (see [`Aggregating::refresh`]). Returns how
    /// many were refreshed.
    pub fn refresh(&mut self, keys: &[(i32, Vec<u8>)], state: &mut KeyedState) -> usize {
        match &mut self.end {
            End::Aggregate(aggregating) => aggregating.refresh(keys, state),
            End::Emit | End::Repartition(_) => 0,
        }
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
        let dead_before = dead.len();
        let mut tally = Tally::default();
        let mut flight = InFlight::new(source);
        match &mut self.values {
            Values::Json => flight.check_json(&self.reader, dead),
            Values::Avro(avro) => flight.decode_avro(avro, &self.reader, dead),
            Values::Bytes => {}
        }
        let mut counts = vec![Counts::default(); self.stages.len()];
        for (stage, counts) in self.stages.iter_mut().zip(&mut counts) {
            if flight.batch().records.is_empty() {
                break;
            }
            *counts = flight.run(stage, &self.reader, &mut tally, dead);
        }
        let reaching = flight.batch().records.len() as u64;
        let (aggregated, emitted) = match &mut self.end {
            End::Aggregate(aggregating) => (
                aggregating.aggregate(&self.reader, flight.reaching(), state, dead),
                None,
            ),
            End::Emit => {
                let last = self.stages.last().map_or("source", |stage| &stage.name);
                let emitted = (reaching > 0).then(|| flight.into_emitted(last, dead));
                (Aggregated::default(), emitted)
            }
            End::Repartition(rekey) => {
                let emitted = (reaching > 0).then(|| {
                    flight.rekey(rekey, &self.reader, dead);
                    flight.into_emitted(&rekey.stage, dead)
                });
                (Aggregated::default(), emitted)
            }
        };
        if let Some(index) = guarded {
            let trapped = restarts(self) != before;
            let letters = &dead[dead_before..];
            if let Some(reason) = self.probation_failure(index, trapped, letters, source) {
                dead.truncate(dead_before);
                return Err(ProbationFailed(reason));
            }
        }
        for (partition, key, folded) in aggregated.updates {
            state.update(partition, &key, folded);
        }
        tally.aggregated = aggregated.records;
        tally.replayed = aggregated.replayed;
        tally.ahead = aggregated.ahead;
        tally.dead = (dead.len() - dead_before) as u64;
        for (stage, counts) in self.stages.iter().zip(counts) {
            stage.metrics.add(counts);
        }
        match &self.end {
            End::Aggregate(aggregating) => aggregating.stage.metrics.add(Counts {
                records_in: reaching,
                records_out: aggregated.records,
                dropped: 0,
            }),
            End::Emit | End::Repartition(_) => {
                if let Some(batch) = emitted.filter(|batch| !batch.records.is_empty()) {
                    tally.emitted = batch.records.len() as u64;
                    self.emitted.push(batch);
                }
            }
        }
        Ok(tally)
    }

    /// Why stage `index`, on probation, failed the batch `source` whose dead
    /// letters are `letters`: it `trapped` (or failed records as trapped
    /// without a trap: rows that break its own schema), or it rejected more
    /// than half of the records (and at least [`PROBATION_MIN_REJECTED`]).
    fn probation_failure(
        &self,
        index: usize,
        trapped: bool,
        letters: &[DeadLetter],
        source: &Batch,
    ) -> Option<String> {
        let stage = &self.stage(index).name;
        let mut ours = letters.iter().filter(|letter| letter.stage == *stage);
        let trapped = trapped || ours.clone().any(|letter| letter.kind == Kind::Trapped);
        if trapped {
            return Some(
                ours.rfind(|letter| letter.kind == Kind::Trapped)
                    .map_or_else(|| "it trapped".to_owned(), |letter| letter.reason.clone()),
            );
        }
        let rejected = ours.filter(|letter| letter.kind == Kind::Rejected).count();
        let records = source.records.len();
        (rejected >= PROBATION_MIN_REJECTED && rejected * 2 > records).then(|| {
            format!("it rejected {rejected} of {records} records in one batch (more than half)")
        })
    }
}

fn index_u32(value: usize) -> u32 {
    u32::try_from(value).expect("a batch holds fewer than 2^32 records")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{BatchExt, Fields, RecordRef, StageCode, Verdict};
    use crate::sink::limits;

    /// Keeps the records whose value holds `keep`, drops the others.
    struct KeepMarked;

    impl StageCode for KeepMarked {
        fn reads(&self) -> &[String] {
            &[]
        }

        fn filter(&mut self, batch: &Batch, _fields: &Fields) -> Vec<Verdict> {
            (0..batch.records.len())
                .map(|index| {
                    let value = batch.record(index).value;
                    if value.windows(4).any(|w| w == b"keep") {
                        Verdict::Keep
                    } else {
                        Verdict::Drop
                    }
                })
                .collect()
        }
    }

    fn record<'a>(
        key: Option<&'a str>,
        value: &'a str,
        partition: i32,
        offset: i64,
    ) -> RecordRef<'a> {
        RecordRef {
            key: key.map(str::as_bytes),
            value: value.as_bytes(),
            timestamp: 1_000 + offset,
            partition,
            offset,
        }
    }

    #[test]
    fn an_avro_source_reaches_the_stages_as_json_and_what_cannot_be_read_is_dead_lettered() {
        let schema = r#"{"type":"record","name":"Mark","fields":[
            {"name":"mark","type":"string"},{"name":"n","type":"long"}]}"#;
        let parsed = apache_avro::Schema::parse_str(schema).unwrap();
        let framed = |id: u32, mark: &str, n: i64| {
            let mut record = apache_avro::types::Record::new(&parsed).unwrap();
            record.put("mark", mark);
            record.put("n", n);
            let mut value = vec![0];
            value.extend_from_slice(&id.to_be_bytes());
            value.extend(apache_avro::to_avro_datum(&parsed, record).unwrap());
            value
        };
        let tokio = tokio::runtime::Runtime::new().unwrap();
        let registry =
            crate::sink::registry::RegistryClient::new(&crate::connect::RegistryAccess::local())
                .unwrap();
        let unknown = Unreadable {
            code: "unknown-schema",
            message: "schema id 9 is not in the registry".to_owned(),
        };
        let avro = AvroValues::with_schemas(
            Arc::new(registry),
            tokio.handle().clone(),
            [
                (5, values::usable(5, schema).map(Arc::new)),
                (9, Err(unknown)),
            ],
        );
        let filter = Stage::native("test", "keep", PluginKind::Filter, Box::new(KeepMarked));
        let mut chain = Chain::new(vec![filter], End::Emit, Values::Avro(Box::new(avro)));
        let (kept, dropped, unknown) = (
            framed(5, "keep", 1),
            framed(5, "drop", 2),
            framed(9, "keep", 3),
        );
        let mut builder = BatchBuilder::default();
        for (offset, value) in [&kept, &dropped, &b"{\"keep\": 1}".to_vec(), &unknown]
            .into_iter()
            .enumerate()
        {
            builder.push(RecordRef {
                key: Some(b"k"),
                value,
                timestamp: 1_000,
                partition: 0,
                offset: offset as i64,
            });
            builder.header("trace", format!("t-{offset}").as_bytes());
        }
        let source = builder.build();
        let (mut state, mut dead) = (KeyedState::new(0), Vec::new());

        let tally = chain.process(&source, &mut state, &mut dead);

        assert_eq!((tally.emitted, tally.dropped, tally.dead), (1, 1, 2));
        let letters: Vec<_> = dead
            .iter()
            .map(|letter| (letter.offset, letter.stage.as_str(), letter.code.as_str()))
            .collect();
        assert_eq!(
            letters,
            [(2, "source", "not-avro"), (3, "source", "unknown-schema")]
        );
        // A dead letter carries the value as it arrived.
        assert_eq!(dead[1].value, unknown);
        let emitted = chain.take_emitted();
        let out = emitted[0].record(0);
        assert_eq!(
            (out.offset, std::str::from_utf8(out.value).unwrap()),
            (0, r#"{"mark":"keep","n":1}"#)
        );
        assert_eq!(emitted[0].headers_of(0)[0].value, b"t-0");
    }

    #[test]
    fn a_chain_without_an_aggregator_emits_what_its_last_stage_passed_on() {
        let filter = Stage::native("test", "keep", PluginKind::Filter, Box::new(KeepMarked));
        let mut chain = Chain::new(vec![filter], End::Emit, Values::Json);
        let mut builder = BatchBuilder::default();
        builder.push(record(Some("a"), r#"{"keep": 1}"#, 0, 10));
        builder.header("trace", b"t-1");
        builder.push(record(Some("b"), r#"{"drop": 1}"#, 0, 11));
        builder.push(record(None, "not json", 1, 7));
        builder.push(record(None, r#"{"keep": 2}"#, 1, 8));
        // Kept, but larger than a Kafka topic takes: a dead letter.
        let huge = format!(r#"{{"keep": "{}"}}"#, "x".repeat(limits::MAX_EMITTED_BYTES));
        builder.push(record(Some("h"), &huge, 1, 9));
        let source = builder.build();
        let (mut state, mut dead) = (KeyedState::new(0), Vec::new());

        let tally = chain.process(&source, &mut state, &mut dead);

        assert_eq!((tally.emitted, tally.dropped, tally.dead), (2, 1, 2));
        assert_eq!(dead[0].stage, "source");
        assert_eq!(
            (dead[1].stage.as_str(), dead[1].code.as_str()),
            ("keep", "too-large")
        );
        assert_eq!(dead[1].offset, 9);
        let emitted = chain.take_emitted();
        assert_eq!(emitted.len(), 1);
        let out = &emitted[0];
        let parts = |r: RecordRef<'_>| {
            (
                r.key.map(<[u8]>::to_vec),
                r.value.to_vec(),
                r.partition,
                r.offset,
                r.timestamp,
            )
        };
        let records: Vec<_> = (0..out.records.len())
            .map(|i| parts(out.record(i)))
            .collect();
        assert_eq!(
            records,
            [
                parts(record(Some("a"), r#"{"keep": 1}"#, 0, 10)),
                parts(record(None, r#"{"keep": 2}"#, 1, 8)),
            ]
        );
        let headers: Vec<_> = out
            .headers_of(0)
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_slice()))
            .collect();
        assert_eq!(headers, [("trace", b"t-1".as_slice())]);
        assert!(out.headers_of(1).is_empty());
        assert_eq!(chain.emitted_bytes(), 0, "taken");
        assert_eq!(state.len(), 0, "no state without an aggregator");
    }

    /// Counts each key's events; its row is the count.
    struct Counting;

    impl StageCode for Counting {
        fn reads(&self) -> &[String] {
            &[]
        }

        fn aggregate(
            &mut self,
            _batch: &Batch,
            _fields: &Fields,
            groups: &[Group],
        ) -> Vec<crate::plugin::GroupResult> {
            groups
                .iter()
                .map(|group| {
                    let before = group.state.as_deref().map_or(0, |state| {
                        u64::from_be_bytes(state.try_into().expect("eight bytes"))
                    });
                    let count = before + u64::from(group.count);
                    crate::plugin::GroupResult {
                        state: Some(count.to_be_bytes().to_vec()),
                        row: Some(vec![crate::plugin::Value::Long(count as i64)]),
                        failures: Vec::new(),
                    }
                })
                .collect()
        }
    }

    /// Makes each record two: one per item of its `items`, each keyed
    /// (by value) by the item's `category`.
    struct PerItem;

    impl StageCode for PerItem {
        fn reads(&self) -> &[String] {
            &[]
        }

        fn transform(
            &mut self,
            batch: &Batch,
            _fields: &Fields,
        ) -> Vec<Result<Vec<crate::plugin::OutputRecord>, crate::plugin::Failure>> {
            (0..batch.records.len())
                .map(|index| {
                    let value: serde_json::Value =
                        serde_json::from_slice(batch.record(index).value).unwrap_or_default();
                    let items = value["items"].as_array().cloned().unwrap_or_default();
                    Ok(items
                        .iter()
                        .map(|item| crate::plugin::OutputRecord {
                            key: None,
                            value: item.to_string().into_bytes(),
                            headers: Vec::new(),
                        })
                        .collect())
                })
                .collect()
        }
    }

    #[test]
    fn the_records_a_source_record_becomes_each_count_once_behind_a_repartition_topic() {
        let rekey = Rekey {
            field: "category".to_owned(),
            stage: "per-category".to_owned(),
        };
        let split = Stage::native("test", "items", PluginKind::Transform, Box::new(PerItem));
        // A `bytes` source: values are not checked as JSON before the stages.
        let mut first = Chain::new(vec![split], End::Repartition(rekey), Values::Bytes);
        let mut builder = BatchBuilder::default();
        let orders = [
            r#"{"items": [{"category": "books"}, {"category": "books"}, {"category": "games"}]}"#,
            r#"{"items": [{"category": "books"}, {"name": "no category"}]}"#,
        ];
        for (offset, value) in orders.iter().enumerate() {
            builder.push(record(Some("order"), value, 1, offset as i64));
        }
        let source = builder.build();
        let (mut none, mut dead) = (KeyedState::new(0), Vec::new());
        let tally = first.process(&source, &mut none, &mut dead);
        assert_eq!((tally.emitted, tally.dead), (4, 1));
        assert_eq!(dead[0].code, "missing-key");
        let written = first.take_emitted();
        let out = &written[0];
        let origins: Vec<(i64, u32)> = (0..out.records.len())
            .map(|index| {
                let origin = aggregate::origin_of(out, index).expect("an origin header");
                (origin.offset, origin.index)
            })
            .collect();
        // Each record's index among those its source record became.
        assert_eq!(origins, [(0, 0), (0, 1), (0, 2), (1, 0)]);

        let mut second = counting_behind_repartition();
        let mut state = KeyedState::new(1);
        // One batch cut between the two books of the first order, then
        // everything written again after a crash of the first hop.
        let all = read_back(&[out], 0);
        let tally = second.process(&all.select(&[0]), &mut state, &mut dead);
        assert_eq!(tally.aggregated, 1);
        let tally = second.process(&all.select(&[1, 2, 3]), &mut state, &mut dead);
        assert_eq!((tally.aggregated, tally.replayed), (3, 0));
        let tally = second.process(&read_back(&[out], 4), &mut state, &mut dead);
        assert_eq!((tally.aggregated, tally.replayed), (0, 4));
        let count = |key: &str| {
            let held = state.get(0, key.as_bytes()).expect("a key's state");
            u64::from_be_bytes(held.state.try_into().expect("eight bytes"))
        };
        assert_eq!((count("books"), count("games")), (3, 1));
    }

    /// The second hop of a pipeline re-keyed by `category`, counting.
    fn counting_behind_repartition() -> Chain {
        let schema = Arc::new(
            RowSchema::parse(
                r#"{"type": "record", "name": "Count", "fields": [{"name": "N", "type": "long"}]}"#,
            )
            .expect("a schema"),
        );
        let counting = Stage::native(
            "test",
            "per-category",
            PluginKind::Aggregator,
            Box::new(Counting),
        );
        let aggregating =
            Aggregating::new(counting, Some("category".to_owned()), schema, 1).behind_repartition();
        Chain::new(
            Vec::new(),
            End::Aggregate(Box::new(aggregating)),
            Values::Json,
        )
    }

    /// `records` as the second hop reads them from one repartition
    /// partition, from `offset` on (the first hop's key, value, headers).
    fn read_back(records: &[&Batch], offset: i64) -> Batch {
        let mut builder = BatchBuilder::default();
        let all = records
            .iter()
            .flat_map(|batch| (0..batch.records.len()).map(move |index| (batch, index)));
        for (at, (batch, index)) in all.enumerate() {
            let record = batch.record(index);
            builder.push(RecordRef {
                partition: 0,
                offset: offset + at as i64,
                ..record
            });
            for header in batch.headers_of(index) {
                builder.header(&header.key, &header.value);
            }
        }
        builder.build()
    }

    #[test]
    fn two_hops_through_a_repartition_topic_count_each_source_record_once() {
        let rekey = Rekey {
            field: "category".to_owned(),
            stage: "per-category".to_owned(),
        };
        let mut first = Chain::new(Vec::new(), End::Repartition(rekey), Values::Json);
        let mut builder = BatchBuilder::default();
        let values = [
            r#"{"category": "books"}"#,
            r#"{"category": "games"}"#,
            r#"{"category": 7}"#,
            r#"{"other": 1}"#,
            r#"{"category": "books"}"#,
        ];
        for (offset, value) in values.iter().enumerate() {
            builder.push(record(Some("session-1"), value, 2, 40 + offset as i64));
        }
        builder.header("trace", b"t");
        let source = builder.build();
        let (mut none, mut dead) = (KeyedState::new(0), Vec::new());
        let tally = first.process(&source, &mut none, &mut dead);
        assert_eq!((tally.emitted, tally.dead), (4, 1));
        assert_eq!(
            (
                dead[0].stage.as_str(),
                dead[0].code.as_str(),
                dead[0].offset
            ),
            ("per-category", "missing-key", 43)
        );
        let written = first.take_emitted();
        let out = &written[0];
        let keys: Vec<_> = (0..out.records.len())
            .map(|i| out.record(i).key.expect("keyed"))
            .collect();
        assert_eq!(keys, [&b"books"[..], b"games", b"7", b"books"]);
        let origin_of = |index| aggregate::origin_of(out, index).expect("an origin header");
        assert_eq!((origin_of(3).partition, origin_of(3).offset), (2, 44));
        assert_eq!(
            out.headers_of(3)[0].key,
            "trace",
            "the record's own headers go along"
        );

        let mut second = counting_behind_repartition();
        let mut state = KeyedState::new(1);
        // Written again after a crash of the first hop, right behind the
        // originals: the same batch holds both.
        let tally = second.process(&read_back(&[out, out], 100), &mut state, &mut dead);
        assert_eq!((tally.aggregated, tally.replayed), (4, 4));
        // And once more, in a later batch.
        let tally = second.process(&read_back(&[out], 108), &mut state, &mut dead);
        assert_eq!((tally.aggregated, tally.replayed), (0, 4));
        let count = |state: &KeyedState, key: &str| {
            let held = state.get(0, key.as_bytes()).expect("a key's state");
            u64::from_be_bytes(held.state.try_into().expect("eight bytes"))
        };
        let counts = ["books", "games", "7"].map(|key| count(&state, key));
        assert_eq!(counts, [2, 1, 1]);
        // A record weir's first hop did not write is refused.
        let mut stray = BatchBuilder::default();
        stray.push(record(Some("books"), r#"{"category": "books"}"#, 0, 200));
        let tally = second.process(&stray.build(), &mut state, &mut dead);
        assert_eq!((tally.aggregated, tally.dead), (0, 1));
        assert_eq!(dead.last().expect("a dead letter").code, "no-origin");
        assert_eq!(count(&state, "books"), 2);
    }
}
