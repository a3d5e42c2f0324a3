//! The `weir` command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::connect::{ConnectArgs, Secret, SettingsError};
use crate::engine::{AdminConfig, RunConfig};
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

/// `weir run`'s arguments: the pipeline files, and how the process runs.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Pipeline files; each runs as its own pipeline in this process.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Where Kafka, the registry and PostgreSQL are, and weir's credentials.
    #[command(flatten)]
    pub connect: ConnectArgs,
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
    /// The bearer token the admin API's changes need (none: changes are
    /// refused). Better given in the environment than as a flag, which `ps` shows.
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The bearer token the admin API's reads need (status, metrics, plugin
    /// lists); none: whoever reaches the API may read. The change token reads too.
    #[arg(long, env = "WEIR_ADMIN_READ_TOKEN", hide_env_values = true)]
    pub admin_read_token: Option<String>,
    /// Host names the admin API answers to beside localhost, 127.0.0.1 and
    /// [::1] (a name it is reached by, behind a proxy or in a container
    /// network); `*` for any. Other names are refused, so a web page that
    /// rebinds its DNS name to this machine cannot read the API.
    #[arg(long, env = "WEIR_ADMIN_ALLOWED_HOSTS", value_delimiter = ',')]
    pub admin_allowed_hosts: Vec<String>,
    /// Serve reads without a token on an address beyond this machine (a
    /// private network where Prometheus scrapes); without this, such an
    /// address needs --admin-read-token.
    #[arg(long, env = "WEIR_ADMIN_OPEN_READS")]
    pub admin_open_reads: bool,
    /// Serve the admin API over TLS with this certificate chain (PEM, the
    /// server's certificate first); needs --admin-tls-key.
    #[arg(long, env = "WEIR_ADMIN_TLS_CERT", requires = "admin_tls_key")]
    pub admin_tls_cert: Option<std::path::PathBuf>,
    /// The private key of --admin-tls-cert (PEM).
    #[arg(long, env = "WEIR_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<std::path::PathBuf>,
}

impl RunArgs {
    /// How the process runs, as these arguments say.
    pub fn config(&self) -> Result<RunConfig, SettingsError> {
        let services = self.connect.services()?;
        Ok(RunConfig {
            kafka: services.kafka,
            registry: services.registry,
            database: services.database,
            shards: self.shards,
            status_every: self.status_every,
            admin: AdminConfig {
                addr: self.admin_addr,
                token: self.admin_token.clone().map(Secret::new),
                read_token: self.admin_read_token.clone().map(Secret::new),
                allowed_hosts: self.admin_allowed_hosts.clone(),
                open_reads: self.admin_open_reads,
                tls: self
                    .admin_tls_cert
                    .clone()
                    .zip(self.admin_tls_key.clone())
                    .map(|(cert, key)| crate::admin::AdminTls { cert, key }),
            },
            watch: self.watch,
        })
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
