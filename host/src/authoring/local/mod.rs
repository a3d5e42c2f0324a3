//! `weir plugin test`: one plugin over a JSON Lines file, with no Kafka and
//! no database. Records go through the same code a pipeline runs (the host's
//! parse, the worker with its trap isolation, and for aggregators the chain
//! with host-owned keyed state), in batches of a pipeline's size. Output:
//!
//! - a filter: the values it kept, one per line;
//! - a transform: the values it emitted, one per line;
//! - an aggregator: each key's last row, `{"key": ..., "row": {...}}` with
//!   the columns in output-schema order, keys sorted; optionally each key's
//!   final state (`--state`).
//!
//! Dead letters are counted, the first few printed, all of them written with
//! `--dead-letters`. `--expect FILE` compares the output with a file, line
//! by line, which makes a plugin's own test one command.
//!
//! # Layout
//!
//! - `args`: the command's arguments, completed from a plugin folder;
//! - `context`: the plugin's name, configuration and lookup tables;
//! - `run`: the command, reading the input in batches;
//! - `runner`: the plugin over those batches, as a pipeline runs it;
//! - `report`: the output and dead letters written, the summary printed,
//!   the output compared with `--expect`;
//! - `json`: values and rows as the JSON lines of the output.

mod args;
mod context;
mod json;
mod report;
mod run;
mod runner;

pub use args::TestArgs;
pub use json::row_json;
pub use run::{FIRST_TIMESTAMP, Summary, run, run_in};

pub(super) use context::{config_json, plugin_name};
