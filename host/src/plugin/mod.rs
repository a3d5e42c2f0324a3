//! Plugins: the WIT contract's host side and the runtime that runs them.
//!
//! - [`bindings`]: the one `bindgen!` of the contract, per world.
//! - [`batch`]: building the batches that cross the boundary.
//! - [`fields`]: the host's one parse of each record, for the fields plugins read.
//! - [`runtime`]: the engine, loading (compile, check world and version,
//!   pre-instantiate).
//! - [`code`]: what runs a stage (a [`Worker`], or native code for the benchmark).
//! - [`worker`]: one instance per worker with its limits; trap isolation
//!   (with `instance`, making and arming instances, and `transformed`,
//!   reading a transform's output buffer).
//! - [`imports`]: the host imports (logging, config, lookup, metrics) and WASI.
//! - [`context`], [`limits`], [`capabilities`]: what a stage hands its
//!   instances (the real clocks and random source only if granted).
//! - [`error`]: load errors and per-record failures (rejections vs traps).

pub mod batch;
pub mod bindings;
mod budget;
pub mod cache;
pub mod capabilities;
pub mod code;
pub mod context;
pub mod error;
pub mod fields;
pub mod imports;
mod instance;
pub mod limits;
pub mod runtime;
mod stderr;
pub mod transformed;
pub mod worker;

pub use batch::{BatchBuilder, BatchExt, RecordRef, slice};
pub use bindings::aggregating::Group;
pub use bindings::types::{Batch, Fields, PluginError, Value};
pub use capabilities::{Capabilities, Capability};
pub use code::{NativeStage, NativeStages, StageCode};
pub use context::{LiveTable, LookupTables, MetricNames, StageContext};
pub use error::{Failure, LoadError};
pub use fields::{FieldsExt, Parsed, Reader, no_fields, read};
pub use limits::StageLimits;
pub use runtime::{
    CONTRACT_VERSION, Plugin, PluginKind, Runtime, RuntimeOptions, UnknownProfiler, sha256_hex,
};
pub use worker::{GroupResult, OutputRecord, Verdict, Worker};
