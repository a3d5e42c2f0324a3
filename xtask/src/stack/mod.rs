//! The local stack: Apache Kafka, a Confluent-API schema registry and
//! PostgreSQL, run as plain processes of this machine (no Docker).
//!
//! Every service lives in a folder of the state directory (`.weir/` in the
//! checkout, or `$WEIR_STATE_DIR`) with its PID file, its log and its data;
//! downloads are cached in `$WEIR_CACHE_DIR` (default `~/.cache/weir`) and
//! Maven's own repository, both outside the checkout.
//!
//! The secured stack (`--secure`) is a second stack beside it, on ports and
//! in a state folder of its own (`.weir/secured/`): Kafka with SASL_SSL
//! (SCRAM and PLAIN) and mutual-TLS listeners only, PostgreSQL accepting
//! TLS connections with a password only, the registry on HTTPS with basic
//! authentication; a local CA signs their certificates ([`secured`]).

mod kafka;
mod postgres;
mod process;
mod registry;
mod secured;
mod tools;

pub use postgres::psql;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use process::ProcessSlot;

/// Which stack: the plain one, or the secured one beside it.
#[derive(Debug, Clone)]
pub enum Profile {
    /// No TLS, no authentication beyond PostgreSQL's password.
    Plain,
    /// TLS and authentication everywhere, with these credentials.
    Secured(secured::Credentials),
}

impl Profile {
    /// The secured stack's credentials, if this is it.
    pub fn credentials(&self) -> Option<&secured::Credentials> {
        match self {
            Self::Plain => None,
            Self::Secured(credentials) => Some(credentials),
        }
    }

    /// Kafka's client listener (SASL_SSL when secured).
    pub fn kafka_port(&self) -> u16 {
        self.pick(9092, 9192)
    }

    /// Kafka's KRaft controller listener.
    pub fn kafka_controller_port(&self) -> u16 {
        self.pick(9093, 9193)
    }

    /// PostgreSQL.
    pub fn postgres_port(&self) -> u16 {
        self.pick(5432, 5433)
    }

    /// The registry (HTTPS when secured).
    pub fn registry_port(&self) -> u16 {
        self.pick(8081, 8443)
    }

    fn pick(&self, plain: u16, secured: u16) -> u16 {
        match self {
            Self::Plain => plain,
            Self::Secured(_) => secured,
        }
    }
}

/// Where the stack keeps things, and which stack it is.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The checkout (holds the Kafka POM).
    pub repo: PathBuf,
    /// Data, logs and PID files of the running services.
    pub state: PathBuf,
    /// Downloads reused across checkouts and runs.
    pub cache: PathBuf,
    /// Plain or secured.
    pub profile: Profile,
}

/// One service of the stack. The shared machinery (ports, PID, waiting,
/// stopping) lives in [`Stack`]; a service only says how it is prepared,
/// started and asked whether it answers.
trait Service {
    /// Its folder, PID file and log.
    fn slot(&self) -> &ProcessSlot;
    /// Every port it listens on (all must be free before it starts).
    fn ports(&self) -> Vec<u16>;
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

/// A service of the stack as the command line names it (`stack up kafka`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    /// The Kafka broker (and its KRaft controller).
    Kafka,
    /// The schema registry.
    Registry,
    /// PostgreSQL.
    Postgres,
}

impl ServiceName {
    /// Every service, in start order (the registry stores its schemas in PostgreSQL).
    const START_ORDER: [Self; 3] = [Self::Postgres, Self::Kafka, Self::Registry];

    /// The services `names` picks, in start order; no names picks them all.
    fn select(names: &[Self]) -> Vec<Self> {
        Self::START_ORDER
            .into_iter()
            .filter(|name| names.is_empty() || names.contains(name))
            .collect()
    }
}

/// The three services, in start order (the registry stores its schemas in PostgreSQL).
pub struct Stack {
    dirs: Dirs,
    postgres: postgres::Postgres,
    kafka: kafka::Kafka,
    registry: registry::Registry,
}

impl Stack {
    /// Finds the checkout and the state and cache folders; `secured`: the
    /// secured stack's (in `secured/` of the state folder).
    pub fn locate(secured: bool) -> Result<Self> {
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
        let mut state = state.canonicalize()?;
        let profile = if secured {
            state = state.join("secured");
            std::fs::create_dir_all(&state)?;
            Profile::Secured(secured::Credentials::new(state.join("tls")))
        } else {
            Profile::Plain
        };
        let dirs = Dirs {
            repo,
            state,
            cache,
            profile,
        };
        Ok(Self {
            postgres: postgres::Postgres::new(&dirs),
            kafka: kafka::Kafka::new(&dirs),
            registry: registry::Registry::new(&dirs),
            dirs,
        })
    }

    fn service(&self, name: ServiceName) -> &dyn Service {
        match name {
            ServiceName::Kafka => &self.kafka,
            ServiceName::Registry => &self.registry,
            ServiceName::Postgres => &self.postgres,
        }
    }

    /// The secured stack's credentials, if this is it.
    pub fn credentials(&self) -> Option<&secured::Credentials> {
        self.dirs.profile.credentials()
    }

    /// Starts what is not running and waits until every service answers.
    /// Running it again while the stack is up changes nothing.
    pub fn up(&self) -> Result<()> {
        self.up_services(&[])
    }

    /// Starts the services `names` picks (all of them when it is empty)
    /// unless they run, and waits until each answers. Data kept from an
    /// earlier run (Kafka's topics, PostgreSQL's cluster) is reused as it is.
    pub fn up_services(&self, names: &[ServiceName]) -> Result<()> {
        let started = Instant::now();
        if let Some(credentials) = self.credentials() {
            credentials.ensure()?;
        }
        let selected = ServiceName::select(names);
        let wanted = |name| selected.contains(&name);
        // `None` for a service not selected, else what [`Stack::start`] returns.
        let start = |name| -> Result<Option<Option<u64>>> {
            if wanted(name) {
                self.start(self.service(name)).map(Some)
            } else {
                Ok(None)
            }
        };
        let wait = |name, log_from: Option<Option<u64>>| match log_from {
            Some(log_from) => self.wait(self.service(name), log_from),
            None => Ok(()),
        };
        if wanted(ServiceName::Registry)
            && !wanted(ServiceName::Postgres)
            && let Err(error) = self.postgres.probe()
        {
            bail!(
                "cannot start the registry: it stores its schemas in PostgreSQL, which does \
                 not answer ({error}). Start both with `cargo xtask stack up postgres registry`."
            );
        }
        // Kafka starts while PostgreSQL comes up; the registry needs PostgreSQL.
        let postgres = start(ServiceName::Postgres)?;
        let kafka = start(ServiceName::Kafka)?;
        wait(ServiceName::Postgres, postgres)?;
        let registry = start(ServiceName::Registry)?;
        wait(ServiceName::Kafka, kafka)?;
        wait(ServiceName::Registry, registry)?;
        println!(
            "{}: up in {:.1}s",
            self.selection_label(names),
            started.elapsed().as_secs_f64()
        );
        self.print_status_of(&selected)
    }

    /// Starts `service` unless it already runs; returns the log offset its
    /// start-up output begins at (for error messages), or `None` if it was running.
    fn start(&self, service: &dyn Service) -> Result<Option<u64>> {
        let slot = service.slot();
        if let Some(pid) = slot.running_pid() {
            println!("{}: already running (pid {pid})", slot_name(service));
            return Ok(None);
        }
        process::ensure_ports_free(slot_name(service), &service.ports())?;
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
        self.down_services(&[])
    }

    /// Stops, in reverse start order, the services `names` picks (all of
    /// them when it is empty), each with its clean-shutdown signal, and
    /// waits until each process has exited and its ports are free. Only
    /// processes this stack started are stopped; their data stays.
    pub fn down_services(&self, names: &[ServiceName]) -> Result<()> {
        let mut still_taken = Vec::new();
        for name in ServiceName::select(names).into_iter().rev() {
            let service = self.service(name);
            let name = slot_name(service);
            let started = Instant::now();
            let stopped = service
                .slot()
                .stop(service.stop_signal(), Duration::from_secs(60))?;
            // The sockets close with the process unless a child inherited
            // them; a short grace covers that. A port held by a process this
            // stack did not start stays taken, and that is an error.
            let grace = if stopped.is_some() {
                Duration::from_secs(15)
            } else {
                Duration::ZERO
            };
            if let Err(error) = process::wait_until_ports_free(&service.ports(), grace) {
                still_taken.push(match stopped {
                    Some(pid) => format!("{name} stopped (pid {pid}), but {error:#}"),
                    None => format!(
                        "{name} was not started by this stack, but {error:#}; stop that \
                         process yourself"
                    ),
                });
                continue;
            }
            match stopped {
                Some(pid) => println!(
                    "{name}: stopped (pid {pid}) in {:.1}s",
                    started.elapsed().as_secs_f64()
                ),
                None => println!("{name}: was not running"),
            }
        }
        if !still_taken.is_empty() {
            bail!("{}", still_taken.join("\n"));
        }
        Ok(())
    }

    /// `stack` for the whole stack, else the services named (`kafka, registry`).
    fn selection_label(&self, names: &[ServiceName]) -> String {
        if names.is_empty() {
            return "stack".to_owned();
        }
        ServiceName::select(names)
            .into_iter()
            .map(|name| slot_name(self.service(name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Prints, for each service, whether it is up, where, and what it is.
    pub fn print_status(&self) -> Result<()> {
        self.print_status_of(&ServiceName::START_ORDER)
    }

    /// [`Stack::print_status`] for the services `names`.
    fn print_status_of(&self, names: &[ServiceName]) -> Result<()> {
        println!("state folder: {}", self.dirs.state.display());
        for service in names.iter().map(|&name| self.service(name)) {
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

    /// The endpoints (and, for the secured stack, the settings weir needs
    /// to reach them) as environment variables, for tests and the demo.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("WEIR_STATE_DIR", self.dirs.state.display().to_string()),
            // weir's own cache (compiled plugins, its Python) is the stack's.
            ("WEIR_CACHE_DIR", self.dirs.cache.display().to_string()),
            ("WEIR_BOOTSTRAP", self.kafka.endpoint()),
            ("WEIR_REGISTRY_URL", self.registry.endpoint()),
            ("WEIR_DATABASE_URL", self.postgres.endpoint()),
        ];
        if let Some(credentials) = self.credentials() {
            let file = |path: PathBuf| path.display().to_string();
            env.extend([
                ("WEIR_KAFKA_CONFIG", file(self.kafka.client_properties())),
                (
                    "WEIR_DATABASE_PASSWORD_FILE",
                    file(credentials.password_file("postgres")),
                ),
                ("WEIR_REGISTRY_USER", secured::USER.to_owned()),
                (
                    "WEIR_REGISTRY_PASSWORD_FILE",
                    file(credentials.password_file("registry")),
                ),
                ("WEIR_REGISTRY_CA", file(credentials.ca())),
            ]);
        }
        env
    }

    /// Prints [`Stack::env`] as `NAME='value'` lines a shell can source
    /// (`set -a; . <(cargo xtask stack env)`).
    pub fn print_env(&self) {
        for (name, value) in self.env() {
            println!("{name}='{}'", value.replace('\'', r"'\''"));
        }
    }
}

fn slot_name(service: &dyn Service) -> &'static str {
    service.slot().name()
}
