//! How weir reaches the services it uses, and proves it may: Kafka
//! (TLS, SASL, any librdkafka property), PostgreSQL (TLS up to
//! `verify-full`) and the schema registry (HTTPS, basic authentication),
//! with secrets read from the environment or files and never printed.
//!
//! - [`ConnectArgs`]: the flags and environment variables `weir run` and
//!   `weir generate` share, resolved into [`Services`].
//! - [`secret`]: [`Secret`], a value that never prints, and the
//!   `${env:NAME}` / `${file:PATH}` references settings may use.
//! - [`kafka`], [`postgres`], [`registry`]: each service's settings.
//! - [`check`]: one question to each service at start, so wrong
//!   credentials or an untrusted certificate stop weir with one clear error
//!   instead of a retry loop.

pub mod check;
pub mod kafka;
pub mod postgres;
pub mod registry;
pub mod secret;

use std::path::PathBuf;

pub use check::AccessError;
pub use postgres::Database;
pub use registry::RegistryAccess;
pub use secret::Secret;

use crate::kafka::Connection;

/// Settings that cannot be used as given.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file they name cannot be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value is not one weir can use.
    #[error("{0}")]
    Invalid(String),
}

/// The services one weir process uses.
#[derive(Debug, Clone)]
pub struct Services {
    /// Kafka.
    pub kafka: Connection,
    /// The schema registry.
    pub registry: RegistryAccess,
    /// PostgreSQL.
    pub database: Database,
}

impl Services {
    /// The local stack (`cargo xtask stack up`), unsecured.
    pub fn local() -> Self {
        Self {
            kafka: Connection::new(kafka::LOCAL_BOOTSTRAP),
            registry: RegistryAccess::local(),
            database: Database::local(),
        }
    }
}

/// Where the services are and how weir proves who it is to them. Secrets
/// are never flag values (those show in `ps`): they come from the
/// environment or from files.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Kafka bootstrap servers [default: the Kafka properties file's
    /// `bootstrap.servers`, else 127.0.0.1:9092].
    #[arg(long, env = "WEIR_BOOTSTRAP")]
    pub bootstrap: Option<String>,
    /// A Kafka client properties file, with librdkafka's names
    /// (`security.protocol=SASL_SSL`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`, `client.rack`, ...), for every
    /// Kafka client weir makes. A value may be `${env:NAME}` or
    /// `${file:PATH}`. Each variable `WEIR_KAFKA_<NAME>` sets one property
    /// too (`WEIR_KAFKA_SASL_PASSWORD` is `sasl.password`).
    #[arg(long, env = kafka::CONFIG_VAR, value_name = "FILE")]
    pub kafka_config: Option<PathBuf>,
    /// The schema registry's Confluent-compatible API (http or https).
    #[arg(long, env = "WEIR_REGISTRY_URL", default_value = registry::LOCAL_URL, hide_env_values = true)]
    pub registry_url: String,
    /// The registry's basic-authentication user; its password is the
    /// variable WEIR_REGISTRY_PASSWORD or the file --registry-password-file.
    #[arg(long, env = "WEIR_REGISTRY_USER")]
    pub registry_user: Option<String>,
    /// A file holding the registry's password.
    #[arg(long, env = "WEIR_REGISTRY_PASSWORD_FILE", value_name = "FILE")]
    pub registry_password_file: Option<PathBuf>,
    /// A PEM file of CAs to trust for the registry, beside the system's.
    #[arg(long, env = "WEIR_REGISTRY_CA", value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
    /// PostgreSQL (the sink's database, lookup queries, the generator's
    /// catalog), as a URL; TLS is set by its `sslmode` (up to
    /// `verify-full`) and `sslrootcert` parameters. Its password is better
    /// kept out of it: the variable WEIR_DATABASE_PASSWORD or the file
    /// --database-password-file.
    #[arg(long, env = "WEIR_DATABASE_URL", default_value = postgres::LOCAL_URL, hide_env_values = true)]
    pub database_url: String,
    /// A file holding PostgreSQL's password.
    #[arg(long, env = "WEIR_DATABASE_PASSWORD_FILE", value_name = "FILE")]
    pub database_password_file: Option<PathBuf>,
}

impl ConnectArgs {
    /// The services these settings (and the environment) describe.
    pub fn services(&self) -> Result<Services, SettingsError> {
        let kafka = kafka::connection(
            self.kafka_config.as_deref(),
            std::env::vars(),
            self.bootstrap.as_deref(),
        )?;
        let registry_password = password("WEIR_REGISTRY_PASSWORD", &self.registry_password_file)?;
        let registry = RegistryAccess::new(
            &self.registry_url,
            self.registry_user.clone(),
            registry_password,
            self.registry_ca.as_deref(),
        )?;
        let database_password = password("WEIR_DATABASE_PASSWORD", &self.database_password_file)?;
        let database = Database::new(&self.database_url, database_password)?;
        Ok(Services {
            kafka,
            registry,
            database,
        })
    }
}

/// A password from `file`, else from the variable `var`, else none.
fn password(var: &str, file: &Option<PathBuf>) -> Result<Option<Secret>, SettingsError> {
    if let Some(file) = file {
        return Secret::from_file(file)
            .map(Some)
            .map_err(|error| SettingsError::Invalid(error.to_string()));
    }
    Ok(std::env::var(var).ok().map(Secret::new))
}
