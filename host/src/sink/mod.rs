//! Where results go.
//!
//! - [`schema`]: the output row's columns, read from the aggregator's Avro schema.
//! - [`postgres`]: upserts into a PostgreSQL table weir creates and widens.

pub mod postgres;
pub mod schema;

pub use postgres::{PostgresError, PostgresSink, quote_ident};
pub use schema::{Column, ColumnType, RowSchema, SchemaError};
