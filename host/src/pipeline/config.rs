//! What a pipeline file says: serde types, one per table of the file, each
//! field documented. Parsing only checks shapes and types; the meaning is
//! checked by [`super::validate`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::plugin::{Capability, StageLimits};

/// A pipeline file (`pipelines/*.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The pipeline's name: labels its logs and metrics, and names its
    /// consumer group and dead-letter topic by default.
    pub name: Spanned<String>,
    /// Where records come from.
    pub source: SourceConfig,
    /// How records are grouped into batches.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Reference data loaded by the host for enrichment stages.
    #[serde(default)]
    pub lookups: Vec<LookupConfig>,
    /// The plugins records go through, in order.
    pub stages: Vec<StageConfig>,
    /// Where results go.
    pub sinks: SinksConfig,
    /// Where records that cannot be processed go.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
}

/// The Kafka topic a pipeline reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The topic.
    pub topic: Spanned<String>,
    /// The consumer group (default: `weir-<pipeline name>`).
    pub group: Option<Spanned<String>>,
    /// How record values are encoded.
    #[serde(default)]
    pub format: Format,
    /// Values larger than this many bytes are dead-lettered (default 1 000 000,
    /// the largest a default Kafka topic, and so the dead-letter topic, takes).
    pub max_record_bytes: Option<Spanned<u64>>,
    /// How far ahead of weir's clock a record's timestamp may move stream
    /// time (default `1m`): a record dated later counts as dated now plus
    /// this, so one bad clock cannot make every key idle.
    #[serde(default, with = "humantime_serde::option")]
    pub max_clock_skew: Option<Duration>,
}

impl SourceConfig {
    /// The largest value the source takes, in bytes.
    pub fn max_record_bytes(&self) -> u64 {
        self.max_record_bytes
            .as_ref()
            .map_or(1_000_000, |bytes| *bytes.get_ref())
    }
}

/// Value encodings a source understands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON objects; values that are not are dead-lettered before any stage.
    #[default]
    Json,
    /// Any bytes, passed to the plugins as they are.
    Bytes,
    /// Avro in the Confluent wire format (a zero byte, the writer's schema
    /// id, the datum), decoded with the writer's schema from the schema
    /// registry into the JSON the plugins read.
    Avro,
}

/// Batching.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// The most records in one batch (1 to 65 536).
    pub max_records: Spanned<u64>,
    /// The longest a batch waits to fill (for example `50ms`).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// How often aggregators send their changed rows to the sinks.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: Spanned::new(0..0, 512),
            max_wait: Duration::from_millis(50),
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// A lookup table: rows keyed by one column, from PostgreSQL, a file, or
/// a (compacted) Kafka topic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The table's name, as stages and plugins refer to it.
    pub name: Spanned<String>,
    /// A query run against the pipeline's PostgreSQL database.
    pub query: Option<Spanned<String>>,
    /// A JSON Lines file (relative to the pipeline file).
    pub file: Option<Spanned<PathBuf>>,
    /// A topic whose records are the rows, keyed by their Kafka key.
    pub topic: Option<Spanned<String>>,
    /// The column (or JSON field) rows are keyed by (`query` and `file`).
    pub key: Option<Spanned<String>>,
    /// How often a `query` table is read again (never, if left out).
    #[serde(default, with = "humantime_serde")]
    pub refresh: Option<Duration>,
}

/// One stage: a plugin and what it is given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// The stage's name (logs, metrics, dead-letter headers).
    pub name: Spanned<String>,
    /// The plugin's component file (relative to the pipeline file).
    pub plugin: Spanned<PathBuf>,
    /// The plugin's configuration, handed to it as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Resource limits of each plugin instance.
    #[serde(default)]
    pub limits: StageLimits,
    /// Lookup tables the plugin may read.
    #[serde(default)]
    pub lookups: Vec<Spanned<String>>,
    /// What the plugin may observe beyond its input: `clock` (the real
    /// clocks), `random` (the real random source). Without them it reads
    /// replayable ones, so a replay gives the same output.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Aggregators: the JSON field that keys the state (default: the Kafka
    /// record key).
    pub key_field: Option<Spanned<String>>,
    /// Aggregators: state of a key idle this long is evicted (its last row
    /// stays in the sinks). For example `30m`.
    #[serde(default, with = "humantime_serde::option")]
    pub idle_timeout: Option<Duration>,
    /// Aggregators: the most keys the pipeline holds state for (default
    /// 10 000 000); events of new keys past it are dead-lettered
    /// (`state-full`) until keys are evicted.
    pub max_keys: Option<Spanned<u64>>,
}

/// The sinks; at least one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Avro to Kafka, in the Confluent wire format.
    pub kafka: Option<KafkaSinkConfig>,
    /// Upserts to a PostgreSQL table.
    pub postgres: Option<PostgresSinkConfig>,
    /// Rows as JSON Lines appended to a file.
    pub file: Option<FileSinkConfig>,
}

/// Rows as JSON Lines appended to a file: `{"key": ..., "row": {...}}`
/// per changed key and flush (the newest line of a key is its row).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file (relative to the pipeline file's folder); it and its
    /// folder are created when missing, and appended to when present.
    pub path: Spanned<PathBuf>,
}

/// Avro rows to a Kafka topic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The topic.
    pub topic: Spanned<String>,
    /// The schema registry subject (default: `<topic>-value`).
    pub subject: Option<String>,
}

/// Upserts to a PostgreSQL table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// The table (created by weir's migrations when missing).
    pub table: Spanned<String>,
    /// The primary-key column holding the aggregate's key.
    #[serde(default = "default_key_column")]
    pub key_column: Spanned<String>,
}

fn default_key_column() -> Spanned<String> {
    Spanned::new(0..0, "SESSION_ID".to_owned())
}

/// The dead-letter topic.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// The topic (default: `<pipeline name>.dlq`).
    pub topic: Option<Spanned<String>>,
}
