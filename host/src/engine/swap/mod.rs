//! Hot swap: replacing a stage's plugin while the pipeline runs.
//!
//! - [`order`]: what a swap tells the shards (an [`Order`]) and what they
//!   answer ([`Report`]).

pub mod order;

pub use order::{AggregatorVersion, Order, Report, Reports};
