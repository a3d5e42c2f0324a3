//! The `weir` command line.

use clap::{Parser, Subcommand};

use crate::engine::RunArgs;
use crate::generate::GenerateArgs;
use crate::telemetry::LogFormat;

/// weir runs WebAssembly plugins (filters, enrichers, keyed aggregators) over
/// Kafka streams and writes the results to Kafka and PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    /// Log filter in `RUST_LOG` syntax, for example `info` or `weir=debug,rdkafka=warn`.
    #[arg(long, env = "WEIR_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log line format.
    #[arg(long, env = "WEIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// weir's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate e-commerce events (the reference workload) into Kafka or a file.
    Generate(GenerateArgs),
    /// Run pipelines until Ctrl-C or SIGTERM, then stop cleanly (in-flight
    /// records processed, written and committed).
    Run(RunArgs),
    /// Inspect, swap or roll back the plugins of a running `weir run`
    /// (through its admin API).
    Plugin(crate::admin::client::PluginArgs),
    /// Check pipeline files without running them (no side effects).
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}
