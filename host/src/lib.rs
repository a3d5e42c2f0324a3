//! weir: a stream-processing host that runs user-supplied WebAssembly
//! components between Kafka and PostgreSQL.
//!
//! # Layout
//!
//! - [`admin`]: the admin API (status page, metrics, swaps) and its client.
//! - [`authoring`]: tools for plugin authors (`weir plugin test`, `inspect`).
//! - [`cli`]: the `weir` command line (arguments only; the work lives in the
//!   modules it calls).
//! - [`connect`]: how weir reaches Kafka, PostgreSQL and the registry
//!   (TLS, SASL, credentials), secrets that never print, the start check.
//! - [`dirs`]: weir's cache and source folders.
//! - [`engine`]: running pipelines (`weir run`): the topology that builds
//!   them, source, shards, state, delivery to the sinks, dead letters, swaps.
//! - [`generate`]: the e-commerce event generator (`weir generate`).
//! - [`kafka`]: Kafka clients: every setting, topics, a group's progress.
//! - [`pipeline`]: pipeline files, checked into plans (`weir validate`).
//! - [`plugin`]: the plugin contract's host side and the Wasm runtime.
//! - [`sink`]: where results go: Avro on Kafka, upserts to PostgreSQL.
//! - [`telemetry`]: logging set-up shared by every command.

#![deny(missing_docs)]

pub mod admin;
pub mod authoring;
pub mod cli;
pub mod connect;
pub mod dirs;
pub mod engine;
pub mod generate;
pub mod kafka;
pub mod pipeline;
pub mod plugin;
pub mod sink;
pub mod telemetry;
