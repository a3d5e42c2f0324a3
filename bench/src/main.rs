//! weir's benchmarks. They print figures; they assert nothing (machines are
//! noisy): read the numbers, compare ratios measured side by side in one run.
//!
//! - [`plugins`]: the stock plugins through the Wasm runtime against the same
//!   code compiled natively, per batch size, and the boundary's own cost.
//! - [`languages`]: `session-stats` in Rust, C, JavaScript and Python
//!   through the runtime, side by side.
//! - [`pipeline`]: the demo pipeline end to end on the local stack: its
//!   throughput beside a plain consumer's, and freshness at half load.
//! - [`race`]: weir against Kafka Streams and the plain-consume limit on the
//!   same input: throughput, CPU per million events, peak memory.
//! - [`isolation`]: what a plugin that loops forever costs the other
//!   pipelines of the same process.
//! - [`restore`]: an aggregator's state read back from its changelog topic.
//! - [`stateless`]: a pipeline without an aggregator against a plain
//!   consume-and-produce of the same records.
//! - [`rekey`]: the demo's aggregation re-keyed by `session_id` through
//!   Kafka against the same read directly.
//! - [`categories`]: the re-keyed category aggregation against the Kafka
//!   Streams peer's `groupBy` on the category.
//! - [`soak`]: the stock pipeline at a fixed rate for a long time, a fault
//!   every few minutes: lag, memory over time, and exactness at the end.
//! - [`events`]: the e-commerce event stream the benchmarks run on.

mod categories;
mod events;
mod freshness;
mod isolation;
mod languages;
mod native;
mod pipeline;
mod plugins;
mod race;
mod rekey;
mod restore;
mod secured;
mod soak;
mod stateless;

use clap::{Parser, Subcommand};

/// The allocator `weir` itself runs with (its engine runs in this process
/// for the pipeline benchmarks and the native baseline).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// weir's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "weir-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stock plugins: Wasm against native, per batch size; boundary cost.
    Plugins(plugins::Args),
    /// session-stats in each plugin language, side by side.
    Languages(languages::Args),
    /// The demo pipeline end to end: throughput, the consume limit, freshness.
    Pipeline(pipeline::Args),
    /// weir against Kafka Streams and the consume limit, side by side.
    Race(race::Args),
    /// Aggregator state restored from its changelog: keys/s, MB/s.
    Restore(restore::Args),
    /// The demo pipeline alone and beside a pipeline whose plugin loops.
    Isolation(isolation::Args),
    /// A long run at a fixed rate with a fault every few minutes.
    Soak(soak::Args),
    /// A pipeline without an aggregator against a plain consume-and-produce.
    Stateless(stateless::Args),
    /// The demo re-keyed by `session_id` through Kafka against read directly.
    Rekey(rekey::Args),
    /// The re-keyed category aggregation against Kafka Streams' `groupBy`.
    Categories(categories::Args),
    /// The aggregation-only pipeline over plaintext and over SASL_SSL, side by side.
    Secured(secured::Args),
    /// `weir run` with the stock plugins compiled in, not in Wasm (the
    /// race's native baseline; not a way to run weir).
    #[command(hide = true)]
    WeirNative(Box<NativeArgs>),
}

#[derive(Debug, clap::Args)]
struct NativeArgs {
    #[command(flatten)]
    run: weir::cli::RunArgs,
}

fn main() -> anyhow::Result<()> {
    // The pipelines a benchmark runs in-process log like `weir run`
    // (warnings only, unless WEIR_LOG asks for more: for example
    // `WEIR_LOG=warn,weir::engine::deliver=debug` to see every flush).
    let filter = std::env::var("WEIR_LOG").unwrap_or_else(|_| "warn".to_owned());
    weir::telemetry::init(&filter, weir::telemetry::LogFormat::Text)
        .map_err(|error| anyhow::anyhow!("WEIR_LOG={filter}: {error}"))?;
    match Cli::parse().command {
        Command::Plugins(args) => plugins::run(&args),
        Command::Languages(args) => languages::run(&args),
        Command::Pipeline(args) => pipeline::run(&args),
        Command::Race(args) => race::run(&args),
        Command::Restore(args) => restore::run(&args),
        Command::Soak(args) => soak::run(&args),
        Command::Secured(args) => secured::run(&args),
        Command::Stateless(args) => stateless::run(&args),
        Command::Rekey(args) => rekey::run(&args),
        Command::Categories(args) => categories::run(&args),
        Command::Isolation(args) => isolation::run(&args),
        Command::WeirNative(args) => Ok(weir::engine::run_with(
            args.run.plans()?,
            &args.run.config()?,
            &weir::cli::stop_on_signal(),
            &native::demo_stages(),
        )?),
    }
}
