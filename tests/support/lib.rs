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
pub mod grafana;
pub mod oracle;
pub mod pipeline;
pub mod raw;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where the local stack's services answer.
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
}

impl Stack {
    /// The stack named by the environment, or the local defaults.
    pub fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        let default_state = manifest_dir().join("../.weir");
        Self {
            bootstrap: var("WEIR_BOOTSTRAP", "127.0.0.1:9092"),
            registry_url: var("WEIR_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7"),
            database_url: var(
                "WEIR_DATABASE_URL",
                "postgres://weir:weir@127.0.0.1:5432/weir",
            ),
            state_dir: std::env::var_os("WEIR_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or(default_state),
        }
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
    let Some(xtask) = xtask_binary() else {
        bail!(
            "cannot {action} `{service}`: WEIR_XTASK is not set; run the tests with \
             `cargo xtask test`, which can stop and start the stack's services"
        );
    };
    let output = Command::new(&xtask)
        .args(["stack", action, service])
        .output()
        .with_context(|| format!("cannot run {}", PathBuf::from(&xtask).display()))?;
    // Captured, so it shows with the test's own output.
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if !output.status.success() {
        bail!(
            "`xtask stack {action} {service}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

impl Stack {
    /// `GET` on the schema registry's Confluent API (`path` starts with `/`),
    /// as JSON; an HTTP error status is an error.
    pub async fn registry_get(&self, path: &str) -> Result<serde_json::Value> {
        Ok(reqwest::get(format!("{}{path}", self.registry_url))
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
