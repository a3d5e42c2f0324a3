//! The local stack: Apache Kafka, a Confluent-API schema registry and
//! PostgreSQL, run as plain processes of this machine (no Docker).
//!
//! Every service lives in a folder of the state directory (`.weir/` in the
//! checkout, or `$WEIR_STATE_DIR`) with its PID file, its log and its data;
//! downloads are cached in `$WEIR_CACHE_DIR` (default `~/.cache/weir`) and
//! Maven's own repository, both outside the checkout.

mod kafka;
mod postgres;
mod process;
mod registry;
mod tools;

pub use postgres::psql;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use process::ProcessSlot;

/// Where the stack keeps things.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The checkout (holds the Kafka POM).
    pub repo: PathBuf,
    /// Data, logs and PID files of the running services.
    pub state: PathBuf,
    /// Downloads reused across checkouts and runs.
    pub cache: PathBuf,
}

/// One service of the stack. The shared machinery (ports, PID, waiting,
/// stopping) lives in [`Stack`]; a service only says how it is prepared,
/// started and asked whether it answers.
trait Service {
    /// Its folder, PID file and log.
    fn slot(&self) -> &ProcessSlot;
    /// Every port it listens on (all must be free before it starts).
    fn ports(&self) -> &'static [u16];
    /// What a client connects to.
    fn endpoint(&self) -> String;
    /// A one-line description for `status`.
    fn describe(&self) -> String;
    /// Downloads, first-time initialisation, configuration files.
    fn prepare(&self) -> Result<()>;
    /// The long-running process.
    fn command(&self) -> Result<Command>;
    /// Asks the running service a real question; `Ok` carries a short detail.
    fn probe(&self) -> std::result::Result<String, String>;
    /// Work that needs the service up (roles, databases).
    fn on_ready(&self) -> Result<()> {
        Ok(())
    }
    /// The signal for a clean shutdown.
    fn stop_signal(&self) -> Signal {
        Signal::SIGTERM
    }
    /// How long a start may take before it is reported as failed.
    fn start_timeout(&self) -> Duration;
}

/// The three services, in start order (the registry stores its schemas in PostgreSQL).
pub struct Stack {
    dirs: Dirs,
    postgres: postgres::Postgres,
    kafka: kafka::Kafka,
    registry: registry::Registry,
}

impl Stack {
    /// Finds the checkout and the state and cache folders.
    pub fn locate() -> Result<Self> {
        // Read at run time (cargo sets it): a path baked in at compile time
        // would point at another checkout when checkouts share a target folder.
        let repo = PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .parent()
        .context("xtask lives in the checkout")?
        .to_path_buf();
        let state = match std::env::var_os("WEIR_STATE_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => repo.join(".weir"),
        };
        let cache = match (std::env::var_os("WEIR_CACHE_DIR"), std::env::var_os("HOME")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(home)) => PathBuf::from(home).join(".cache/weir"),
            (None, None) => bail!("set HOME or WEIR_CACHE_DIR: the stack caches downloads there"),
        };
        std::fs::create_dir_all(&state)
            .with_context(|| format!("cannot create the state folder {}", state.display()))?;
        let state = state.canonicalize()?;
        let dirs = Dirs { repo, state, cache };
        Ok(Self {
            postgres: postgres::Postgres::new(&dirs),
            kafka: kafka::Kafka::new(&dirs),
            registry: registry::Registry::new(&dirs),
            dirs,
        })
    }

    fn services(&self) -> [&dyn Service; 3] {
        [&self.postgres, &self.kafka, &self.registry]
    }

    /// Starts what is not running and waits until every service answers.
    /// Running it again while the stack is up changes nothing.
    pub fn up(&self) -> Result<()> {
        let started = Instant::now();
        // Kafka starts while PostgreSQL comes up; the registry needs PostgreSQL.
        let postgres = self.start(&self.postgres)?;
        let kafka = self.start(&self.kafka)?;
        self.wait(&self.postgres, postgres)?;
        let registry = self.start(&self.registry)?;
        self.wait(&self.kafka, kafka)?;
        self.wait(&self.registry, registry)?;
        println!("stack: up in {:.1}s", started.elapsed().as_secs_f64());
        self.print_status()
    }

    /// Starts `service` unless it already runs; returns the log offset its
    /// start-up output begins at (for error messages), or `None` if it was running.
    fn start(&self, service: &dyn Service) -> Result<Option<u64>> {
        let slot = service.slot();
        if let Some(pid) = slot.running_pid() {
            println!("{}: already running (pid {pid})", slot_name(service));
            return Ok(None);
        }
        process::ensure_ports_free(slot_name(service), service.ports())?;
        service
            .prepare()
            .with_context(|| format!("cannot prepare {}", slot_name(service)))?;
        let log_from = slot.log_len();
        let pid = slot.spawn(service.command()?)?;
        println!(
            "{}: started (pid {pid}), log in {}",
            slot_name(service),
            slot.log_file().display()
        );
        Ok(Some(log_from))
    }

    fn wait(&self, service: &dyn Service, log_from: Option<u64>) -> Result<()> {
        let slot = service.slot();
        let detail = process::wait_until_ready(
            slot,
            log_from.unwrap_or_else(|| slot.log_len()),
            service.start_timeout(),
            || service.probe(),
        )?;
        service.on_ready()?;
        println!("{}: ready ({detail})", slot_name(service));
        Ok(())
    }

    /// Stops, in reverse start order, exactly the processes this stack started.
    pub fn down(&self) -> Result<()> {
        for service in self.services().into_iter().rev() {
            let name = slot_name(service);
            match service
                .slot()
                .stop(service.stop_signal(), Duration::from_secs(60))?
            {
                Some(pid) => println!("{name}: stopped (pid {pid})"),
                None => println!("{name}: was not running"),
            }
        }
        Ok(())
    }

    /// Prints, for each service, whether it is up, where, and what it is.
    pub fn print_status(&self) -> Result<()> {
        println!("state folder: {}", self.dirs.state.display());
        for service in self.services() {
            let name = slot_name(service);
            let (state, detail) = match (service.slot().running_pid(), service.probe()) {
                (Some(pid), Ok(detail)) => ("up", format!("pid {pid}, {detail}")),
                (Some(pid), Err(error)) => {
                    ("starting", format!("pid {pid}, not answering: {error}"))
                }
                (None, Ok(_)) => (
                    "foreign",
                    "answering, but not started by this stack".to_owned(),
                ),
                (None, Err(_)) => ("down", String::new()),
            };
            println!(
                "  {name:<9} {state:<8} {:<48} {}{}",
                service.endpoint(),
                service.describe(),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" [{detail}]")
                }
            );
        }
        Ok(())
    }

    /// The download cache (outside the checkout).
    pub fn cache(&self) -> &std::path::Path {
        &self.dirs.cache
    }

    /// The checkout.
    pub fn repo(&self) -> &std::path::Path {
        &self.dirs.repo
    }

    /// The endpoints as environment variables, for tests and the demo.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WEIR_STATE_DIR", self.dirs.state.display().to_string()),
            ("WEIR_BOOTSTRAP", self.kafka.endpoint()),
            ("WEIR_REGISTRY_URL", self.registry.endpoint()),
            ("WEIR_DATABASE_URL", self.postgres.endpoint()),
        ]
    }
}

fn slot_name(service: &dyn Service) -> &'static str {
    service.slot().name()
}
