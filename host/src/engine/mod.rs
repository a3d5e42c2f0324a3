//! Running pipelines (`weir run`).
//!
//! The process ([`run`]) starts one Wasm runtime and the admin API, then
//! builds each pipeline from its plan ([`topology`]). One pipeline is, from
//! input to output:
//!
//! - [`source`]: one Kafka consumer in the pipeline's group, polled by one
//!   thread that checks records and batches them per shard; its context
//!   handles rebalances (restoring state from the [`changelog`]);
//! - [`shard`]: threads that each own some partitions, their plugin
//!   instances ([`chain`]) and those partitions' keyed [`state`], and that
//!   hand changed rows to delivery every flush interval;
//! - [`deliver`]: per shard, the task that writes its flushes to the sinks
//!   (rows, dead letters, then the state changes to the changelog:
//!   [`crate::sink`]), then commits the offsets they cover;
//! - [`swap`]: replacing a stage's plugin while the pipeline runs (checks,
//!   cut-over in every shard, probation, rollback);
//! - [`lookups`]: reference data loaded at start; [`stats`] and
//!   [`monitor`]: counters, the status line and the status page's figures.
//!
//! How the process runs (addresses, shards, admin) is a [`RunConfig`];
//! what can go wrong is in [`error`].
//!
//! Back-pressure runs the other way: a slow sink blocks delivery, which
//! blocks the shards' next flush, which blocks the source's hand-over.

pub mod chain;
pub mod changelog;
pub mod clock;
pub mod config;
pub mod deliver;
pub mod error;
pub mod lookups;
pub mod monitor;
pub mod origin;
mod reachable;
pub mod repartition;
pub mod run;
pub mod shard;
#[cfg(test)]
mod simulation;
pub mod source;
pub mod state;
pub mod stats;
pub mod swap;
pub mod topology;

pub use config::{AdminConfig, RunConfig};
pub use error::{RunError, TopologyError};
pub use run::{run, run_with};
pub use topology::aggregator_schema;
