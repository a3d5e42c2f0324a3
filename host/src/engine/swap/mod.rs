//! Hot swap: replacing a stage's plugin while the pipeline runs.
//!
//! - [`order`]: what a swap tells the shards (an [`Order`]) and what they
//!   answer ([`Report`]).
//! - [`cutover`]: a shard's side: the versions it runs, the cut-over
//!   between two batches, probation and rollback ([`Versions`]).
//! - [`swapper`]: the [`Swapper`] of a running pipeline: checks, cut-over,
//!   history, rollbacks (asked for, or automatic on probation).
//!   Beside it, [`stages`] (what it keeps per stage and how the admin API
//!   shows it), `probe` (the checks of a new aggregator version) and
//!   [`error`] ([`SwapError`]).
//! - [`watch`]: `weir run --watch`, a swap when a plugin file changes.

pub mod cutover;
pub mod error;
pub mod order;
mod probe;
pub mod stages;
pub mod swapper;
pub mod watch;

pub use cutover::Versions;
pub use error::SwapError;
pub use order::{AggregatorVersion, Instances, Order, Report, Reports, RouteError};
pub use stages::{StageInfo, SwapRecord, VersionInfo};
pub use swapper::{Swapper, SwapperParts};
