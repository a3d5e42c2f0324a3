//! A pipeline as weir runs it: what a checked file means, in plain owned
//! values, defaults filled in and paths resolved. The engine reads only this.

use std::path::PathBuf;
use std::time::Duration;

use super::config::Format;
use super::hops::Hop;
use super::names::{ColumnName, Name, TableName, TopicName};
use crate::plugin::{Capabilities, StageLimits};

/// A checked pipeline, ready to build.
#[derive(Debug, Clone)]
pub struct PipelinePlan {
    /// The pipeline's name: labels its logs and metrics.
    pub name: Name,
    /// Where records come from.
    pub source: SourcePlan,
    /// How records are grouped into batches and rows into flushes.
    pub batch: BatchPlan,
    /// Reference data loaded at start.
    pub lookups: Vec<LookupPlan>,
    /// The stages, in order; at least one.
    pub stages: Vec<StagePlan>,
    /// Where rows go; at least one sink.
    pub sinks: SinksPlan,
    /// Where records that cannot be processed go.
    pub dead_letter_topic: TopicName,
    /// Which part of its pipeline this plan runs ([`PipelinePlan::into_hops`]).
    pub hop: Hop,
}

/// The topic a pipeline reads.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    /// The topic.
    pub topic: TopicName,
    /// The consumer group (`weir-<pipeline name>` unless the file names one).
    pub group: String,
    /// How values are encoded.
    pub format: Format,
    /// Values larger than this are dead-lettered.
    pub max_record_bytes: usize,
    /// How far ahead of the wall clock a record may move stream time.
    pub max_clock_skew: Duration,
}

/// Batching and flushing.
#[derive(Debug, Clone, Copy)]
pub struct BatchPlan {
    /// The most records in one batch (1 to 65 536).
    pub max_records: usize,
    /// The longest a batch waits to fill.
    pub max_wait: Duration,
    /// How often aggregators send their changed rows (never zero).
    pub flush_interval: Duration,
}

/// A lookup table.
#[derive(Debug, Clone)]
pub struct LookupPlan {
    /// Its name, as stages refer to it.
    pub name: Name,
    /// Where its rows come from.
    pub from: LookupFrom,
    /// How often the table is read again, replacing its rows (`None`: read
    /// once, at start).
    pub refresh: Option<Duration>,
}

/// Where a lookup table's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupFrom {
    /// A query against the pipeline's PostgreSQL database, its rows keyed
    /// by column `key`.
    Query {
        /// The SELECT.
        sql: String,
        /// The key column.
        key: String,
    },
    /// A JSON Lines file (resolved against the pipeline file's folder),
    /// its rows keyed by field `key`.
    File {
        /// The file.
        path: PathBuf,
        /// The key field.
        key: String,
    },
    /// A topic (compacted, as a table's changelog is): each record a row
    /// keyed by its Kafka key, a record without a value deleting its key;
    /// read to its end at start, then followed.
    Topic(TopicName),
}

/// One stage.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// The stage's name.
    pub name: Name,
    /// The plugin's component file (resolved against the pipeline file's folder).
    pub plugin: PathBuf,
    /// The plugin's configuration, as the JSON object it is handed.
    pub config_json: String,
    /// Resource limits of each instance.
    pub limits: StageLimits,
    /// The lookup tables it may read (each defined by the pipeline).
    pub lookups: Vec<Name>,
    /// The real clocks and random source, if granted.
    pub capabilities: Capabilities,
    /// Aggregators: the JSON field keying the state (`None`: the record key).
    pub key_field: Option<String>,
    /// Aggregators: state idle this long is evicted.
    pub idle_timeout: Option<Duration>,
    /// Aggregators: the most keys the pipeline holds state for (`None`:
    /// [`DEFAULT_MAX_KEYS`]).
    pub max_keys: Option<u64>,
}

/// The most keys an aggregator holds state for, unless its stage says.
pub const DEFAULT_MAX_KEYS: u64 = 10_000_000;

/// The sinks.
#[derive(Debug, Clone, Default)]
pub struct SinksPlan {
    /// Avro rows to a Kafka topic.
    pub kafka: Option<KafkaSinkPlan>,
    /// Upserts to a PostgreSQL table.
    pub postgres: Option<PostgresSinkPlan>,
    /// Rows as JSON Lines in a file.
    pub file: Option<FileSinkPlan>,
}

/// Rows as JSON Lines appended to a file.
#[derive(Debug, Clone)]
pub struct FileSinkPlan {
    /// The file (resolved against the pipeline file's folder).
    pub path: PathBuf,
}

/// Avro rows to a Kafka topic.
#[derive(Debug, Clone)]
pub struct KafkaSinkPlan {
    /// The topic.
    pub topic: TopicName,
    /// The registry subject the schema goes under (`<topic>-value` by default).
    pub subject: String,
}

/// Upserts to a PostgreSQL table.
#[derive(Debug, Clone)]
pub struct PostgresSinkPlan {
    /// The table.
    pub table: TableName,
    /// Its primary-key column, which holds the aggregate's key.
    pub key_column: ColumnName,
}

impl PipelinePlan {
    /// The stages' names, in order.
    pub fn stage_names(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().map(|stage| stage.name.as_str())
    }

    /// The last stage (a checked plan has at least one; the first hop of
    /// a re-keyed pipeline may have none).
    pub fn last_stage(&self) -> Option<&StagePlan> {
        self.stages.last()
    }
}
