//! The `weir` command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::engine::{AdminConfig, RunConfig};
use crate::generate::GenerateArgs;
use crate::kafka::Connection;
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

/// `weir run`'s arguments: the pipeline files, and how the process runs.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Pipeline files; each runs as its own pipeline in this process.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, env = "WEIR_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// The schema registry's Confluent-compatible API.
    #[arg(
        long,
        env = "WEIR_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7"
    )]
    pub registry_url: String,
    /// PostgreSQL: the sink's database, and where lookup queries run.
    #[arg(
        long,
        env = "WEIR_DATABASE_URL",
        default_value = "postgres://weir:weir@127.0.0.1:5432/weir"
    )]
    pub database_url: String,
    /// Shards (threads running plugins) per pipeline; default: one per core.
    #[arg(long, env = "WEIR_SHARDS")]
    pub shards: Option<usize>,
    /// Time between status lines (0 for none).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub status_every: Duration,
    /// Where the admin API listens (port 0: any free port; the log says which).
    #[arg(long, env = "WEIR_ADMIN_ADDR", default_value = "127.0.0.1:7878")]
    pub admin_addr: std::net::SocketAddr,
    /// Swap a stage's plugin when its file changes on disk (after the same
    /// checks as the admin API).
    #[arg(long)]
    pub watch: bool,
    /// The bearer token the admin API's changes need (none: changes are refused).
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl RunArgs {
    /// How the process runs, as these arguments say.
    pub fn config(&self) -> RunConfig {
        RunConfig {
            kafka: Connection::new(&self.bootstrap),
            registry_url: self.registry_url.clone(),
            database_url: self.database_url.clone(),
            shards: self.shards,
            status_every: self.status_every,
            admin: AdminConfig {
                addr: self.admin_addr,
                token: self.admin_token.clone(),
            },
            watch: self.watch,
        }
    }

    /// The pipeline files, each checked into a plan; every problem of
    /// every file when one is unsound.
    pub fn plans(&self) -> Result<Vec<crate::pipeline::PipelinePlan>, PlanErrors> {
        let mut plans = Vec::with_capacity(self.files.len());
        let mut errors = Vec::new();
        for file in &self.files {
            match crate::pipeline::load(file) {
                Ok(plan) => plans.push(plan),
                Err(problems) => errors.push(problems),
            }
        }
        if errors.is_empty() {
            Ok(plans)
        } else {
            Err(PlanErrors(errors))
        }
    }
}

/// The problems of the pipeline files `weir run` was given.
#[derive(Debug)]
pub struct PlanErrors(pub Vec<crate::pipeline::PipelineErrors>);

impl std::fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, errors) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{errors}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanErrors {}

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
