//! One pipeline, from its plan to a clean stop, in named steps: load the
//! plugins, load the lookup tables, ask the aggregator what its rows look
//! like, build the sinks, spawn the shards, start the source, start the
//! swapper; then wait, and take it all down in one place ([`Running::wait`]).

//!
//! - [`pipeline`]: the steps in order, and the teardown;
//! - [`build`]: what is made before anything runs (plugins, lookup tables,
//!   the aggregator's shape, the sinks);
//! - [`start`]: what runs (shards, source, swapper).

mod build;
mod pipeline;
mod start;

pub use build::aggregator_schema;
pub use pipeline::{Shared, run};
