//! The schema registry: Apicurio Registry 3 from its Maven Central assembly,
//! serving the Confluent REST API under `/apis/ccompat/v7`, with its schemas
//! stored in the stack's PostgreSQL so they survive restarts. Secured, it
//! serves HTTPS only and every request needs basic authentication (Quarkus'
//! embedded users, which the assembly is built with).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::postgres;
use super::process::ProcessSlot;
use super::secured::{self, USER};
use super::tools::{self, maven};
use super::{Dirs, Service};

/// Apicurio Registry 3.0.x is the newest line that runs on Java 17, the Java
/// Debian 12 packages; 3.1 and later are compiled for Java 21.
pub const VERSION: &str = "3.0.9";
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

impl Registry {
    /// Writes `config/application.properties` in the registry's folder
    /// (Quarkus reads it from its working folder), private to this account:
    /// it holds the database password and, secured, the TLS key's path and
    /// the registry user's password.
    fn write_config(&self) -> Result<()> {
        let profile = &self.dirs.profile;
        let mut config = format!(
            "# Written by `cargo xtask stack up`; edits are overwritten on the next start.\n\
             quarkus.http.host=127.0.0.1\n\
             # The management interface would open a second port on every interface.\n\
             quarkus.management.enabled=false\n\
             apicurio.storage.kind=sql\n\
             apicurio.storage.sql.kind=postgresql\n\
             apicurio.datasource.url={url}\n\
             apicurio.datasource.username={user}\n\
             apicurio.datasource.password={password}\n\
             # Checks a pooled connection before each use: after PostgreSQL\n\
             # restarts, the pool's 20 dead connections would otherwise each\n\
             # fail one request (HTTP 500) before being replaced.\n\
             quarkus.datasource.postgresql.jdbc.validate-on-borrow=true\n",
            url = postgres::jdbc_url(profile, postgres::REGISTRY_DATABASE),
            user = postgres::USER,
            password = postgres::password(profile)?,
        );
        match profile.credentials() {
            None => config.push_str(&format!("quarkus.http.port={}\n", profile.registry_port())),
            Some(credentials) => config.push_str(&format!(
                "# HTTPS only.\n\
                 quarkus.http.insecure-requests=disabled\n\
                 quarkus.http.ssl-port={port}\n\
                 quarkus.http.ssl.certificate.files={cert}\n\
                 quarkus.http.ssl.certificate.key-files={key}\n\
                 # Every request needs basic authentication.\n\
                 quarkus.http.auth.basic=true\n\
                 quarkus.security.users.embedded.enabled=true\n\
                 quarkus.security.users.embedded.plain-text=true\n\
                 quarkus.security.users.embedded.users.{USER}={password}\n\
                 quarkus.security.users.embedded.roles.{USER}=sr-admin\n\
                 quarkus.http.auth.permission.everything.paths=/*\n\
                 quarkus.http.auth.permission.everything.policy=authenticated\n",
                port = profile.registry_port(),
                cert = credentials.server_cert().display(),
                key = credentials.server_key().display(),
                password = credentials.password("registry")?,
            )),
        }
        let dir = self.slot.dir().join("config");
        fs::create_dir_all(&dir)?;
        secured::write_private(&dir.join("application.properties"), &config)
    }
}

/// An HTTP basic `Authorization` header's value.
fn basic_authorization(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

impl Service for Registry {
    fn slot(&self) -> &ProcessSlot {
        &self.slot
    }

    fn ports(&self) -> Vec<u16> {
        vec![self.dirs.profile.registry_port()]
    }

    fn endpoint(&self) -> String {
        let scheme = match self.dirs.profile.credentials() {
            None => "http",
            Some(_) => "https",
        };
        format!(
            "{scheme}://127.0.0.1:{}{CONFLUENT_API}",
            self.dirs.profile.registry_port()
        )
    }

    fn describe(&self) -> String {
        let secured = match self.dirs.profile.credentials() {
            None => "",
            Some(_) => ", HTTPS and basic authentication only",
        };
        format!("Apicurio Registry {VERSION}, Confluent API, schemas in PostgreSQL{secured}")
    }

    fn prepare(&self) -> Result<()> {
        tools::java()?;
        self.install()?;
        fs::create_dir_all(self.slot.dir())?;
        self.write_config()
    }

    fn command(&self) -> Result<Command> {
        let mut command = Command::new(tools::java()?);
        command
            .current_dir(self.slot.dir())
            .args(["-Xms128m", "-Xmx512m"])
            // Marks the process as this stack's (see `ProcessSlot::running_pid`).
            .arg(format!("-Dweir.stack={}", self.dirs.state.display()))
            // Its settings, passwords included, are in `config/application.properties`.
            .arg("-jar")
            .arg(self.runner_jar());
        Ok(command)
    }

    fn probe(&self) -> std::result::Result<String, String> {
        let mut config = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2)));
        let mut authorization = None;
        if let Some(credentials) = self.dirs.profile.credentials() {
            let ca = fs::read(credentials.ca()).map_err(|error| error.to_string())?;
            let ca = ureq::tls::Certificate::from_pem(&ca).map_err(|error| error.to_string())?;
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
                    .build(),
            );
            let password = credentials
                .password("registry")
                .map_err(|error| error.to_string())?;
            authorization = Some(basic_authorization(USER, &password));
        }
        let agent: ureq::Agent = config.build().into();
        let mut request = agent.get(format!("{}/subjects", self.endpoint()));
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let subjects: Vec<String> = request
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
