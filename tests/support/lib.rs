//! What weir's end-to-end tests share: where the local stack is, fresh
//! names, and Kafka's own tools.
//!
//! The endpoints come from the environment `cargo xtask test` sets
//! (`WEIR_BOOTSTRAP`, `WEIR_REGISTRY_URL`, `WEIR_DATABASE_URL`,
//! `WEIR_STATE_DIR`), with the stack's defaults when run by plain `cargo test`.
//! `WEIR_XTASK`, also set by `cargo xtask test`, lets fault tests stop and
//! start single services ([`Stack::stop_service`], [`Stack::start_service`]).
//!
//! # Layout
//!
//! - [`avro`]: weir's Avro rows read as a downstream consumer reads them.
//! - [`grafana`]: the parts of Grafana's provisioning and dashboard models
//!   weir relies on, read from the repository's `grafana/` folder.
//! - [`oracle`]: what `session_stats` must compute, in SQL (compared with
//!   what the sinks hold) and as a plain fold (for tests without a
//!   database), with the messy stream the oracle tests draw from a seed.
//! - [`pipeline`]: a real pipeline run in a test, on the test's own names.
//! - [`raw`]: records no well-behaved client writes (header names that are
//!   not UTF-8), through librdkafka's C API.

#![deny(missing_docs)]

pub mod avro;
pub mod categories;
pub mod grafana;
pub mod oracle;
pub mod pipeline;
pub mod raw;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where the local stack's services answer, and how weir reaches them.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// The schema registry's Confluent API base URL.
    pub registry_url: String,
    /// PostgreSQL connection URL of the `weir` database.
    pub database_url: String,
    /// The stack's state folder (Kafka's classpath lives there).
    pub state_dir: PathBuf,
    /// The services as weir reaches them (TLS, credentials): what the
    /// tests' own clients use too.
    pub services: weir::connect::Services,
    /// The environment that points weir at this stack (`xtask stack env`):
    /// empty for the plain stack, whose endpoints the tests' own
    /// environment names.
    pub env: Vec<(String, String)>,
}

impl Stack {
    /// The stack named by the environment, or the local defaults.
    pub fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        let default_state = manifest_dir().join("../.weir");
        let services = connect_args(&[])
            .and_then(|args| Ok(args.services()?))
            .expect("the environment's stack settings are usable");
        Self {
            bootstrap: services.kafka.bootstrap().to_owned(),
            registry_url: var("WEIR_REGISTRY_URL", weir::connect::registry::LOCAL_URL),
            database_url: var("WEIR_DATABASE_URL", weir::connect::postgres::LOCAL_URL),
            state_dir: std::env::var_os("WEIR_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or(default_state),
            services,
            env: Vec::new(),
        }
    }

    /// Starts the secured stack (`xtask stack up --secure`: SASL_SSL Kafka,
    /// TLS-only PostgreSQL, an HTTPS registry with basic authentication)
    /// unless it runs, and returns it with the settings that reach it. The
    /// tests of one binary that ask at once share one start.
    pub fn secured() -> Result<Self> {
        static STARTED: std::sync::Mutex<Option<Stack>> = std::sync::Mutex::new(None);
        let mut started = STARTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(stack) = started.as_ref() {
            return Ok(stack.clone());
        }
        let stack = Self::start_secured()?;
        *started = Some(stack.clone());
        Ok(stack)
    }

    fn start_secured() -> Result<Self> {
        run_xtask(&["stack", "up", "--secure"])?;
        let printed = run_xtask(&["stack", "env", "--secure"])?;
        let env: Vec<(String, String)> = printed
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| {
                let quoted = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''));
                (name.to_owned(), quoted.unwrap_or(value).to_owned())
            })
            .collect();
        let get = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .with_context(|| format!("`xtask stack env --secure` printed no {name}"))
        };
        let flags = [
            ("--bootstrap", "WEIR_BOOTSTRAP"),
            ("--kafka-config", "WEIR_KAFKA_CONFIG"),
            ("--registry-url", "WEIR_REGISTRY_URL"),
            ("--registry-user", "WEIR_REGISTRY_USER"),
            ("--registry-password-file", "WEIR_REGISTRY_PASSWORD_FILE"),
            ("--registry-ca", "WEIR_REGISTRY_CA"),
            ("--database-url", "WEIR_DATABASE_URL"),
            ("--database-password-file", "WEIR_DATABASE_PASSWORD_FILE"),
        ];
        let mut args = Vec::new();
        for (flag, name) in flags {
            args.push(flag.to_owned());
            args.push(get(name)?);
        }
        let services = connect_args(&args)?.services()?;
        Ok(Self {
            bootstrap: get("WEIR_BOOTSTRAP")?,
            registry_url: get("WEIR_REGISTRY_URL")?,
            database_url: get("WEIR_DATABASE_URL")?,
            state_dir: PathBuf::from(get("WEIR_STATE_DIR")?),
            services,
            env,
        })
    }

    /// Stops the secured stack (its data stays).
    pub fn stop_secured() -> Result<()> {
        run_xtask(&["stack", "down", "--secure"]).map(drop)
    }

    /// The value of `name` in [`Stack::env`].
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The flags of `weir run` and `weir generate` that reach this stack.
    pub fn connect_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--bootstrap".to_owned(),
            self.bootstrap.clone(),
            "--database-url".to_owned(),
            self.database_url.clone(),
            "--registry-url".to_owned(),
            self.registry_url.clone(),
        ];
        for (flag, name) in [
            ("--kafka-config", "WEIR_KAFKA_CONFIG"),
            ("--registry-user", "WEIR_REGISTRY_USER"),
            ("--registry-password-file", "WEIR_REGISTRY_PASSWORD_FILE"),
            ("--registry-ca", "WEIR_REGISTRY_CA"),
            ("--database-password-file", "WEIR_DATABASE_PASSWORD_FILE"),
        ] {
            if let Some(value) = self.env_value(name) {
                flags.push(flag.to_owned());
                flags.push(value.to_owned());
            }
        }
        flags
    }

    /// A Kafka client's settings that reach this stack (bootstrap, TLS,
    /// SASL); the caller adds its own.
    pub fn kafka_client(&self) -> rdkafka::ClientConfig {
        self.services.kafka.admin()
    }

    /// A pool of `connections` to the stack's `weir` database.
    pub async fn pool(&self, connections: u32) -> Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(self.services.database.options())
            .await?)
    }

    /// Runs one of Kafka's own command-line tools (by main class) against the
    /// stack's broker, with the jars the stack runs Kafka from; returns its
    /// standard output.
    pub fn kafka_tool(&self, main_class: &str, args: &[&str]) -> Result<String> {
        let kafka_dir = self.state_dir.join("kafka");
        let classpath =
            std::fs::read_to_string(kafka_dir.join("classpath")).with_context(|| {
                format!(
                    "Kafka's classpath is not in {}: start the stack with `cargo xtask stack up`",
                    kafka_dir.display()
                )
            })?;
        let output = Command::new("java")
            .arg("-cp")
            .arg(classpath.trim())
            .arg("-Dlog4j2.level=WARN")
            .arg(main_class)
            .args(args)
            .output()
            .with_context(|| format!("cannot run java for {main_class}"))?;
        if !output.status.success() {
            bail!(
                "{main_class} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?)
    }
}

impl Stack {
    /// Stops one service of the local stack (`kafka`, `registry` or
    /// `postgres`) and returns once its process has exited and its ports are
    /// free; its data stays for [`Stack::start_service`].
    ///
    /// Blocks the calling thread for as long as the shutdown takes (seconds):
    /// from async code, call it through `tokio::task::spawn_blocking` so the
    /// runtime keeps driving the pipeline meanwhile.
    pub fn stop_service(&self, name: &str) -> Result<()> {
        run_xtask_stack("down", name)
    }

    /// Starts one service of the local stack (`kafka`, `registry` or
    /// `postgres`) unless it runs, and returns once it answers.
    ///
    /// Blocks like [`Stack::stop_service`].
    pub fn start_service(&self, name: &str) -> Result<()> {
        run_xtask_stack("up", name)
    }
}

/// The xtask binary that stops and starts the stack's services:
/// `$WEIR_XTASK` (set by `cargo xtask test`), else the one `cargo xtask`
/// built in the same target folder as this program (a benchmark's).
pub fn xtask_binary() -> Option<PathBuf> {
    if let Some(xtask) = std::env::var_os("WEIR_XTASK") {
        return Some(PathBuf::from(xtask));
    }
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?;
    ["debug", "release"]
        .iter()
        .map(|profile| target.join(profile).join("xtask"))
        .find(|xtask| xtask.is_file())
}

/// Runs `xtask stack <action> <service>` ([`xtask_binary`]) with this
/// process's environment, so it finds the same stack (`WEIR_STATE_DIR`;
/// the checkout is the parent of `CARGO_MANIFEST_DIR`).
fn run_xtask_stack(action: &str, service: &str) -> Result<()> {
    run_xtask(&["stack", action, service]).map(drop)
}

/// Runs `xtask args...` ([`xtask_binary`]) with this process's environment;
/// its standard output.
fn run_xtask(args: &[&str]) -> Result<String> {
    let Some(xtask) = xtask_binary() else {
        bail!(
            "cannot run `xtask {}`: WEIR_XTASK is not set; run the tests with \
             `cargo xtask test`, which can start and stop the stack's services",
            args.join(" ")
        );
    };
    let output = Command::new(&xtask)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", PathBuf::from(&xtask).display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    // Captured, so it shows with the test's own output.
    print!("{stdout}");
    if !output.status.success() {
        bail!(
            "`xtask {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(stdout)
}

/// weir's connection flags parsed from `args`, the environment filling in
/// what they do not name (as `weir run` does).
fn connect_args(args: &[String]) -> Result<weir::connect::ConnectArgs> {
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        connect: weir::connect::ConnectArgs,
    }
    let argv = std::iter::once("weir".to_owned()).chain(args.iter().cloned());
    Ok(<Flags as clap::Parser>::try_parse_from(argv)?.connect)
}

impl Stack {
    /// `GET` on the schema registry's Confluent API (`path` starts with `/`),
    /// as JSON; an HTTP error status is an error.
    pub async fn registry_get(&self, path: &str) -> Result<serde_json::Value> {
        let registry = &self.services.registry;
        let request = registry.client()?.get(format!("{}{path}", registry.url()));
        Ok(registry
            .authorize(request)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// This crate's folder, read at run time (cargo sets it), so a test binary
/// built from another checkout sharing the target folder still finds this one.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
}

/// A name no other test run uses, for topics, groups, subjects and tables.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}
