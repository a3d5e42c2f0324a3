//! The oracle: what `session_stats` must compute, written from the
//! reference's definition (semantics.md §3) and sharing no code with weir
//! or its plugins.
//!
//! One definition, evaluated two ways, each where a test needs it:
//!
//! - [`sql`]: over raw events loaded into PostgreSQL, compared with the
//!   table and the Avro topic a real run wrote (the end-to-end tests);
//! - [`fold`]: the same columns as a plain fold over JSON values, for tests
//!   without a database (the plugin alone over a messy stream).
//!
//! `tests/session_stats.rs` checks that the two agree on a messy stream
//! (which events are bad, found by each its own way, and every session's
//! row), so neither drifts from the other.

pub mod fold;
pub mod messy;
pub mod sql;

pub use sql::{
    COLUMNS, check_avro, check_run, differences, differences_in, load_checked, load_raw,
    oracle_query, read_avro_with_python, read_topic,
};
