//! Where results go.
//!
//! - [`schema`]: the output row's columns, read from the aggregator's Avro schema.
//! - [`postgres`]: upserts into a PostgreSQL table weir creates and widens.
//! - [`kafka`]: Avro rows in the Confluent wire format, with [`registry`],
//!   the schema registry client.

pub mod kafka;
pub mod postgres;
pub mod registry;
pub mod schema;

pub use kafka::{KafkaSink, KafkaSinkError};
pub use postgres::{PostgresError, PostgresSink, quote_ident};
pub use registry::{RegistryClient, RegistryError};
pub use schema::{Column, ColumnType, RowSchema, SchemaError};
