//! The schema registry: Apicurio Registry 3 from its Maven Central assembly,
//! serving the Confluent REST API under `/apis/ccompat/v7`, with its schemas
//! stored in the stack's PostgreSQL so they survive restarts.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::postgres;
use super::process::ProcessSlot;
use super::tools::{self, maven};
use super::{Dirs, Service};

/// Apicurio Registry 3.0.x is the newest line that runs on Java 17, the Java
/// Debian 12 packages; 3.1 and later are compiled for Java 21.
pub const VERSION: &str = "3.0.9";
pub const PORT: u16 = 8081;
/// The Confluent-compatible API; Confluent clients take this whole URL as
/// their registry URL.
pub const CONFLUENT_API: &str = "/apis/ccompat/v7";

pub struct Registry {
    slot: ProcessSlot,
    dirs: Dirs,
}

impl Registry {
    pub fn new(dirs: &Dirs) -> Self {
        Self {
            slot: ProcessSlot::new("registry", &dirs.state),
            dirs: dirs.clone(),
        }
    }

    fn install_dir(&self) -> PathBuf {
        self.dirs.cache.join(format!("apicurio-registry-{VERSION}"))
    }

    fn runner_jar(&self) -> PathBuf {
        self.install_dir()
            .join(format!("apicurio-registry-app-{VERSION}-runner.jar"))
    }

    /// Fetches the registry's ready-to-run assembly (classifier `all`) from
    /// Maven Central and unpacks it into the cache, once.
    fn install(&self) -> Result<()> {
        if self.runner_jar().is_file() {
            return Ok(());
        }
        tools::ensure_maven()?;
        println!(
            "registry: fetching Apicurio Registry {VERSION} from Maven Central (first run only)"
        );
        let downloads = self.dirs.cache.join("downloads");
        tools::run(
            maven()
                .arg("dependency:copy")
                .arg(format!(
                    "-Dartifact=io.apicurio:apicurio-registry-app:{VERSION}:tar.gz:all"
                ))
                .arg(format!("-DoutputDirectory={}", downloads.display())),
            "fetching Apicurio Registry with Maven",
        )?;
        let archive = downloads.join(format!("apicurio-registry-app-{VERSION}-all.tar.gz"));
        // Unpack beside the final folder and rename, so an interrupted run
        // never leaves a half-unpacked registry that looks installed.
        let unpacking = self
            .dirs
            .cache
            .join(format!("apicurio-registry-{VERSION}.partial"));
        let _ = fs::remove_dir_all(&unpacking);
        fs::create_dir_all(&unpacking)?;
        tools::run(
            Command::new("tar")
                .arg("-xzf")
                .arg(&archive)
                .arg("-C")
                .arg(&unpacking),
            "unpacking Apicurio Registry",
        )?;
        fs::rename(&unpacking, self.install_dir()).context("cannot move the unpacked registry")?;
        fs::remove_file(&archive).ok();
        Ok(())
    }
}

impl Service for Registry {
    fn slot(&self) -> &ProcessSlot {
        &self.slot
    }

    fn ports(&self) -> &'static [u16] {
        &[PORT]
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{PORT}{CONFLUENT_API}")
    }

    fn describe(&self) -> String {
        format!("Apicurio Registry {VERSION}, Confluent API, schemas in PostgreSQL")
    }

    fn prepare(&self) -> Result<()> {
        tools::java()?;
        self.install()?;
        fs::create_dir_all(self.slot.dir())?;
        Ok(())
    }

    fn command(&self) -> Result<Command> {
        let mut command = Command::new(tools::java()?);
        command
            .current_dir(self.slot.dir())
            .args(["-Xms128m", "-Xmx512m"])
            // Marks the process as this stack's (see `ProcessSlot::running_pid`).
            .arg(format!("-Dweir.stack={}", self.dirs.state.display()))
            .arg("-Dquarkus.http.host=127.0.0.1")
            .arg(format!("-Dquarkus.http.port={PORT}"))
            // The management interface would open a second port on every interface.
            .arg("-Dquarkus.management.enabled=false")
            .arg("-Dapicurio.storage.kind=sql")
            .arg("-Dapicurio.storage.sql.kind=postgresql")
            .arg(format!(
                "-Dapicurio.datasource.url=jdbc:postgresql://127.0.0.1:{}/{}",
                postgres::PORT,
                postgres::REGISTRY_DATABASE
            ))
            .arg(format!("-Dapicurio.datasource.username={}", postgres::USER))
            .arg(format!(
                "-Dapicurio.datasource.password={}",
                postgres::PASSWORD
            ))
            // Checks a pooled connection before each use: after PostgreSQL
            // restarts, the pool's 20 dead connections would otherwise each
            // fail one request (HTTP 500) before being replaced.
            .arg("-Dquarkus.datasource.postgresql.jdbc.validate-on-borrow=true")
            .arg("-jar")
            .arg(self.runner_jar());
        Ok(command)
    }

    fn probe(&self) -> std::result::Result<String, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let subjects: Vec<String> = agent
            .get(format!("{}/subjects", self.endpoint()))
            .call()
            .map_err(|error| error.to_string())?
            .body_mut()
            .read_json()
            .map_err(|error| error.to_string())?;
        Ok(format!("{} subjects", subjects.len()))
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(90)
    }
}
