//! The `weir` command line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Plugins: test and inspect them locally; list, swap or roll back
    /// those of a running `weir run` (through its admin API).
    Plugin(crate::admin::client::PluginArgs),
    /// Check pipeline files without running them (no side effects).
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

/// `weir plugin`'s commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// The plugins of a running `weir run`.
    #[command(flatten)]
    Running(crate::admin::client::AdminAction),
    /// Creates a plugin folder (Rust, JavaScript or Python) that builds and
    /// passes its own test as it is.
    New(crate::authoring::scaffold::NewArgs),
    /// Builds a plugin folder (Rust, JavaScript or Python) into a component.
    Build(crate::authoring::build::BuildArgs),
    /// Runs a plugin over a JSON Lines file, with no Kafka: its output, dead
    /// letters and (aggregators) final state.
    Test(crate::authoring::local::TestArgs),
    /// Shows what a component is: world, contract version, imports and
    /// exports, the fields it reads, state version and output schema.
    Inspect(crate::authoring::inspect::InspectArgs),
}

/// A flag raised by the first Ctrl-C or SIGTERM; a second one exits at once.
pub fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a signal-listening runtime");
    std::thread::spawn(move || {
        runtime.block_on(async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                if flag.swap(true, Ordering::Relaxed) {
                    tracing::warn!("Second signal: exiting now.");
                    std::process::exit(130);
                }
                tracing::info!("Stopping after the events in flight (again to force).");
            }
        });
    });
    stop
}
