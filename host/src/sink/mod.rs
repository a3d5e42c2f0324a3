//! Where results go: every output of a pipeline is a [`Sink`], written by
//! delivery through one [`Sinks`].
//!
//! - [`output`]: the [`Sink`] interface, and what a flush hands the sinks.
//! - [`error`]: how a sink fails: bad data, an external failure, a bug.
//! - [`set`]: a pipeline's sinks as one, with their metrics.
//! - [`kafka`]: Avro rows in the Confluent wire format, with [`registry`],
//!   the schema registry client, and [`schema`], the rows' columns read
//!   from the aggregator's Avro schema.
//! - [`postgres`]: upserts into a PostgreSQL table weir creates and widens.
//! - [`kafka_records`]: a pipeline without an aggregator: its records, to
//!   a topic as they are.
//! - [`file`]: rows as JSON Lines in a file.
//! - [`dead_letter`]: records that could not be processed, to their topic.
//! - [`changelog`]: the aggregator's state changes, to its changelog topic.
//! - [`limits`]: the largest key, state, row and dead letter they all take.

pub mod changelog;
pub mod dead_letter;
pub mod error;
pub mod file;
pub mod kafka;
pub mod kafka_records;
pub mod limits;
pub mod output;
pub mod postgres;
pub mod registry;
pub mod schema;
pub mod set;

pub use changelog::{ChangelogRecord, ChangelogWriter};
pub use dead_letter::{DeadLetter, DeadLetterWriter, Kind, PluginRef};
pub use error::SinkError;
pub use file::FileSink;
pub use kafka::{KafkaSink, KafkaSinkError};
pub use kafka_records::KafkaRecordSink;
pub use output::{Phase, Records, Row, Rows, Shape, Sink};
pub use postgres::{PostgresError, PostgresSink, quote_ident};
pub use registry::{RegistryClient, RegistryError};
pub use schema::{Column, ColumnType, RowSchema, SchemaError};
pub use set::{Progress, Sinks};
